"""Sampling loop of the ``hf`` engine: each prompt is encoded once, its ``n`` samples decode from
copies of its key/value cache (docs/method.md §14).

``transformers.generate`` runs ``n`` copies of every prompt through the prefill and adds its
per-step machinery (logits processors, stopping criteria, cache bookkeeping). This loop does only
what a rollout needs: one forward per step over the unfinished batch, the processors the recipe
asks for (suppressed vision tokens, temperature, top-k, top-p, in ``generate``'s order), a draw,
the log-prob of the drawn token under the raw logits at ``logprob_temperature``, and, when asked,
each response token's last-layer hidden state (the input of CARE's think-span embeddings, so no
second forward is needed). The key/value cache grows in place in buffers sized for the whole
response (``BufferedLayer``), not by concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

from care_core.models.shared_prefix import encode_prompts_once, run_after_prompts
from care_core.rollout.base import GenerationRequest, Sample, SamplingSettings


class BufferedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values grow inside one buffer allocated up front: a decoding
    step writes its key/value in place instead of concatenating (copying) the whole cache."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int):
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        batch, heads, length, _ = keys.shape
        self._k = keys.new_empty(batch, heads, length + extra, keys.shape[-1])
        self._v = values.new_empty(batch, heads, length + extra, values.shape[-1])
        self._k[:, :, :length], self._v[:, :, :length] = keys, values
        self._n = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):  # noqa: ANN201
        n = key_states.shape[-2]
        self._k[:, :, self._n : self._n + n] = key_states
        self._v[:, :, self._n : self._n + n] = value_states
        self._n += n
        self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]
        return self.keys, self.values


def filter_logits(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering of ``scores`` [B, V] (removed entries set to -inf);
    the most likely token always survives."""
    if top_k and 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1.0 - top_p)
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return scores


@torch.inference_mode()
def sample_from_prompts(
    model: torch.nn.Module,
    requests: Sequence[GenerationRequest],
    settings: SamplingSettings,
    pad_id: int,
    eos_ids: Sequence[int],
    suppress_ids: Sequence[int] = (),
    with_hidden: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[Sample]]:
    """``settings.n`` samples per request (prompt + forced ``prefix_ids``), in request order."""
    prompts = encode_prompts_once(
        model,
        [list(r.prompt_ids) + list(r.prefix_ids) for r in requests],
        [r.mm_inputs for r in requests],
        pad_id,
    ).repeat([settings.n] * len(requests))
    prompts.cache.layers = [
        BufferedLayer(lay.keys, lay.values, settings.max_new_tokens + 1) for lay in prompts.cache.layers
    ]
    head = getattr(model, "module", model).lm_head
    device = prompts.mask.device
    rows = prompts.mask.shape[0]
    eos = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
    suppress = torch.tensor(list(suppress_ids), dtype=torch.long, device=device)
    hidden = prompts.last_hidden
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    tokens, logprobs, states = [], [], []
    for step in range(settings.max_new_tokens):
        logits = head(hidden).float()  # [rows, V]
        raw = logits if settings.logprob_temperature in (0.0, 1.0) else logits / settings.logprob_temperature
        scores = logits.clone()
        if suppress.numel():
            scores[:, suppress] = float("-inf")
        if settings.temperature > 0:
            scores = filter_logits(scores / settings.temperature, settings.top_k, settings.top_p)
            token = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(-1)
        else:
            token = scores.argmax(dim=-1)
        token = token.masked_fill(finished, pad_id)
        tokens.append(token)
        logprobs.append(F.log_softmax(raw, dim=-1).gather(-1, token[:, None]).squeeze(-1))
        finished = finished | torch.isin(token, eos)
        last = bool(finished.all()) or step == settings.max_new_tokens - 1
        if last and not with_hidden:
            break
        hidden = run_after_prompts(model, prompts, token[:, None], torch.ones_like(token[:, None]))[:, -1]
        if with_hidden:
            states.append(hidden)
        if last:
            break
    ids = torch.stack(tokens, dim=1).cpu()
    lps = torch.stack(logprobs, dim=1).cpu()
    hs = torch.stack(states, dim=1).cpu() if with_hidden else None
    eos_set = {int(e) for e in eos_ids}
    samples: list[Sample] = []
    for row in range(rows):
        seq = ids[row].tolist()
        stop = next((i + 1 for i, t in enumerate(seq) if t in eos_set), None)
        length = stop if stop is not None else len(seq)
        truncated = stop is None and len(seq) >= settings.max_new_tokens
        samples.append(
            Sample(
                seq[:length],
                lps[row, :length].tolist(),
                truncated,
                hidden=hs[row, :length] if hs is not None else None,
            )
        )
    return [samples[i * settings.n : (i + 1) * settings.n] for i in range(len(requests))]
