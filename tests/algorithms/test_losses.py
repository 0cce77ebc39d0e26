"""PPO clip / dual clip, KL estimators and loss aggregation (docs/method.md §8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from care_core.algorithms import aggregate_loss, kl_penalty, ppo_clip_loss, ppo_clip_token_loss

floats = st.floats(-3, 3, allow_nan=False, width=64)


def closed_form(logp: float, old: float, a: float, el: float, eh: float, c: float | None) -> float:
    """A > 0: -A min(r, 1 + eh). A < 0: |A| max(r, 1 - el), then min(., |A| c). A = 0: 0."""
    r = math.exp(max(-20.0, min(20.0, logp - old)))
    if a > 0:
        return -a * min(r, 1 + eh)
    if a < 0:
        v = -a * max(r, 1 - el)
        return min(v, -a * c) if c is not None else v
    return 0.0


@settings(max_examples=100, deadline=None)
@given(
    x=arrays(np.float64, (3, 5), elements=floats),
    y=arrays(np.float64, (3, 5), elements=floats),
    a=arrays(np.float64, (3, 5), elements=floats),
    el=st.sampled_from([0.1, 0.2]),
    eh=st.sampled_from([0.2, 0.28, 0.3]),
    c=st.sampled_from([None, 3.0, 10.0]),
)
@example(  # found by CI: a subnormal negative advantage, r = e^-0.5 < 1 - eps_low; both products underflow alike
    x=np.full((3, 5), -2.5), y=np.full((3, 5), -2.0), a=np.full((3, 5), -5e-324), el=0.1, eh=0.2, c=None
)
def test_clip_matches_closed_form(x, y, a, el, eh, c) -> None:
    loss, ratio, clip_active, dual = ppo_clip_token_loss(
        torch.tensor(x), torch.tensor(y), torch.tensor(a), el, eh, c
    )
    expected = np.vectorize(lambda p, o, adv: closed_form(p, o, adv, el, eh, c))(x, y, a)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12, atol=1e-12)
    mask = torch.ones(3, 5)
    total, metrics = ppo_clip_loss(
        torch.tensor(x), torch.tensor(y), torch.tensor(a), mask, el, eh, c, "token-mean"
    )
    assert total.item() == pytest.approx(expected.mean(), rel=1e-12, abs=1e-12)
    r = np.exp(x - y)
    low = ((a < 0) & (r < 1 - el)).mean()
    high = ((a > 0) & (r > 1 + eh)).mean()
    assert metrics["clipfrac_low"] == pytest.approx(low) and metrics["clipfrac_high"] == pytest.approx(high)
    if c is not None:
        assert metrics["clipfrac_dual"] == pytest.approx(((a < 0) & (r > c)).mean())


def test_clip_gradient_is_zero_when_clipped() -> None:
    """A > 0 and r = e^1 > 1.3: clipped, no gradient; A > 0 and r = 1: d loss / d logp = -A."""
    logp = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss, _ = ppo_clip_loss(
        logp, torch.zeros(1, 2), torch.tensor([[2.0, 2.0]]), torch.ones(1, 2), 0.2, 0.3, 3.0, "token-mean"
    )
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([0.0, -1.0])  # token mean over 2 tokens: -2 / 2


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float64, (4, 6), elements=st.floats(-25, 25, width=64)),
    arrays(np.float64, (4, 6), elements=st.floats(-25, 25, width=64)),
)
def test_kl_estimators(logp, ref) -> None:
    lp, rf = torch.tensor(logp), torch.tensor(ref)
    k3 = kl_penalty(lp, rf, "k3")
    assert (k3 >= 0).all()
    d = np.clip(ref - logp, -20, 20)
    np.testing.assert_allclose(k3.numpy(), np.clip(np.exp(d) - d - 1, -10, 10), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kl_penalty(lp, rf, "k1").numpy(), logp - ref)
    np.testing.assert_allclose(kl_penalty(lp, rf, "k2").numpy(), 0.5 * (logp - ref) ** 2)
    k3_32 = kl_penalty(lp.float(), rf.float() + 1e-7, "k3")  # float32, tiny differences
    assert (k3_32 >= 0).all()


def test_kl_unknown_kind_lists_known() -> None:
    with pytest.raises(ValueError, match="k1"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "k4")


def test_aggregation_modes_by_hand() -> None:
    """loss rows (1, 2, 3 | masked 9) and (4, pad, pad, pad): masks (1,1,1,0), (1,0,0,0).
    token-mean = (1+2+3+4)/4 = 2.5; seq-mean-token-mean = (2 + 4)/2 = 3;
    seq-mean-token-sum-norm = (6/4 + 4/4)/2 = 1.25 (T = 4)."""
    loss = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, float("nan"), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(2.5)
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(1.25)
    assert aggregate_loss(loss, mask, "token-mean", denom=8).item() == pytest.approx(10 / 8)
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_loss(loss, mask, "sum")
