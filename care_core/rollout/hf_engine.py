"""Rollout engine on the policy module itself: batched, images through the processor's tensors.

Two decoders (``rollout.hf_decode``):

- ``prefix`` (default, Qwen-VL models): ``care_core.rollout.prefix_decode`` encodes each prompt
  once and decodes its ``n`` samples from copies of its cache; it can keep every response token's
  hidden state for CARE's embeddings (``with_hidden``).
- ``generate``: transformers ``generate`` with each request repeated ``n`` times inside the batch
  (vision tensors line up one-to-one with the rows), prompts left-padded; the per-step raw logits
  it returns give each sampled token's log-prob. Used for models the prefix loop does not support.

Both report log-probs under the raw logits at ``logprob_temperature`` (the policy's training
temperature) and never emit vision placeholder tokens.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from care_core.models.forward import vision_token_ids, with_mm_token_types
from care_core.models.shared_prefix import left_pad, supports_shared_prefix
from care_core.rollout.base import GenerationRequest, Sample, SamplingSettings

logger = logging.getLogger(__name__)


def _eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = list(eos) if isinstance(eos, list | tuple) else [eos]
    return [int(i) for i in ids if i is not None]


def cut_at_eos(tokens: Sequence[int], eos_ids: Sequence[int], max_new_tokens: int) -> tuple[list[int], bool]:
    """Keep tokens up to and including the first EOS; ``truncated`` when there is none and the
    budget ``max_new_tokens`` was used up."""
    out: list[int] = []
    for tok in tokens:
        out.append(int(tok))
        if tok in eos_ids:
            return out, False
    return out, len(out) >= max_new_tokens


class HFEngine:
    """Decode with the policy module itself (``sync_weights`` only rebinds the module)."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        batch_size: int = 8,
        show_progress: bool = True,
        decode: str = "prefix",
        with_hidden: bool = False,
    ):
        """``batch_size``: prompts decoded together (x ``n`` sequences); ``decode``: ``prefix`` or
        ``generate`` (``prefix`` falls back to ``generate`` for unsupported models);
        ``with_hidden``: keep each response token's hidden state (``prefix`` only)."""
        if decode not in ("prefix", "generate"):
            raise ValueError(f"rollout.hf_decode={decode!r} is not one of ['prefix', 'generate']")
        self.model = model
        self.decode = decode
        self.with_hidden = with_hidden
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.batch_size = max(1, int(batch_size))
        self.show_progress = show_progress
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self.eos_ids = _eos_ids(model, self.tokenizer)
        self.suppress_ids = vision_token_ids(model)
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def generate(self, requests: list[GenerationRequest], settings: SamplingSettings) -> list[list[Sample]]:
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        results: list[list[Sample]] = []
        # batch_size counts prompts (rollout.batch_size); each brings its n samples into the batch
        chunks = [requests[i : i + self.batch_size] for i in range(0, len(requests), self.batch_size)]
        bar = tqdm(chunks, desc="rollout", unit="batch", disable=not self.show_progress or len(chunks) < 2)
        for chunk in bar:
            results.extend(self._generate_chunk(chunk, settings))
        return results

    @property
    def uses_prefix_loop(self) -> bool:
        return self.decode == "prefix" and supports_shared_prefix(self.model)

    def _generate_chunk(
        self, chunk: list[GenerationRequest], settings: SamplingSettings
    ) -> list[list[Sample]]:
        if self.uses_prefix_loop:
            from care_core.rollout.prefix_decode import sample_from_prompts

            start = time.perf_counter()
            groups = sample_from_prompts(
                self.model, chunk, settings, self.pad_id, self.eos_ids, self.suppress_ids, self.with_hidden
            )
            self.generate_seconds += time.perf_counter() - start
            self.generated_tokens += sum(len(s.response_ids) for g in groups for s in g)
            return groups
        return self._generate_with_hf(chunk, settings)

    def _generate_with_hf(
        self, chunk: list[GenerationRequest], settings: SamplingSettings
    ) -> list[list[Sample]]:
        device = next(self.model.parameters()).device
        rows = [req for req in chunk for _ in range(settings.n)]
        input_ids, attention = left_pad([list(r.prompt_ids) + list(r.prefix_ids) for r in rows], self.pad_id)
        inputs: dict[str, torch.Tensor] = {
            "input_ids": input_ids.to(device),
            "attention_mask": attention.to(device),
        }
        for key in sorted({k for r in rows for k in r.mm_inputs}):
            inputs[key] = torch.cat([r.mm_inputs[key] for r in rows if key in r.mm_inputs], dim=0).to(device)
        inputs = with_mm_token_types(self.model, inputs)
        do_sample = settings.temperature > 0
        gen_kwargs = {
            "max_new_tokens": settings.max_new_tokens,
            "do_sample": do_sample,
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_ids,
        }
        if self.suppress_ids:  # a sampled image placeholder would break every later forward pass
            gen_kwargs["suppress_tokens"] = self.suppress_ids
        if do_sample:
            gen_kwargs.update(
                temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or None
            )
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        start = time.perf_counter()
        out = self.model.generate(**inputs, **gen_kwargs)
        self.generate_seconds += time.perf_counter() - start
        new_tokens = out.sequences[:, input_ids.shape[1] :].cpu()  # [B, S]
        logits = torch.stack(out.logits, dim=1).float().cpu()  # [B, S, V] raw (pre-processor) logits
        if settings.logprob_temperature not in (0.0, 1.0):
            logits = logits / settings.logprob_temperature
        token_logprobs = F.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        samples: list[Sample] = []
        for row in range(new_tokens.shape[0]):
            ids, truncated = cut_at_eos(new_tokens[row].tolist(), self.eos_ids, settings.max_new_tokens)
            self.generated_tokens += len(ids)
            samples.append(Sample(ids, token_logprobs[row, : len(ids)].tolist(), truncated))
        return [samples[i * settings.n : (i + 1) * settings.n] for i in range(len(chunk))]

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else math.nan
