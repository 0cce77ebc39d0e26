"""Tiny offline Qwen2.5-VL: build, cache, reload offline, forward and generate with an image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from care_core.config import ModelConfig, TinyModelConfig
from care_core.models import PRESETS, TinySpec, load_policy, load_processor, resolve_model_path, tiny_vlm
from care_core.models.loading import check_processor_handles_images
from care_core.models.tokenizer import SPECIAL_TOKENS, TAG_TOKENS


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    cfg = ModelConfig(path="tiny://micro", cache_dir=str(tmp_path_factory.mktemp("cache")))
    return resolve_model_path(cfg)


def _prompt_batch(processor, colours=("red",)):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red squares?"}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    images = [Image.new("RGB", (64, 64), c) for c in colours]
    return processor(text=[text] * len(images), images=images, return_tensors="pt", padding=True)


def test_folder_is_a_normal_hf_folder(micro_dir: str) -> None:
    folder = Path(micro_dir)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "chat_template.jinja",
        "generation_config.json",
        "tiny_model.json",
    ):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    info = json.loads((folder / "tiny_model.json").read_text())
    assert folder.name == info["key"] == TinySpec(preset="micro").key()
    assert info["params"] < 1_000_000


def test_processor_handles_images_and_64px_is_16_tokens(micro_dir: str) -> None:
    processor = load_processor(micro_dir)
    batch = _prompt_batch(processor)
    # 64x64 px / 8-px patches = 8x8 patches, merged 2x2 -> 16 image tokens
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == 16
    assert batch["pixel_values"].shape[0] == 64


def test_bare_tokenizer_is_rejected(micro_dir: str) -> None:
    processor = load_processor(micro_dir)
    with pytest.raises(TypeError, match="does not handle images|no image processor"):
        check_processor_handles_images(processor.tokenizer, micro_dir)


def test_special_tokens_and_tags(micro_dir: str) -> None:
    tok = load_processor(micro_dir).tokenizer
    added = {t.content: t for t in tok.added_tokens_decoder.values()}
    for token in SPECIAL_TOKENS:
        assert added[token].special, token
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1
    for tag in TAG_TOKENS:
        assert not added[tag].special, tag
        ids = tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (tag, ids)  # one token each
    text = "<think>3 red squares</think><answer>3</answer>"
    ids = tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text  # tags survive, <|im_end|> does not
    # digits are split one by one (Qwen-style pre-tokenisation)
    assert len(tok("1234", add_special_tokens=False)["input_ids"]) == 4


def test_forward_and_generate_with_image(micro_dir: str) -> None:
    model, processor = load_policy(micro_dir)
    batch = _prompt_batch(processor, colours=("red", "blue"))
    with torch.no_grad():
        logits = model(**batch).logits
        assert logits.shape[:2] == batch["input_ids"].shape
        assert torch.isfinite(logits).all()
        # the image changes the output: different pixels -> different last-token logits
        assert not torch.allclose(logits[0, -1], logits[1, -1])
        out = model.generate(**batch, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 8)


def test_save_reload_keeps_weights(micro_dir: str, tmp_path: Path) -> None:
    model, processor = load_policy(micro_dir)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # a "trained" model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded, reprocessor = load_policy(str(tmp_path))
    batch = _prompt_batch(reprocessor)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, reloaded(**batch).logits, atol=1e-6)


def test_deterministic_by_seed_and_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TinySpec(preset="micro", seed=7)
    a = tiny_vlm.ensure_tiny_vlm(spec, tmp_path / "a")
    b = tiny_vlm.ensure_tiny_vlm(spec, tmp_path / "b")
    c = tiny_vlm.ensure_tiny_vlm(TinySpec(preset="micro", seed=8), tmp_path / "a")
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert a.name != c.name
    # no temp dirs left behind (atomic build)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([a.name, c.name])

    def fail(*args, **kwargs):
        raise AssertionError("cache miss: rebuilt")

    monkeypatch.setattr(tiny_vlm, "build_tiny_vlm", fail)
    assert tiny_vlm.ensure_tiny_vlm(spec, tmp_path / "a") == a


def test_resolve_model_path_passes_through_other_ids(tmp_path: Path) -> None:
    assert (
        resolve_model_path(ModelConfig(path="Qwen/Qwen2.5-VL-7B-Instruct")) == "Qwen/Qwen2.5-VL-7B-Instruct"
    )
    with pytest.raises(ValueError, match="unknown tiny preset"):
        resolve_model_path(ModelConfig(path="tiny://huge", cache_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="model.dtype"):
        load_policy("tiny://micro", dtype="int8", cache_dir=str(tmp_path))


def test_tiny_preset_size(tmp_path: Path) -> None:
    cfg = ModelConfig(path="tiny://tiny", cache_dir=str(tmp_path), tiny=TinyModelConfig(preset="tiny"))
    info = json.loads((Path(resolve_model_path(cfg)) / "tiny_model.json").read_text())
    assert 3_000_000 <= info["params"] <= 4_000_000
    assert set(PRESETS) == {"micro", "tiny", "small"}


def test_reload_offline_in_fresh_process(micro_dir: str) -> None:
    """A fresh interpreter with HF_HUB_OFFLINE=1 loads the folder and generates from an image."""
    code = (
        "import sys, torch; from PIL import Image\n"
        "from care_core.models import load_policy\n"
        "model, proc = load_policy(sys.argv[1])\n"
        "msgs = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'How many?'}]}]\n"
        "text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)\n"
        "batch = proc(text=[text], images=[Image.new('RGB', (64, 64), 'red')], return_tensors='pt')\n"
        "out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)\n"
        "print('NEW', out.shape[1] - batch['input_ids'].shape[1], int(batch['image_grid_thw'].prod()))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code, micro_dir], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NEW 4 64" in result.stdout
