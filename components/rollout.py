"""KFP component: sample G rollouts per prompt, score them, add RGR rows (care_core.stages.rollout)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def rollout(
    recipe_yaml: str,
    kfp_run_id: str,
    round_index: int,
    data: Input[Dataset],
    rollouts: Output[Dataset],
    metrics: Output[Metrics],
    model: Input[Model] = None,
) -> str:
    """Writes ``rollouts.parquet`` into ``rollouts``; ``model`` absent = the recipe's base model."""
    import os

    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.rollout import run_rollout
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    os.makedirs(rollouts.path, exist_ok=True)
    out = os.path.join(rollouts.path, "rollouts.parquet")
    result = run_rollout(recipe, model.path if model else None, data.path, out, int(round_index))
    return record_stage(
        recipe, "rollout", result, {f"round-{int(round_index)}/rollouts": out},
        kfp_run_id=kfp_run_id, step=int(round_index) + 1, kfp_metrics=metrics,
    )  # fmt: skip
