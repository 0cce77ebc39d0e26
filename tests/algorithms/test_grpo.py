"""GRPO / Dr. GRPO against an independent computation (Python ``statistics``) on random groups."""

from __future__ import annotations

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from care_core.algorithms import GroupBatch, algorithm_spec, grpo_advantages
from care_core.config import AlgorithmConfig, GRPOConfig

group_lists = st.lists(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=8), min_size=1, max_size=5
)


def _pad(groups: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(g) for g in groups)
    r = torch.tensor([g + [0.0] * (n - len(g)) for g in groups], dtype=torch.float64)
    v = torch.tensor([[True] * len(g) + [False] * (n - len(g)) for g in groups])
    return r, v


@settings(max_examples=80, deadline=None)
@given(groups=group_lists, std=st.sampled_from(["unbiased", "population", None]))
def test_grpo_matches_statistics_module(groups: list[list[float]], std: str | None) -> None:
    r, v = _pad(groups)
    adv = grpo_advantages(r, v, std=std, eps=1e-6)
    for b, g in enumerate(groups):
        mean = statistics.fmean(g)
        if std is None:
            sd = None
        elif len(g) == 1:
            sd = 0.0
        else:
            sd = statistics.stdev(g) if std == "unbiased" else statistics.pstdev(g)
        expected = [(x - mean) if sd is None else (x - mean) / (sd + 1e-6) for x in g]
        assert adv[b, : len(g)].tolist() == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert (adv[b, len(g) :] == 0).all()


def test_grpo_hand_values_both_conventions() -> None:
    """Rewards (1, 0, 0, 0): mean 0.25; deviations (0.75, -0.25 x 3); sum of squares 0.75.
    population std = sqrt(0.75/4) = 0.4330127 -> A = (1.7320508, -0.5773503 x 3)
    unbiased std   = sqrt(0.75/3) = 0.5       -> A = (1.5, -0.5 x 3)"""
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    v = torch.ones(1, 4, dtype=torch.bool)
    assert grpo_advantages(r, v, "population").tolist()[0] == pytest.approx(
        [1.7320508, -0.5773503, -0.5773503, -0.5773503], abs=1e-5
    )
    assert grpo_advantages(r, v, "unbiased").tolist()[0] == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    assert grpo_advantages(r, v, None).tolist()[0] == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_grpo_estimators_ignore_rgr_rows() -> None:
    r = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    batch = GroupBatch(
        r, r.clone(), torch.ones(1, 3, dtype=torch.bool), is_rgr=torch.tensor([[False, False, True]])
    )
    out = algorithm_spec(AlgorithmConfig(name="grpo", grpo=GRPOConfig(std="population"))).advantages(batch)
    assert out.advantages.tolist()[0] == pytest.approx([1.0, -1.0, 0.0], abs=1e-5)
    dr = algorithm_spec(AlgorithmConfig(name="dr_grpo")).advantages(batch)
    assert dr.advantages.tolist()[0] == pytest.approx([0.5, -0.5, 0.0])
    assert out.group_kind.tolist() == [0]  # mixed
