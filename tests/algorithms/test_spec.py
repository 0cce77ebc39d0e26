"""One spec per algorithm: the stages ask it, so a new estimator is one file (toy_estimator.py) plus
this test; nothing in care_core names it."""

from __future__ import annotations

import pyarrow as pa
import pytest
import toy_estimator  # noqa: F401  (registers "toy_centred_accuracy")

from care_core.algorithms import ALGORITHMS, algorithm_label, algorithm_spec
from care_core.config import RecipeError, build_recipe
from care_core.schema import ROLLOUT_SCHEMA
from care_core.stages.advantage import compute_advantages
from care_core.training.ppo import settings_from_recipe

TOY = "toy_centred_accuracy"


def _rows() -> list[dict]:
    """Group g: accuracies (1, 0, 0, 1) -> mean 0.5; a 3-token response each, no embeddings."""
    out = []
    for i, acc in enumerate([1.0, 0.0, 0.0, 1.0]):
        out.append({
            "group_id": "g", "sample_index": i, "source": "rollout", "replaces": -1, "prompt_ids": [1],
            "response_ids": [5, 6, 7], "response_text": "x", "old_logprobs": [-1.0] * 3, "loss_mask": [1] * 3,
            "think_span": [0, 1], "answer_span": [2, 3], "embedding": [], "reward": acc, "accuracy": acc,
            "format": 0.0, "truncated": False,
        })  # fmt: skip
    return out


def test_the_builtin_specs_say_what_they_need() -> None:
    care = algorithm_spec(build_recipe({}).algorithm)
    grpo = algorithm_spec(build_recipe({"algorithm": {"name": "grpo"}}).algorithm)
    no_rgr = algorithm_spec(
        build_recipe(
            {"algorithm": {"care": {"rgr": {"enable": False}, "region": {"enable": False}}}}
        ).algorithm
    )
    assert (care.needs_embeddings, care.uses_rgr, care.uses_region_weights) == (True, True, True)
    assert (grpo.needs_embeddings, grpo.uses_rgr, grpo.uses_region_weights) == (False, False, False)
    assert (no_rgr.uses_rgr, no_rgr.uses_region_weights) == (False, False)
    # the spec holds the recipe section itself (no renamed copy)
    recipe = build_recipe({"algorithm": {"care": {"s": 0.4}}})
    assert algorithm_spec(recipe.algorithm).algorithm.care is recipe.algorithm.care
    assert recipe.algorithm.care.reflection_scale == pytest.approx(0.2)
    assert algorithm_label("dr_grpo") == "Dr.GRPO" and algorithm_label("unknown") == "unknown"


def test_toy_estimator_runs_through_recipe_advantage_stage_and_update_settings() -> None:
    assert TOY in ALGORITHMS
    recipe = build_recipe({"algorithm": {"name": TOY, "params": {"scale": 2.0}}})
    table = pa.Table.from_pylist(_rows(), schema=ROLLOUT_SCHEMA)
    out, diag = compute_advantages(table, recipe, "toy.parquet")
    # A = 2 * (acc - 0.5) = (1, -1, -1, 1); no embedding was asked for (the rows carry none)
    assert out.column("advantage").to_pylist() == [1.0, -1.0, -1.0, 1.0]
    assert out.column("group_kind").to_pylist() == ["mixed"] * 4
    assert diag["algorithm"] == TOY  # the spec's diagnostics are logged under its name
    assert diag["metrics"][f"{TOY}/toy_scale"] == 2.0 and diag["metrics"][f"{TOY}/toy_adv_sum"] == 0.0
    assert not any(
        key.startswith("care/") for key in diag["metrics"]
    )  # CARE's diagnostics belong to CARE's spec
    settings = settings_from_recipe(recipe)
    assert settings.region is not None and settings.region.tau_pos == 0.0


def test_unknown_algorithm_is_a_recipe_error() -> None:
    with pytest.raises(
        RecipeError, match=r"algorithm.name='nope' is not one of \[.*'care'.*'toy_centred_accuracy'"
    ):
        build_recipe({"algorithm": {"name": "nope"}})
