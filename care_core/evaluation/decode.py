"""Batched decoding of evaluation prompts with HF ``generate`` (greedy by default).

Responses are decoded keeping the special tokens (``<think>``/``<answer>`` may be special tokens,
and ``skip_special_tokens=True`` would strip them and zero every tag-based score); only padding
and end-of-sequence tokens are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DecodeSettings:
    """``temperature`` 0 means greedy; ``max_new_tokens`` bounds each response (tokens)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


def _stop_ids(processor: Any, model: Any) -> set[int]:
    tokenizer = processor.tokenizer
    ids = {tokenizer.pad_token_id, tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        ids.add(end)
    return {i for i in ids if i is not None}


def decode_texts(processor: Any, sequences: torch.Tensor, stop_ids: set[int]) -> list[str]:
    """``sequences`` [batch, new_tokens] -> text per row, cut at the first stop token, special
    tokens other than pad/eos kept."""
    texts = []
    for row in sequences.tolist():
        kept: list[int] = []
        for token in row:
            if token in stop_ids:
                break
            kept.append(token)
        texts.append(
            processor.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        )
    return texts


@torch.no_grad()
def generate_batch(model: Any, processor: Any, batch: Any, settings: DecodeSettings) -> list[str]:
    """Decode one left-padded processor batch (``input_ids`` [B, T], ``attention_mask``,
    vision tensors); returns B response strings."""
    stop = _stop_ids(processor, model)
    inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in dict(batch).items()}
    sample = settings.temperature > 0
    kwargs: dict[str, Any] = {"do_sample": sample, "max_new_tokens": settings.max_new_tokens}
    if sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        torch.manual_seed(settings.seed)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    output = model.generate(
        **inputs, pad_token_id=processor.tokenizer.pad_token_id, eos_token_id=sorted(stop), **kwargs
    )
    prompt_len = inputs["input_ids"].shape[1]
    return decode_texts(processor, output[:, prompt_len:], stop)


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split ``items`` into consecutive chunks of at most ``size``."""
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]
