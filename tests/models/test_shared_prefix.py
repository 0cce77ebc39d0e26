"""Shared-prompt passes and the prompt-sharing decoder against the whole-sequence passes they replace.

Real micro Qwen2.5-VL with images. Every shortcut is compared with the plain computation: log-probs,
entropies, hidden states and gradients of ``shared_prefix_logprobs`` with ``response_logprobs`` over
packed full sequences; greedy tokens of ``sample_from_prompts`` with transformers ``generate``; the
top-k / top-p filter with transformers' own logits warpers.
"""

from __future__ import annotations

import pytest
import torch

from care_core.models.forward import SequenceItem, pack, response_logprobs, think_embeddings
from care_core.models.shared_prefix import prompt_runs, shared_prefix_logprobs, supports_shared_prefix
from care_core.rollout.base import SamplingSettings
from care_core.rollout.hf_engine import HFEngine
from care_core.rollout.prefix_decode import filter_logits
from care_core.stages.rollout import encode_requests


@pytest.fixture(scope="module")
def requests_(micro_policy, examples, recipe):
    """Three prompts with images; the second gets 15 extra text tokens, so the others are left-padded
    by 15+ positions (padding that a missing attention mask would let them attend to)."""
    _, processor = micro_policy
    reqs = encode_requests(processor, examples[:3], recipe.data, with_images=False)
    longer = reqs[1].prompt_ids[:2] + [300] * 15 + reqs[1].prompt_ids[2:]
    reqs[1] = type(reqs[1])(longer, reqs[1].mm_inputs, reqs[1].images, reqs[1].prefix_ids)
    return reqs


def _items(requests_, seed=0):
    """Three prompts (different lengths) with 3, 1 and 2 responses of different lengths."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for req, n in zip(requests_, (3, 1, 2), strict=True):
        for _ in range(n):
            length = int(torch.randint(1, 9, (1,), generator=g))
            items.append(
                SequenceItem(
                    req.prompt_ids, torch.randint(0, 1000, (length,), generator=g).tolist(), req.mm_inputs
                )
            )
    return items


def test_prompt_runs_group_consecutive_equal_prompts(requests_):
    a, b = requests_[0], requests_[1]
    items = [SequenceItem(a.prompt_ids, [1], a.mm_inputs)] * 2 + [
        SequenceItem(b.prompt_ids, [1], b.mm_inputs)
    ]
    items += [SequenceItem(a.prompt_ids, [2], a.mm_inputs)]  # the same prompt again later: a new run
    assert prompt_runs(items) == [2, 1, 1]
    assert requests_[0].mm_inputs, "the fixture prompts carry images"
    lengths = sorted(len(r.prompt_ids) for r in requests_)
    assert lengths[-1] - lengths[0] >= 15, "prompts of very different lengths (left padding)"


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_pass_equals_whole_sequences(micro_policy, requests_, temperature):
    model, _ = micro_policy
    assert supports_shared_prefix(model)
    items = _items(requests_)
    with torch.no_grad():
        whole = response_logprobs(model, pack(items), temperature=temperature, return_hidden=True)
        shared = shared_prefix_logprobs(model, items, temperature=temperature, return_hidden=True)
    assert shared.logprobs.shape == whole.logprobs.shape
    assert torch.allclose(shared.logprobs, whole.logprobs, atol=1e-5), (
        (shared.logprobs - whole.logprobs).abs().max()
    )
    assert torch.allclose(shared.entropy, whole.entropy, atol=1e-5)
    mask = pack(items).response_mask.bool()
    diff = (shared.response_hidden - whole.response_hidden).abs()[mask]
    assert diff.max() < 1e-5
    # a control: scoring each response under another prompt changes its log-probs
    swapped = [SequenceItem(items[-1].prompt_ids, it.response_ids, items[-1].mm_inputs) for it in items[:3]]
    with torch.no_grad():
        other = shared_prefix_logprobs(model, swapped, temperature=temperature).logprobs
    assert (other - whole.logprobs[:3, : other.shape[1]]).abs().max() > 1e-3


def test_shared_pass_gradients_equal_whole_sequences(micro_policy, requests_):
    model, _ = micro_policy
    items = _items(requests_, seed=1)
    weights = torch.linspace(-1.0, 1.0, steps=len(items))[:, None]

    def grads(fn):
        model.zero_grad(set_to_none=True)
        out = fn()
        ((out.logprobs * weights).sum() + 0.1 * out.entropy.sum()).backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    whole = grads(lambda: response_logprobs(model, pack(items)))
    shared = grads(lambda: shared_prefix_logprobs(model, items))
    model.zero_grad(set_to_none=True)
    assert whole.keys() == shared.keys() and any(k.startswith("model.visual") for k in whole)
    for name in whole:
        scale = whole[name].abs().max().clamp(min=1e-6)
        assert (whole[name] - shared[name]).abs().max() / scale < 1e-4, name


def test_text_only_prompts(micro_policy, requests_):
    model, _ = micro_policy
    items = [SequenceItem(it.prompt_ids[-12:], it.response_ids, {}) for it in _items(requests_, seed=2)]
    items = [it for it in items if model.config.image_token_id not in it.prompt_ids]
    with torch.no_grad():
        whole = response_logprobs(model, pack(items)).logprobs
        shared = shared_prefix_logprobs(model, items).logprobs
    assert torch.allclose(shared, whole, atol=1e-5)


def test_gradient_checkpointing_turns_sharing_off(micro_dir):
    from care_core.models import load_policy

    model, _ = load_policy(micro_dir)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    assert not supports_shared_prefix(model)
    model.eval()
    assert supports_shared_prefix(model)


def test_prefix_decoder_greedy_equals_generate(micro_policy, requests_):
    model, processor = micro_policy
    settings = SamplingSettings(n=2, temperature=0.0, max_new_tokens=10, seed=0)
    loop = HFEngine(model, processor, batch_size=3, show_progress=False, decode="prefix").generate(
        requests_, settings
    )
    ref = HFEngine(model, processor, batch_size=3, show_progress=False, decode="generate").generate(
        requests_, settings
    )
    for group_a, group_b in zip(loop, ref, strict=True):
        for a, b in zip(group_a, group_b, strict=True):
            assert a.response_ids == b.response_ids and a.truncated == b.truncated
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-5


def test_prefix_decoder_hidden_states_equal_teacher_forced(micro_policy, requests_):
    model, processor = micro_policy
    engine = HFEngine(model, processor, batch_size=3, show_progress=False, with_hidden=True)
    groups = engine.generate(requests_, SamplingSettings(n=3, temperature=1.0, max_new_tokens=12, seed=5))
    items = [
        SequenceItem(req.prompt_ids, s.response_ids, req.mm_inputs)
        for req, g in zip(requests_, groups, strict=True)
        for s in g
    ]
    samples = [s for g in groups for s in g]
    batch = pack(items)
    with torch.no_grad():
        whole = response_logprobs(model, batch, return_hidden=True)
    lengths = [len(s.response_ids) for s in samples]
    for row, s in enumerate(samples):
        assert s.hidden.shape == (lengths[row], whole.response_hidden.shape[-1])
        assert (s.hidden - whole.response_hidden[row, : lengths[row]]).abs().max() < 1e-5
        assert (
            max(
                abs(x - y)
                for x, y in zip(s.logprobs, whole.logprobs[row, : lengths[row]].tolist(), strict=True)
            )
            < 1e-5
        )
    spans = [[1, max(2, n - 1)] for n in lengths]
    a = think_embeddings([s.hidden for s in samples], lengths, spans)
    b = think_embeddings(whole.response_hidden, lengths, spans)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a.norm(dim=-1), torch.ones(len(samples)), atol=1e-5)


def test_think_embeddings_hand_computed():
    hidden = torch.tensor([[[3.0, 0.0], [0.0, 4.0], [9.0, 9.0]], [[1.0, 1.0], [5.0, 5.0], [0.0, 0.0]]])
    emb = think_embeddings(hidden, [3, 2], [[0, 2], [-1, -1]])
    # row 0: mean of (3, 0) and (0, 4) = (1.5, 2) -> /2.5; row 1: no span, whole response (2 tokens) = (3, 3)
    assert torch.allclose(emb, torch.tensor([[0.6, 0.8], [2**-0.5, 2**-0.5]]))


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 0.9), (5, 1.0), (7, 0.5), (0, 0.01)])
def test_filter_logits_matches_transformers_warpers(top_k, top_p):
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(top_k + int(100 * top_p)))
    expected = scores.clone()
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    got = filter_logits(scores.clone(), top_k, top_p)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.equal(got[~torch.isinf(got)], expected[~torch.isinf(expected)])
    assert (~torch.isinf(got)).sum(-1).min() >= 1
