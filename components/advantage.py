"""KFP component: GRPO / Dr.GRPO / CARE advantages for one round's rollouts (care_core.stages.advantage)."""

from kfp.dsl import Dataset, Input, Metrics, Output


def advantage(
    recipe_yaml: str,
    kfp_run_id: str,
    round_index: int,
    rollouts: Input[Dataset],
    scored: Output[Dataset],
    metrics: Output[Metrics],
) -> str:
    """Writes ``rollouts.parquet`` with advantage/role/group_kind into ``scored``."""
    import os

    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.advantage import run_advantage
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    os.makedirs(scored.path, exist_ok=True)
    out = os.path.join(scored.path, "rollouts.parquet")
    result = run_advantage(recipe, os.path.join(rollouts.path, "rollouts.parquet"), out)
    return record_stage(
        recipe, "advantage", result, {f"round-{int(round_index)}/advantages": out},
        kfp_run_id=kfp_run_id, step=int(round_index) + 1, kfp_metrics=metrics,
    )  # fmt: skip
