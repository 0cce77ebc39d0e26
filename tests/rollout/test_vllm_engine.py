"""vLLM engine: the pure request/response pieces (vLLM itself is not installed in CPU CI)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from care_core.rollout.base import GenerationRequest, SamplingSettings
from care_core.rollout.vllm_engine import (
    build_vllm_prompts,
    collapse_placeholders,
    parse_outputs,
    sampling_kwargs,
)


def test_collapse_placeholders():
    assert collapse_placeholders([1, 9, 9, 9, 2, 9, 9, 3], 9) == [1, 9, 2, 9, 3]
    assert collapse_placeholders([], 9) == []


def test_build_prompts_with_images_and_prefix():
    image = object()
    reqs = [GenerationRequest([1, 5, 5, 5, 6, 7], {"pixel_values": torch.zeros(12, 3)}, [image], prefix_ids=[40, 41]),
            GenerationRequest([1, 2, 3])]
    prompts = build_vllm_prompts(reqs, placeholder_id=5)
    assert prompts[0] == {"prompt_token_ids": [1, 5, 6, 7, 40, 41], "multi_modal_data": {"image": [image]}}
    assert prompts[1] == {"prompt_token_ids": [1, 2, 3]}


def test_sampling_kwargs():
    kw = sampling_kwargs(SamplingSettings(n=8, temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=64, seed=3), [5, 6])
    assert kw == {"n": 8, "temperature": 1.0, "top_p": 0.95, "top_k": -1, "max_tokens": 64, "logprobs": 0,
                  "detokenize": False, "seed": 3, "logit_bias": {5: -100.0, 6: -100.0}}
    greedy = sampling_kwargs(SamplingSettings(temperature=0.0, top_p=0.5, top_k=4))
    assert greedy["top_p"] == 1.0 and greedy["top_k"] == 4 and "seed" not in greedy


def _completion(ids, finish):
    return SimpleNamespace(token_ids=ids, finish_reason=finish,
                           logprobs=[{t: SimpleNamespace(logprob=-0.5 * (k + 1))} for k, t in enumerate(ids)])


def test_parse_outputs():
    outs = [SimpleNamespace(request_id="0", outputs=[_completion([4, 2], "stop"), _completion([1, 1, 1], "length")])]
    (group,) = parse_outputs(outs, n=2)
    assert group[0].response_ids == [4, 2] and group[0].logprobs == [-0.5, -1.0] and not group[0].truncated
    assert group[1].truncated and group[1].logprobs == [-0.5, -1.0, -1.5]
    bad = [SimpleNamespace(request_id="7", outputs=[SimpleNamespace(token_ids=[1, 2], finish_reason="stop", logprobs=[{1: -0.1}])])]
    with pytest.raises(ValueError, match="request 7"):
        parse_outputs(bad, n=1)


def test_engine_import_is_lazy():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm installed")
    from care_core.config import VLLMConfig
    from care_core.rollout.vllm_engine import VLLMEngine

    with pytest.raises(ImportError, match="vllm"):
        VLLMEngine("x", SimpleNamespace(tokenizer=None), VLLMConfig())
