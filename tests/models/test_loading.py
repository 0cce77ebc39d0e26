"""load_policy on other local folders: a Qwen3-VL folder, a hub-style Qwen2.5-VL layout, bad folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from care_core.models import TinySpec, ensure_tiny_vlm, load_policy, load_processor
from care_core.models.processor import CHAT_TEMPLATE, ImageOnlyQwen3VLProcessor


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_vlm(TinySpec(preset="micro"), tmp_path_factory.mktemp("cache"))


def _generate(model, processor, size: int = 64) -> torch.Tensor:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[Image.new("RGB", (size, size), "red")], return_tensors="pt")
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)


def test_qwen3_vl_folder_loads_through_the_same_path(micro_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_processor(str(micro_dir)).tokenizer
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 6, 6],
                "mrope_interleaved": True,
            },
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    Qwen3VLForConditionalGeneration(config).save_pretrained(tmp_path)
    image_processor = Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, min_pixels=256, max_pixels=16384)
    ImageOnlyQwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    ).save_pretrained(tmp_path)
    model, processor = load_policy(str(tmp_path))
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert isinstance(processor, ImageOnlyQwen3VLProcessor)
    assert _generate(model, processor).shape[1] > 3


def test_hub_style_layout_with_stock_processor_class(micro_dir: Path, tmp_path: Path) -> None:
    """Published checkpoints name ``Qwen2_5_VLProcessor`` and keep the image processor in preprocessor_config.json."""
    folder = tmp_path / "hub"
    shutil.copytree(micro_dir, folder)
    processor_config = json.loads((folder / "processor_config.json").read_text())
    (folder / "processor_config.json").unlink()
    image_config = {**processor_config["image_processor"], "processor_class": "Qwen2_5_VLProcessor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(image_config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["processor_class"] = "Qwen2_5_VLProcessor"
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    model, processor = load_policy(str(folder))
    assert processor.image_processor.patch_size == 8
    assert _generate(model, processor).shape[1] > 3


def test_unknown_model_type_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"model_type 'llama' has no known image processor"):
        load_processor(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"config.json: cannot read field 'model_type'"):
        load_processor(str(tmp_path))


def test_left_padding_does_not_change_a_prompt(micro_dir: Path) -> None:
    """A short prompt padded on the left in a batch gives the same next-token logits as alone."""
    model, processor = load_policy(str(micro_dir))

    def prompt(question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    images = [Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")]
    texts = [prompt("How many?"), prompt("How many red squares and blue circles are there in the picture?")]
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    alone = processor(text=texts[:1], images=images[:1], return_tensors="pt")
    assert batch["attention_mask"][0, 0] == 0  # the short prompt really is padded
    with torch.no_grad():
        batched = model(**batch).logits[0, -1]
        single = model(**alone).logits[0, -1]
    assert torch.allclose(batched, single, atol=1e-4)
