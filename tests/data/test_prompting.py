"""Prompting: messages, image placeholders vs image tokens, left padding, SFT label masks, tags."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from care_core.config import DataConfig, ModelConfig, SyntheticConfig
from care_core.data.prompting import (
    IGNORE_INDEX,
    build_messages,
    decode_images,
    encode_prompts,
    encode_sft_examples,
)
from care_core.data.synthetic import generate_rows
from care_core.models import load_policy, resolve_model_path
from care_core.schema import SchemaError


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory):
    path = resolve_model_path(
        ModelConfig(path="tiny://micro", cache_dir=str(tmp_path_factory.mktemp("cache")))
    )
    return load_policy(path)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_rows(SyntheticConfig(n_train=10, n_test=5), "train")


def _png(colour: str, size: tuple[int, int]) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": ""}


def test_build_messages_images_first_and_markers() -> None:
    cfg = DataConfig()
    row = {"id": "a", "problem": "How many?", "images": [_png("red", (8, 8))]}
    messages = build_messages(row, cfg)
    assert messages[0] == {"role": "system", "content": cfg.system_prompt}
    assert messages[1]["content"] == [{"type": "image"}, {"type": "text", "text": "How many?"}]
    row = {"id": "b", "problem": "Left <image> right <image> which?", "images": [_png("red", (8, 8))] * 2}
    assert build_messages(row, DataConfig(system_prompt=""))[0]["content"] == [
        {"type": "text", "text": "Left "},
        {"type": "image"},
        {"type": "text", "text": " right "},
        {"type": "image"},
        {"type": "text", "text": " which?"},
    ]
    templated = build_messages(
        {"id": "c", "problem": "2+2 {x}", "images": []},
        DataConfig(system_prompt="", prompt_template="Q: {problem} A:"),
    )
    assert templated == [{"role": "user", "content": [{"type": "text", "text": "Q: 2+2 {x} A:"}]}]
    with pytest.raises(SchemaError, match=r"id=d.*'problem'.*2 <image>.*'images' has 1"):
        build_messages({"id": "d", "problem": "<image><image>", "images": [_png("red", (8, 8))]}, cfg)


def test_decode_images_names_row_and_field() -> None:
    good = decode_images({"id": "x", "images": [_png("blue", (40, 20))]}, max_pixels=200)
    assert (
        good[0].mode == "RGB"
        and good[0].width * good[0].height <= 200
        and good[0].width == 2 * good[0].height
    )
    with pytest.raises(SchemaError, match=r"row id=bad7: field 'images\[1\].bytes' is not a decodable image"):
        decode_images(
            {"id": "bad7", "images": [_png("red", (4, 4)), {"bytes": b"\x89PNG garbage", "path": ""}]}
        )
    with pytest.raises(SchemaError, match=r"row id=bad8: field 'images\[0\].bytes' is empty"):
        decode_images({"id": "bad8", "images": [{"bytes": b"", "path": ""}]})


def test_encode_prompts_left_padded_with_matching_image_tokens(policy) -> None:
    _, processor = policy
    tok = processor.tokenizer
    rows = [
        {"id": "one", "problem": "How many red shapes are there?", "images": [_png("red", (64, 64))]},
        {
            "id": "two",
            "problem": "<image> vs <image>: which is larger?",
            "images": [_png("red", (64, 64)), _png("blue", (32, 32))],
        },
        {"id": "text", "problem": "What is 2 + 3?", "images": []},
    ]
    batch = encode_prompts(processor, rows, DataConfig())
    ids, mask = batch["input_ids"], batch["attention_mask"]
    # 64x64 -> 8x8 patches -> 16 tokens; 32x32 -> 4x4 -> 4 tokens
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8], [1, 4, 4]]
    image_id, start_id = processor.image_token_id, tok.convert_tokens_to_ids("<|vision_start|>")
    assert ((ids == image_id) & (mask == 1)).sum(dim=1).tolist() == [16, 20, 0]
    assert (ids == start_id).sum(dim=1).tolist() == [1, 2, 0]
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(dim=1).sum())
    assert torch.equal(batch["mm_token_type_ids"].bool(), ids == image_id)
    # left padding: every row ends with the generation prompt, pads only on the left
    assert mask[:, -1].all() and not mask[:, 0].all()
    for row_mask in mask:
        first = int(row_mask.argmax())
        assert row_mask[first:].all()
    tail = tok.decode(ids[0, -12:])
    assert tail.endswith("<|im_start|>assistant\n")


def test_sft_labels_cover_only_the_reply(policy, rows) -> None:
    _, processor = policy
    tok = processor.tokenizer
    cfg = DataConfig()
    batch = encode_sft_examples(processor, rows[:4], cfg, max_length=512)
    prompts = [encode_prompts(processor, [row], cfg) for row in rows[:4]]
    for i, row in enumerate(rows[:4]):
        prompt_ids = prompts[i]["input_ids"][0]
        n_prompt = len(prompt_ids)
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        assert torch.equal(ids[:n_prompt], prompt_ids)  # same prompt tokens as for generation
        assert (labels[:n_prompt] == IGNORE_INDEX).all()
        reply = labels[labels != IGNORE_INDEX]
        assert tok.decode(reply) == row["solution"] + "<|im_end|>"
        assert tok.decode(reply, skip_special_tokens=True) == row["solution"]  # tags survive
        assert batch["attention_mask"][i].sum() == n_prompt + len(reply)
        assert (labels[n_prompt + len(reply) :] == IGNORE_INDEX).all()
    assert batch["image_grid_thw"].shape == (4, 3)


def test_sft_truncates_reply_not_prompt(policy, rows) -> None:
    _, processor = policy
    cfg = DataConfig()
    n_prompt = len(encode_prompts(processor, [rows[0]], cfg)["input_ids"][0])
    batch = encode_sft_examples(processor, [rows[0]], cfg, max_length=n_prompt + 3)
    assert batch["input_ids"].shape == (1, n_prompt + 3)
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == 3
    with pytest.raises(SchemaError, match=f"row id={rows[0]['id']}: prompt is {n_prompt} tokens"):
        encode_sft_examples(processor, [rows[0]], cfg, max_length=n_prompt)
    with pytest.raises(SchemaError, match="'solution' is empty"):
        encode_sft_examples(processor, [{**rows[0], "solution": ""}], cfg, max_length=512)


def test_sft_batch_trains_and_matches_generation_positions(policy, rows) -> None:
    model, processor = policy
    cfg = DataConfig()
    batch = encode_sft_examples(processor, rows[:1], cfg, max_length=512)
    prompt = encode_prompts(processor, rows[:1], cfg)
    n_prompt = prompt["input_ids"].shape[1]
    with torch.no_grad():
        sft_logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        prompt_logits = model(**prompt).logits
    # same 3-D positions as the generation prompt: identical logits over the prompt tokens
    assert torch.allclose(sft_logits[0, :n_prompt], prompt_logits[0], atol=1e-5)
    # the labels give a finite loss that a few steps on the batch reduce
    clone = type(model)(model.config)
    clone.load_state_dict(model.state_dict())
    clone.train()
    optimizer = torch.optim.AdamW(clone.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = clone(**batch).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
