"""Estimator registry and DAPO dynamic sampling."""

from __future__ import annotations

import pytest
import torch

from care_core.algorithms import (
    ALGORITHMS,
    AlgorithmSpec,
    DynamicSamplingError,
    fill_batch,
    filter_groups,
    get_algorithm,
    list_algorithms,
    register_algorithm,
)


def test_builtin_algorithms_registered() -> None:
    assert {"grpo", "dr_grpo", "care"} <= set(list_algorithms())
    assert get_algorithm("care").needs_embeddings and not get_algorithm("grpo").needs_embeddings


def test_duplicate_registration_raises_and_unknown_lists_known() -> None:
    class Once(AlgorithmSpec):
        name = "test_only_algorithm"

    class Care(AlgorithmSpec):
        name = "care"

    try:
        assert register_algorithm(Once) is Once and get_algorithm("test_only_algorithm") is Once
        with pytest.raises(ValueError, match="already registered"):
            register_algorithm(Once)
        with pytest.raises(ValueError, match="already registered"):
            register_algorithm(Care)
    finally:
        ALGORITHMS.pop("test_only_algorithm")
    with pytest.raises(ValueError, match="has no name"):
        register_algorithm(AlgorithmSpec)
    with pytest.raises(KeyError, match=r"'nope'.*\['care', 'dr_grpo', 'grpo'"):
        get_algorithm("nope")


def test_filter_groups_counts() -> None:
    acc = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [1.0, 1.0, 0.0]])
    valid = torch.tensor(
        [[True, True, False], [True, True, True], [True, True, True], [True, True, True], [True, True, False]]
    )
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
