"""Shared-prompt forward passes: each distinct prompt runs once, its G responses attend to its cache.

The G responses of one prompt share every prompt token (system prompt, image placeholders,
question). A teacher-forced pass over ``G x (prompt + response)`` spends most of its work on G
identical prompt copies and the vision tower runs G times on the same image. Here the prompts
of a batch run once (left-padded, with their images), their key/value cache is repeated to the
rows that share them, and only the response tokens run after it. The result equals the full pass
(same log-probs to float rounding, same gradients: the prompt's activations receive the sum of
its responses' gradients) at about ``(L_p + G L_r) / (G (L_p + L_r))`` of the work.
docs/method.md §14 describes where it is used (rollout decoding, old/reference log-probs, update).

Supported: the Qwen-VL family (models with ``model.get_rope_index``; M-RoPE positions are built
here the way the model builds them). ``supports_shared_prefix`` says whether a model qualifies;
callers fall back to ``care_core.models.forward.response_logprobs`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from care_core.models.forward import ForwardOutput, SequenceItem, image_token_id


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists -> (input_ids [B, T], attention_mask [B, T])."""
    width = max(1, max(len(s) for s in sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def _parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module | None, torch.nn.Module | None]:
    top = getattr(model, "module", model)  # DDP / DeepSpeed wrappers
    return top, getattr(top, "model", None), getattr(top, "lm_head", None)


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """True for models whose prompt cache this module can build (Qwen-VL family), unless they train
    with gradient checkpointing (which turns the key/value cache off)."""
    top, base, head = _parts(model)
    if base is None or head is None or not hasattr(base, "get_rope_index"):
        return False
    return not (top.training and getattr(top, "is_gradient_checkpointing", False))


def prompt_runs(items: Sequence[SequenceItem]) -> list[int]:
    """Lengths of the runs of consecutive items that share one prompt (same ids, same vision tensors)."""
    runs: list[int] = []
    for i, item in enumerate(items):
        if i and _same_prompt(items[i - 1], item):
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def _same_prompt(a: SequenceItem, b: SequenceItem) -> bool:
    if list(a.prompt_ids) != list(b.prompt_ids) or a.mm_inputs.keys() != b.mm_inputs.keys():
        return False
    return all(
        a.mm_inputs[k] is b.mm_inputs[k] or torch.equal(a.mm_inputs[k], b.mm_inputs[k]) for k in a.mm_inputs
    )


@dataclass
class PromptCache:
    """The prompts' key/value cache and what the first response token needs.

    ``cache``: transformers ``DynamicCache`` over the left-padded prompts; ``last_hidden`` [B, H]:
    the final prompt position's last-layer hidden state (it predicts response token 0);
    ``next_position`` [B]: the text position of the next token fed (response token 0 at first);
    ``mask`` [B, L]: the attention mask of everything cached so far."""

    cache: object
    last_hidden: torch.Tensor
    next_position: torch.Tensor
    mask: torch.Tensor

    def repeat(self, counts: Sequence[int]) -> PromptCache:
        """Row i repeated ``counts[i]`` times (in place for the cache; differentiable)."""
        reps = torch.tensor(list(counts), dtype=torch.long, device=self.mask.device)
        if bool((reps == 1).all()):
            return self
        for layer in self.cache.layers:
            layer.keys = layer.keys.repeat_interleave(reps, dim=0)
            layer.values = layer.values.repeat_interleave(reps, dim=0)
        return PromptCache(
            self.cache,
            self.last_hidden.repeat_interleave(reps, dim=0),
            self.next_position.repeat_interleave(reps, dim=0),
            self.mask.repeat_interleave(reps, dim=0),
        )


def prompt_positions(
    model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, image_grid_thw: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE positions [3, B, L] of left-padded prompts and the next text position [B].

    With images: the model's own ``get_rope_index`` (vision tokens on a (t, h, w) grid, text after
    them continuing from the largest position). Text-only: 0, 1, 2, ... over the real tokens."""
    _, base, _ = _parts(model)
    if image_grid_thw is not None:
        token = image_token_id(model)
        positions, _ = base.get_rope_index(
            input_ids,
            mm_token_type_ids=(input_ids == token).int(),
            image_grid_thw=image_grid_thw,
            attention_mask=mask,
        )
    else:
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
    real = mask.bool().unsqueeze(0).expand_as(positions)
    following = positions.masked_fill(~real, -1).amax(dim=(0, 2)) + 1
    return positions, following


def encode_prompts_once(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    mm_inputs: Sequence[dict[str, torch.Tensor]],
    pad_id: int = 0,
) -> PromptCache:
    """Run each prompt (with its images) once; returns its cache (gradients flow when enabled)."""
    from transformers import DynamicCache

    top, base, _ = _parts(model)
    device = top.device if hasattr(top, "device") else next(top.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    inputs: dict[str, torch.Tensor] = {}
    for key in ("pixel_values", "image_grid_thw"):
        parts = [mm[key] for mm in mm_inputs if key in mm]
        if parts:
            inputs[key] = torch.cat(parts, dim=0).to(device)
    grid = inputs.get("image_grid_thw")
    positions, following = prompt_positions(top, ids, mask, grid)
    if grid is not None:
        inputs["mm_token_type_ids"] = (ids == image_token_id(top)).int()
    cache = DynamicCache(config=top.config)
    out = base(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        **inputs,
    )
    return PromptCache(cache, out.last_hidden_state[:, -1], following, mask)


def run_after_prompts(
    model: torch.nn.Module, prompts: PromptCache, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Feed ``tokens`` [B, T] (right-padded, ``mask`` [B, T]) after what ``prompts`` holds; returns
    the last-layer hidden states [B, T, H]. The cache, mask and next position advance by T."""
    _, base, _ = _parts(model)
    width = tokens.shape[1]
    start = prompts.next_position
    positions = (
        (start[:, None] + torch.arange(width, device=tokens.device)[None]).unsqueeze(0).expand(3, -1, -1)
    )
    full_mask = torch.cat([prompts.mask, mask.to(prompts.mask.dtype)], dim=1)
    out = base(
        input_ids=tokens,
        attention_mask=full_mask,
        position_ids=positions,
        past_key_values=prompts.cache,
        use_cache=True,
    )
    prompts.mask = full_mask
    prompts.next_position = start + width
    return out.last_hidden_state


def shared_prefix_logprobs(
    model: torch.nn.Module,
    items: Sequence[SequenceItem],
    temperature: float = 1.0,
    with_entropy: bool = True,
    return_hidden: bool = False,
    pad_id: int = 0,
) -> ForwardOutput:
    """``response_logprobs`` over ``items`` with each run of a shared prompt encoded once.

    Returns ``logprobs`` / ``entropy`` [B, R] (0 where masked) in item order, and with
    ``return_hidden`` the response tokens' last-layer hidden states ``response_hidden`` [B, R, H]
    (``hidden`` stays None: there is no full-sequence tensor)."""
    if not items:
        raise ValueError("shared_prefix_logprobs: no sequences")
    runs = prompt_runs(items)
    firsts, start = [], 0
    for n in runs:
        firsts.append(items[start])
        start += n
    prompts = encode_prompts_once(
        model, [it.prompt_ids for it in firsts], [it.mm_inputs for it in firsts], pad_id
    )
    prompts = prompts.repeat(runs)
    device = prompts.mask.device
    width = max(1, max(len(it.response_ids) for it in items))
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it.response_ids)
        if n:
            ids[row, :n] = torch.tensor(list(it.response_ids), dtype=torch.long)
            mask[row, :n] = 1
    ids, mask = ids.to(device), mask.to(device)
    first_hidden = prompts.last_hidden
    hidden = run_after_prompts(model, prompts, ids, mask)  # [B, R, H]
    predicting = torch.cat([first_hidden.unsqueeze(1), hidden[:, :-1]], dim=1)  # row j predicts token j
    _, _, head = _parts(model)
    logits = head(predicting).float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    fmask = mask.float()
    logprobs = logp_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * fmask
    entropy = -(logp_all.exp() * logp_all).sum(-1) * fmask if with_entropy else torch.zeros_like(logprobs)
    return ForwardOutput(logprobs, entropy, None, response_hidden=hidden if return_hidden else None)
