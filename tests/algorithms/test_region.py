"""Region-weighted token advantages (docs/method.md §7): properties and an independent loop version."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from care_core.algorithms import region_weights, token_advantages


def loop_weights(
    mask: list[int], think: list[int], answer: list[int], positive: bool, tau: float, no_answer: str = "whole"
) -> list[float]:
    """Spec, token by token: answer 1, think tau_pos (positives) / 0 (negatives), 0 off-mask;
    no (or an empty) answer span -> every response token is answer (``whole``), or every non-think
    token (``outside_think``)."""
    out = []
    has_answer = answer[0] >= 0 and answer[1] > answer[0]
    for t, m in enumerate(mask):
        in_think = think[0] >= 0 and think[0] <= t < think[1] and (has_answer or no_answer == "outside_think")
        in_answer = (answer[0] <= t < answer[1]) if has_answer else not in_think
        w = 1.0 if in_answer else ((tau if positive else 0.0) if in_think else 0.0)
        out.append(w * m)
    return out


@st.composite
def sequences(draw):
    b = draw(st.integers(1, 4))
    t = draw(st.integers(1, 12))
    rows = []
    for _ in range(b):
        length = draw(st.integers(0, t))
        mask = [1] * length + [0] * (t - length)
        if length and draw(st.booleans()):  # repaired_response: some copied tokens masked out
            mask[draw(st.integers(0, length - 1))] = 0

        def span(length: int = length) -> list[int]:
            if draw(st.booleans()):
                return [-1, -1]
            s = draw(st.integers(0, length))
            return [s, draw(st.integers(s, length))]

        rows.append((mask, span(), span(), draw(st.booleans()), draw(st.floats(-3, 3, allow_nan=False))))
    return rows, draw(st.sampled_from([0.0, 0.005, 0.5])), draw(st.sampled_from(["whole", "outside_think"]))


@settings(max_examples=100, deadline=None)
@given(data=sequences())
def test_token_advantages_sum_to_sequence_advantage(data) -> None:
    rows, tau, rule = data
    mask = torch.tensor([r[0] for r in rows])
    think = torch.tensor([r[1] for r in rows])
    answer = torch.tensor([r[2] for r in rows])
    pos = torch.tensor([r[3] for r in rows])
    adv = torch.tensor([r[4] for r in rows])
    tok = token_advantages(adv, mask, think, answer, pos, tau_pos=tau, enable=True, no_answer=rule)
    w = region_weights(mask, think, answer, pos, tau, rule)
    for i, (m, th, an, p, a) in enumerate(rows):
        expected_w = loop_weights(m, th, an, p, tau, rule)
        assert w[i].tolist() == pytest.approx(expected_w)
        total = sum(expected_w)
        if total > 0:
            assert tok[i].sum().item() == pytest.approx(a, rel=1e-5, abs=1e-6)
        else:
            assert (tok[i] == 0).all()
        assert all(tok[i, t].item() == 0 for t in range(len(m)) if m[t] == 0)
        if not p and (an[1] > an[0] or rule == "outside_think"):  # negatives never push on their think span
            assert all(
                tok[i, t].item() == 0
                for t in range(len(m))
                if th[0] >= 0 and th[0] <= t < th[1] and not (an[0] <= t < an[1])
            )


def test_missing_answer_span_uses_whole_response() -> None:
    """No spans at all: 4 response tokens of weight 1 -> A/4 each; 2 padding tokens 0."""
    tok = token_advantages(
        torch.tensor([1.0]), torch.tensor([[1, 1, 1, 1, 0, 0]]), torch.tensor([[-1, -1]]), torch.tensor([[-1, -1]]),
        torch.tensor([False]), tau_pos=0.005,
    )  # fmt: skip
    assert tok[0].tolist() == pytest.approx([0.25, 0.25, 0.25, 0.25, 0.0, 0.0])
