"""Rollout engine on vLLM's offline ``LLM`` API (GPU images; optional extra ``gpu``).

vLLM is imported lazily, so this module imports without it. Prompts go in as token ids with the
raw PIL images in ``multi_modal_data``; every run of expanded image placeholders is collapsed back
to one placeholder (vLLM expands it again with its own processor, the verl convention). Each
sampled token's log-prob comes back with ``logprobs=0``. vLLM reports raw (temperature-1)
log-probs by default, so recipes using vLLM set ``train.recompute_old_logprobs: true``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from care_core.rollout.base import GenerationRequest, Sample, SamplingSettings

logger = logging.getLogger(__name__)


def collapse_placeholders(token_ids: Sequence[int], placeholder_id: int) -> list[int]:
    """Replace every run of ``placeholder_id`` by a single one (vLLM re-expands per image)."""
    out: list[int] = []
    for tok in token_ids:
        tok = int(tok)
        if tok == placeholder_id and out and out[-1] == placeholder_id:
            continue
        out.append(tok)
    return out


def build_vllm_prompts(requests: Sequence[GenerationRequest], placeholder_id: int | None) -> list[dict[str, Any]]:
    """vLLM ``TokensPrompt`` dicts: ``prompt_token_ids`` (prompt + forced prefix, placeholders
    collapsed) and ``multi_modal_data`` ``{"image": [PIL, ...]}`` when the prompt has images."""
    prompts = []
    for req in requests:
        ids = list(req.prompt_ids)
        if placeholder_id is not None:
            ids = collapse_placeholders(ids, placeholder_id)
        prompt: dict[str, Any] = {"prompt_token_ids": ids + [int(t) for t in req.prefix_ids]}
        if req.images:
            prompt["multi_modal_data"] = {"image": list(req.images)}
        prompts.append(prompt)
    return prompts


def sampling_kwargs(settings: SamplingSettings, suppress_ids: Sequence[int] = ()) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` equivalent to ``settings``; ``suppress_ids``
    (vision placeholders) get a -100 logit bias so responses never contain them."""
    kwargs: dict[str, Any] = {
        "n": settings.n,
        "temperature": settings.temperature,
        "top_p": settings.top_p if settings.temperature > 0 else 1.0,
        "top_k": settings.top_k if settings.top_k > 0 else -1,
        "max_tokens": settings.max_new_tokens,
        "logprobs": 0,
        "detokenize": False,
    }
    if settings.seed is not None:
        kwargs["seed"] = settings.seed
    if suppress_ids:
        kwargs["logit_bias"] = {int(t): -100.0 for t in suppress_ids}
    return kwargs


def parse_outputs(outputs: Sequence[Any], n: int) -> list[list[Sample]]:
    """vLLM ``RequestOutput`` list -> ``Sample`` lists. ``truncated`` = ``finish_reason == 'length'``."""
    results: list[list[Sample]] = []
    for req_out in outputs:
        samples = []
        for comp in req_out.outputs[:n]:
            ids = [int(t) for t in comp.token_ids]
            logprobs: list[float] = []
            for tok, entry in zip(ids, comp.logprobs or [], strict=False):
                value = entry[tok]
                logprobs.append(float(getattr(value, "logprob", value)))
            if len(logprobs) != len(ids):
                raise ValueError(f"vLLM output for request {getattr(req_out, 'request_id', '?')}: {len(ids)} tokens but {len(logprobs)} log-probs")
            samples.append(Sample(ids, logprobs, comp.finish_reason == "length"))
        results.append(samples)
    return results


class VLLMEngine:
    """Offline vLLM engine over an HF model folder (built once per rollout stage call)."""

    def __init__(self, model_path: str, processor: Any, cfg: Any, dtype: str = "bfloat16", seed: int = 0):
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - needs the gpu extra
            raise ImportError("rollout.engine=vllm needs the `vllm` package (pip install 'care-pipelines[gpu]')") from exc
        self.processor = processor
        self.placeholder_id = getattr(processor, "image_token_id", None)
        tok = processor.tokenizer
        names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        self.suppress_ids = [int(i) for i in tok.convert_tokens_to_ids(list(names)) if i is not None and i != tok.unk_token_id]
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            tensor_parallel_size=cfg.tensor_parallel_size,
            enforce_eager=cfg.enforce_eager,
            max_model_len=cfg.max_model_len,
            limit_mm_per_prompt={"image": 8},
        )
        self.generated_tokens = 0
        self.generate_seconds = 0.0

    def sync_weights(self, model: torch.nn.Module) -> None:  # pragma: no cover - needs vllm
        raise NotImplementedError("VLLMEngine reloads weights from model_path per rollout stage; build a new engine")

    def generate(self, requests: list[GenerationRequest], settings: SamplingSettings) -> list[list[Sample]]:  # pragma: no cover
        from vllm import SamplingParams

        params = SamplingParams(**sampling_kwargs(settings, self.suppress_ids))
        start = time.perf_counter()
        outputs = self.llm.generate(build_vllm_prompts(requests, self.placeholder_id), params, use_tqdm=True)
        self.generate_seconds += time.perf_counter() - start
        results = parse_outputs(outputs, settings.n)
        self.generated_tokens += sum(len(s.response_ids) for group in results for s in group)
        return results

    @property
    def tokens_per_second(self) -> float:  # pragma: no cover
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else float("nan")
