"""Example rows -> chat messages -> processor batches (generation prompts and SFT examples).

The user turn holds the row's images and its problem text (through ``data.prompt_template``):
each ``<image>`` marker in the problem is replaced by the next image; without markers the images
come first. Batches carry ``mm_token_type_ids`` (1 on image tokens): pass it to the model's forward
so that Qwen-VL computes the same 3-D (M-RoPE) positions as during generation.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from transformers import BatchFeature

from care_core.schema import SchemaError

logger = logging.getLogger(__name__)

IMAGE_MARKER = "<image>"
IGNORE_INDEX = -100


def _row_id(row: dict[str, Any]) -> str:
    return str(row.get("id", "<no id>"))


def build_messages(row: dict[str, Any], data_cfg: Any) -> list[dict[str, Any]]:
    """Chat messages for one row: optional system prompt, then the user turn with images and text.

    ``data_cfg`` is a ``care_core.config.DataConfig`` (uses ``system_prompt`` and ``prompt_template``,
    whose ``{problem}`` is replaced by the row's problem). Raises ``SchemaError`` when the number of
    ``<image>`` markers is neither 0 nor the number of images.
    """
    n_images = len(row.get("images") or [])
    text = data_cfg.prompt_template.replace("{problem}", row["problem"])
    pieces = text.split(IMAGE_MARKER)
    n_markers = len(pieces) - 1
    content: list[dict[str, Any]] = []
    if n_markers == 0:
        content += [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
    elif n_markers == n_images:
        for index, piece in enumerate(pieces):
            if piece:
                content.append({"type": "text", "text": piece})
            if index < n_images:
                content.append({"type": "image"})
    else:
        raise SchemaError(
            f"row id={_row_id(row)}: field 'problem' has {n_markers} {IMAGE_MARKER} marker(s) but field 'images' has {n_images}"
        )
    messages: list[dict[str, Any]] = []
    if data_cfg.system_prompt:
        messages.append({"role": "system", "content": data_cfg.system_prompt})
    messages.append({"role": "user", "content": content})
    return messages


def decode_images(row: dict[str, Any], max_pixels: int | None = None) -> list[Image.Image]:
    """Decode a row's inline images to RGB PIL images, downscaling any above ``max_pixels`` (h*w).

    Raises ``SchemaError`` naming the row id and ``images[i]`` when bytes are missing or corrupt.
    """
    images = []
    for index, image in enumerate(row.get("images") or []):
        data = image.get("bytes") if isinstance(image, dict) else None
        if not data:
            raise SchemaError(f"row id={_row_id(row)}: field 'images[{index}].bytes' is empty")
        try:
            decoded = Image.open(io.BytesIO(data))
            decoded.load()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise SchemaError(
                f"row id={_row_id(row)}: field 'images[{index}].bytes' is not a decodable image: {exc}"
            ) from None
        decoded = decoded.convert("RGB")
        if max_pixels and decoded.width * decoded.height > max_pixels:
            scale = (max_pixels / (decoded.width * decoded.height)) ** 0.5
            decoded = decoded.resize(
                (max(1, int(decoded.width * scale)), max(1, int(decoded.height * scale))),
                Image.Resampling.BICUBIC,
            )
        images.append(decoded)
    return images


def _prompt_text(processor: Any, row: dict[str, Any], data_cfg: Any, add_generation_prompt: bool) -> str:
    return processor.apply_chat_template(
        build_messages(row, data_cfg), add_generation_prompt=add_generation_prompt, tokenize=False
    )


def encode_prompts(
    processor: Any, rows: Sequence[dict[str, Any]], data_cfg: Any, add_generation_prompt: bool = True
) -> BatchFeature:
    """Left-padded generation batch for ``rows``.

    Returns ``input_ids``, ``attention_mask``, ``mm_token_type_ids`` (B, T) and, when any row has
    images, ``pixel_values`` (sum of patches, C*temporal*patch*patch) and ``image_grid_thw`` (N_images, 3).
    """
    texts = [_prompt_text(processor, row, data_cfg, add_generation_prompt) for row in rows]
    images = [image for row in rows for image in decode_images(row, data_cfg.image_max_pixels)]
    batch = processor(
        text=texts, images=images or None, return_tensors="pt", padding=True, padding_side="left"
    )
    lengths = batch["attention_mask"].sum(dim=1)
    for row, length in zip(rows, lengths.tolist(), strict=True):
        if length > data_cfg.max_prompt_length:
            logger.warning(
                "row id=%s: prompt is %d tokens (> data.max_prompt_length=%d)",
                _row_id(row),
                length,
                data_cfg.max_prompt_length,
            )
    return batch


def encode_sft_examples(
    processor: Any, rows: Sequence[dict[str, Any]], data_cfg: Any, max_length: int
) -> dict[str, torch.Tensor]:
    """Right-padded SFT batch: prompt (as for generation) + the row's ``solution`` + ``<|im_end|>``.

    ``labels`` equal ``input_ids`` on the assistant reply (solution and closing ``<|im_end|>``) and
    -100 elsewhere (system, user, image and padding tokens). Replies are cut to fit ``max_length``;
    a prompt that alone reaches ``max_length`` raises ``SchemaError`` naming the row.
    Returns ``input_ids``, ``attention_mask``, ``labels``, ``mm_token_type_ids`` (B, T) and the image
    tensors (``pixel_values``, ``image_grid_thw``) when any row has images.
    """
    tokenizer = processor.tokenizer
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    sequences: list[tuple[list[int], list[int], list[int]]] = []
    pixel_values, grids = [], []
    for row in rows:
        solution = row.get("solution") or ""
        if not solution.strip():
            raise SchemaError(
                f"row id={_row_id(row)}: field 'solution' is empty; SFT needs a worked solution"
            )
        images = decode_images(row, data_cfg.image_max_pixels)
        prompt = processor(
            text=[_prompt_text(processor, row, data_cfg, True)], images=images or None, return_tensors="pt"
        )
        prompt_ids = prompt["input_ids"][0].tolist()
        mm_types = (
            prompt["mm_token_type_ids"][0].tolist()
            if "mm_token_type_ids" in prompt
            else [0] * len(prompt_ids)
        )
        if len(prompt_ids) >= max_length:
            raise SchemaError(
                f"row id={_row_id(row)}: prompt is {len(prompt_ids)} tokens, >= max_length={max_length}"
            )
        reply = tokenizer(solution, add_special_tokens=False)["input_ids"] + [end_id]
        reply = reply[: max_length - len(prompt_ids)]
        sequences.append(
            (prompt_ids + reply, [IGNORE_INDEX] * len(prompt_ids) + reply, mm_types + [0] * len(reply))
        )
        if images:
            pixel_values.append(prompt["pixel_values"])
            grids.append(prompt["image_grid_thw"])
    width = max(len(ids) for ids, _, _ in sequences)
    pad_id = tokenizer.pad_token_id

    def padded(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (width - len(values))

    batch: dict[str, torch.Tensor] = {
        "input_ids": torch.tensor([padded(ids, pad_id) for ids, _, _ in sequences]),
        "attention_mask": torch.tensor([padded([1] * len(ids), 0) for ids, _, _ in sequences]),
        "labels": torch.tensor([padded(labels, IGNORE_INDEX) for _, labels, _ in sequences]),
        "mm_token_type_ids": torch.tensor([padded(types, 0) for _, _, types in sequences]),
    }
    if pixel_values:
        batch["pixel_values"] = torch.cat(pixel_values)
        batch["image_grid_thw"] = torch.cat(grids)
    return batch
