"""Estimator registry and DAPO dynamic sampling."""

from __future__ import annotations

import pytest
import torch

from care_core.algorithms import (
    DynamicSamplingError,
    fill_batch,
    filter_groups,
    get_advantage_estimator,
    list_advantage_estimators,
    register_advantage_estimator,
)
from care_core.algorithms.registry import _ESTIMATORS


def test_builtin_estimators_registered() -> None:
    assert {"grpo", "dr_grpo", "care"} <= set(list_advantage_estimators())


def test_duplicate_registration_raises_and_unknown_lists_known() -> None:
    @register_advantage_estimator("test_only_estimator")
    def est(batch, params):  # noqa: ANN001, ANN202
        return None

    try:
        assert get_advantage_estimator("test_only_estimator") is est
        with pytest.raises(ValueError, match="already registered"):
            register_advantage_estimator("test_only_estimator")(est)
        with pytest.raises(ValueError, match="already registered"):
            register_advantage_estimator("care")(est)
    finally:
        _ESTIMATORS.pop("test_only_estimator")
    with pytest.raises(KeyError, match=r"'nope'.*\['care', 'dr_grpo', 'grpo'"):
        get_advantage_estimator("nope")


def test_filter_groups_counts() -> None:
    acc = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [1.0, 1.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, True, True], [True, True, True], [True, True, True], [True, True, False]])
    keep, counts = filter_groups(acc, valid)
    # group 4: the padding 0 is ignored -> all correct
    assert keep.tolist() == [False, False, True, True, False]
    assert counts == {"kept": 2, "dropped_all_correct": 2, "dropped_all_wrong": 1}


def test_fill_batch_refills_and_errors() -> None:
    stream = iter([[1, 0, 1, 0], [1, 1], [0, 0, 0], [1, 1, 1]])  # 1 = informative group

    def sample(n: int):
        return next(stream)

    def flags(gs):
        return [g == 1 for g in gs]

    kept, counts = fill_batch(sample, flags, target=4, max_tries=5)
    assert kept == [1, 1, 1, 1] and counts == {"tries": 2, "sampled": 6, "dropped": 2}
    with pytest.raises(DynamicSamplingError, match=r"only 0 of 2 groups.*after 1 tries"):
        fill_batch(lambda n: [0] * n, flags, target=2, max_tries=1)
