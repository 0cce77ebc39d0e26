"""HF rollout engine on the real micro Qwen2.5-VL: sampling, log-probs, EOS/truncation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from care_core.rollout.base import SamplingSettings
from care_core.rollout.hf_engine import HFEngine, cut_at_eos, left_pad
from care_core.stages.rollout import encode_requests


@pytest.fixture(scope="module")
def requests_(micro_policy, examples, recipe):
    _, processor = micro_policy
    return encode_requests(processor, examples[:2], recipe.data, with_images=False)


def _teacher_forced(model, request, response_ids, temperature=1.0):
    """Independent per-token log-probs: one unpadded forward of prompt + response."""
    ids = torch.tensor([request.prompt_ids + response_ids])
    kwargs = dict(request.mm_inputs)
    kwargs["mm_token_type_ids"] = (ids == model.config.image_token_id).int()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits[0].float()
    p = len(request.prompt_ids)
    logp = F.log_softmax(logits[p - 1 : p - 1 + len(response_ids)] / temperature, dim=-1)
    return logp.gather(-1, torch.tensor(response_ids)[:, None])[:, 0]


def test_left_pad_and_cut_at_eos():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_eos([5, 6, 9, 7, 9], [9], 5) == ([5, 6, 9], False)
    assert cut_at_eos([5, 6, 7], [9], 3) == ([5, 6, 7], True)
    assert cut_at_eos([5, 6], [9], 3) == ([5, 6], False)  # stopped early (all rows finished) without EOS


def test_g_distinct_samples_reproducible_by_seed(micro_policy, requests_):
    model, processor = micro_policy
    engine = HFEngine(model, processor, batch_size=2, show_progress=False)
    settings = SamplingSettings(n=4, temperature=1.0, max_new_tokens=12, seed=123)
    first = engine.generate(requests_, settings)
    again = engine.generate(requests_, settings)
    other = engine.generate(requests_, SamplingSettings(n=4, temperature=1.0, max_new_tokens=12, seed=124))
    assert len(first) == len(requests_) and all(len(g) == 4 for g in first)
    for group in first:
        assert len({tuple(s.response_ids) for s in group}) == 4, "G samples of one prompt must differ"
    assert [[s.response_ids for s in g] for g in first] == [[s.response_ids for s in g] for g in again]
    assert [[s.response_ids for s in g] for g in first] != [[s.response_ids for s in g] for g in other]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_teacher_forced(micro_policy, requests_, temperature):
    model, processor = micro_policy
    engine = HFEngine(model, processor, batch_size=2, show_progress=False)
    groups = engine.generate(
        requests_,
        SamplingSettings(
            n=3, temperature=temperature, max_new_tokens=16, logprob_temperature=temperature, seed=7
        ),
    )
    # prompts differ in length, so the batch is left-padded: positions must still line up
    assert len({len(r.prompt_ids) for r in requests_}) > 1
    for request, group in zip(requests_, groups, strict=True):
        for sample in group:
            assert len(sample.logprobs) == len(sample.response_ids)
            expected = _teacher_forced(model, request, sample.response_ids, temperature)
            assert torch.allclose(torch.tensor(sample.logprobs), expected, atol=1e-4), (
                sample.logprobs,
                expected,
            )


def test_truncation_flag_and_eos(micro_policy, requests_):
    model, processor = micro_policy
    engine = HFEngine(model, processor, batch_size=2, show_progress=False)
    groups = engine.generate(requests_, SamplingSettings(n=3, max_new_tokens=5, seed=1))
    for sample in (s for g in groups for s in g):
        has_eos = bool(set(sample.response_ids) & set(engine.eos_ids))
        assert sample.truncated == (not has_eos)
        if sample.truncated:
            assert len(sample.response_ids) == 5
    # push EOS to the top: every response is exactly [EOS] and not truncated
    eos = engine.eos_ids[0]

    def boost_eos(module, inputs, output):
        output = output.clone()
        output[..., eos] += 100.0
        return output

    handle = model.lm_head.register_forward_hook(boost_eos)
    try:
        groups = engine.generate(requests_, SamplingSettings(n=2, max_new_tokens=5, seed=1))
    finally:
        handle.remove()
    for sample in (s for g in groups for s in g):
        assert sample.response_ids == [eos] and not sample.truncated
        assert sample.logprobs[0] == pytest.approx(0.0, abs=1e-4)


def test_vision_placeholders_are_never_sampled(micro_policy, requests_):
    model, processor = micro_policy
    engine = HFEngine(model, processor, batch_size=2, show_progress=False)
    banned = engine.suppress_ids
    assert model.config.image_token_id in banned

    def boost_image_pad(module, inputs, output):
        output = output.clone()
        output[..., model.config.image_token_id] += 100.0
        return output

    handle = model.lm_head.register_forward_hook(boost_image_pad)
    try:
        groups = engine.generate(requests_, SamplingSettings(n=2, max_new_tokens=6, seed=3))
    finally:
        handle.remove()
    assert all(not set(s.response_ids) & set(banned) for g in groups for s in g)
