"""Teacher-forced forward passes over (prompt, response) sequences of a (vision-)language policy.

Shared by the rollout stage (old log-probs check, think-span embeddings) and the update stage
(new / reference log-probs with gradients). Sequences are right-padded; each row's response
starts right after its own prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class SequenceItem:
    """One sequence: ``prompt_ids`` (image placeholders expanded), ``response_ids``, and the
    prompt's vision tensors (``pixel_values``, ``image_grid_thw``; empty for text-only)."""

    prompt_ids: list[int]
    response_ids: list[int]
    mm_inputs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class PackedBatch:
    """Right-padded model inputs plus the response layout.

    ``model_inputs``: kwargs for ``model(**model_inputs)`` (``input_ids`` [B, T], ``attention_mask``
    [B, T], vision tensors concatenated in row order). ``response_index`` [B, R]: position in the
    sequence of response token j; ``response_mask`` [B, R]: 1 for real response tokens.
    ``response_ids`` [B, R] (0 where masked).
    """

    model_inputs: dict[str, torch.Tensor]
    response_ids: torch.Tensor
    response_index: torch.Tensor
    response_mask: torch.Tensor


def pack(items: Sequence[SequenceItem], device: torch.device | str = "cpu", pad_id: int = 0) -> PackedBatch:
    """Right-pad ``items`` into one batch; vision tensors are concatenated in row order."""
    if not items:
        raise ValueError("pack: no sequences")
    lengths = [len(it.prompt_ids) + len(it.response_ids) for it in items]
    max_len = max(lengths)
    max_resp = max(1, max(len(it.response_ids) for it in items))
    batch = len(items)
    input_ids = torch.full((batch, max_len), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, max_len), dtype=torch.long)
    response_ids = torch.zeros((batch, max_resp), dtype=torch.long)
    response_index = torch.zeros((batch, max_resp), dtype=torch.long)
    response_mask = torch.zeros((batch, max_resp), dtype=torch.float32)
    for row, it in enumerate(items):
        seq = list(it.prompt_ids) + list(it.response_ids)
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[row, : len(seq)] = 1
        n_resp = len(it.response_ids)
        if n_resp:
            response_ids[row, :n_resp] = torch.tensor(it.response_ids, dtype=torch.long)
            response_index[row, :n_resp] = torch.arange(len(it.prompt_ids), len(it.prompt_ids) + n_resp)
            response_mask[row, :n_resp] = 1.0
    model_inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention}
    keys = sorted({key for it in items for key in it.mm_inputs})
    for key in keys:
        parts = [it.mm_inputs[key] for it in items if key in it.mm_inputs]
        model_inputs[key] = torch.cat(parts, dim=0)
    model_inputs = {k: v.to(device) for k, v in model_inputs.items()}
    return PackedBatch(
        model_inputs, response_ids.to(device), response_index.to(device), response_mask.to(device)
    )


def image_token_id(model: torch.nn.Module) -> int | None:
    """The model's image placeholder id (unwraps DeepSpeed/DDP wrappers)."""
    config = getattr(
        getattr(model, "module", model), "config", None
    )  # a DeepSpeed engine's .config is its ds config
    value = getattr(config, "image_token_id", None)
    return int(value) if value is not None else None


def vision_token_ids(model: torch.nn.Module) -> list[int]:
    """Ids a response must never contain (image/video placeholders and vision delimiters)."""
    config = getattr(getattr(model, "module", model), "config", None)
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({int(getattr(config, n)) for n in names if getattr(config, n, None) is not None})


def with_mm_token_types(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add ``mm_token_type_ids`` (1 on image placeholders) when the batch has images, so Qwen-VL
    computes 3-D (M-RoPE) positions identically in ``generate`` and in teacher-forced passes."""
    if "image_grid_thw" not in inputs or "mm_token_type_ids" in inputs:
        return inputs
    token = image_token_id(model)
    if token is None:
        return inputs
    return {**inputs, "mm_token_type_ids": (inputs["input_ids"] == token).int()}


@dataclass
class ForwardOutput:
    """``logprobs`` / ``entropy`` [B, R] over response tokens (0 where masked);
    ``hidden`` [B, T, H] last-layer hidden states when requested; ``response_hidden`` [B, R, H]:
    the hidden states at the response tokens' own positions (the think-span embedding input)."""

    logprobs: torch.Tensor
    entropy: torch.Tensor
    hidden: torch.Tensor | None
    response_hidden: torch.Tensor | None = None


def response_logprobs(
    model: torch.nn.Module,
    batch: PackedBatch,
    temperature: float = 1.0,
    return_hidden: bool = False,
    with_entropy: bool = True,
) -> ForwardOutput:
    """Per-token log-probs of the response under ``model`` at ``temperature`` (teacher forcing).

    Token j of a response is predicted by the logits at sequence position ``index - 1``.
    """
    inputs = with_mm_token_types(model, batch.model_inputs)
    out = model(**inputs, output_hidden_states=return_hidden, use_cache=False)
    logits = out.logits  # [B, T, V]
    prev = (batch.response_index - 1).clamp(min=0)  # [B, R]
    picked = logits.gather(1, prev.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).float()  # [B, R, V]
    if temperature != 1.0:
        picked = picked / temperature
    logp_all = F.log_softmax(picked, dim=-1)
    logprobs = logp_all.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1) * batch.response_mask
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1) * batch.response_mask
    else:
        entropy = torch.zeros_like(logprobs)
    hidden = out.hidden_states[-1] if return_hidden else None
    response_hidden = None
    if hidden is not None:
        index = batch.response_index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        response_hidden = hidden.gather(1, index)
    return ForwardOutput(logprobs, entropy, hidden, response_hidden)


def span_mean_embeddings(
    hidden: torch.Tensor, batch: PackedBatch, spans: Sequence[tuple[int, int] | Sequence[int]]
) -> torch.Tensor:
    """L2-normalised mean of ``hidden`` [B, T, H] over each row's response span ``[start, end)``
    (response-token indices); rows whose span is ``[-1, -1]`` or empty use the whole response.
    Returns [B, H] float32."""
    rows = []
    for row, span in enumerate(spans):
        n_resp = int(batch.response_mask[row].sum().item())
        start, end = int(span[0]), int(span[1])
        if start < 0 or end <= start:
            start, end = 0, n_resp
        end = min(end, n_resp)
        if end <= start:  # empty response: fall back to the last prompt position
            positions = batch.response_index[row, :1] - 1
        else:
            positions = batch.response_index[row, start:end]
        vec = hidden[row, positions].float().mean(dim=0)
        rows.append(F.normalize(vec, dim=-1))
    return torch.stack(rows)


def think_embeddings(
    response_hidden: torch.Tensor | Sequence[torch.Tensor],
    lengths: Sequence[int],
    spans: Sequence[Sequence[int]],
) -> torch.Tensor:
    """L2-normalised mean of ``response_hidden`` ([B, R, H], or one [R_i, H] tensor per row) over each row's think span ``[start, end)``
    (response-token indices, clipped to the row's ``lengths``); rows without a span, or with an
    empty one, use the whole response. Returns [B, H] float32 (docs/method.md §3)."""
    rows = []
    for row, (span, n_resp) in enumerate(zip(spans, lengths, strict=True)):
        start, end = int(span[0]), int(span[1])
        if start < 0 or end <= start:
            start, end = 0, int(n_resp)
        end = min(end, int(n_resp))
        if end <= start:
            start, end = 0, max(1, int(n_resp))
        rows.append(F.normalize(response_hidden[row][start:end].float().mean(dim=0), dim=-1))
    return torch.stack(rows)
