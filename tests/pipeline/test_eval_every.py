"""``train.eval_every`` in the pipeline: held-out evaluate steps at the SFT start and every k rounds,
and the before -> after lines ``care run`` / ``care demo`` print from the run's learning curve."""

from __future__ import annotations

from care_core.config import load_recipe
from pipelines.care_pipeline import build_pipeline
from pipelines.local_run import learning_lines
from pipelines.params import pipeline_params


def _evaluate_tasks(recipe):
    spec = build_pipeline(recipe, platform=False).pipeline_spec
    return sorted(name for name in spec.root.dag.tasks if name.startswith("evaluate"))


def test_evaluate_steps_at_round_zero_every_k_rounds_and_the_end():
    recipe = load_recipe("recipes/tiny-demo.yaml", ["train.rounds=5", "train.eval_every=2"])
    # round 0 (the SFT start), after rounds 2 and 4, and the final evaluate after round 5
    assert len(_evaluate_tasks(recipe)) == 4
    assert (
        len(_evaluate_tasks(load_recipe("recipes/tiny-demo.yaml", ["train.rounds=4", "train.eval_every=2"])))
        == 3
    )
    assert _evaluate_tasks(load_recipe("recipes/tiny-demo.yaml", ["train.eval_every=0"])) == ["evaluate"]
    spec = build_pipeline(recipe, platform=False).pipeline_spec
    final = spec.root.dag.tasks["evaluate"]
    assert {"evaluate-curve", "evaluate-curve-2", "evaluate-curve-3"} <= set(
        final.dependent_tasks
    )  # it ends the run
    assert "train__eval_every" not in {p.name for p in pipeline_params(recipe)}  # fixed at compile time


def test_curve_point_steps_are_labelled():
    from pipelines.progress import step_label

    assert step_label("evaluate-curve-3") == "evaluate (curve point)" and step_label("evaluate") == "evaluate"


def test_learning_lines_before_and_after():
    curves = {"held_out": [(0, 0.40), (2, 0.45), (4, 0.5)], "reward": [(1, 0.3), (2, 0.35)]}
    lines = learning_lines(curves)
    assert lines[0] == "  Held-out accuracy by round: r0: 40.0%  r2: 45.0%  r4: 50.0%"
    assert lines[1] == "  Training reward by round:   r1: 0.300  r2: 0.350"
    assert (
        lines[2].startswith("  Before RL (round 0) -> after (round 4): 40.0% -> 50.0%")
        and "+10.0 points" in lines[2]
    )
    assert learning_lines({"held_out": [(3, 0.5)]}) == []  # one point: no curve, no before/after
