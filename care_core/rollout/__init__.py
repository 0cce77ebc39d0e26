"""Rollout engines (``hf``, ``vllm``), think-span embeddings and Reflection-Guided Resampling."""

from __future__ import annotations

from typing import Any

from care_core.rollout.base import GenerationRequest, RolloutEngine, Sample, SamplingSettings
from care_core.rollout.hf_engine import HFEngine


def make_engine(
    name: str,
    model: Any,
    processor: Any,
    model_path: str,
    rollout_cfg: Any,
    dtype: str,
    seed: int = 0,
    with_hidden: bool = False,
) -> RolloutEngine:
    """Engine for ``rollout.engine``: ``hf`` decodes with ``model``; ``vllm`` loads ``model_path``.
    ``with_hidden``: the ``hf`` engine keeps response hidden states (for CARE's embeddings)."""
    if name == "hf":
        return HFEngine(
            model,
            processor,
            batch_size=rollout_cfg.batch_size,
            decode=rollout_cfg.hf_decode,
            with_hidden=with_hidden,
        )
    if name == "vllm":
        from care_core.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, processor, rollout_cfg.vllm, dtype=dtype, seed=seed)
    raise ValueError(f"rollout.engine={name!r} is not one of ['hf', 'vllm']")


__all__ = ["GenerationRequest", "HFEngine", "RolloutEngine", "Sample", "SamplingSettings", "make_engine"]
