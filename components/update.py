"""KFP component: PPO-clipped policy update (care_core.stages.update); a Kubeflow TrainJob when nodes > 1."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def update(
    recipe_yaml: str,
    kfp_run_id: str,
    round_index: int,
    rollouts: Input[Dataset],
    updated: Output[Model],
    metrics: Output[Metrics],
    model: Input[Model] = None,
    reference: Input[Model] = None,
    state: Input[Model] = None,
) -> str:
    """Writes the updated HF model (+ optimizer state) into ``updated``.

    ``model``/``reference`` absent = the recipe's base model; ``state`` = the previous round's update output.
    """
    import os

    import yaml

    from care_core.config import recipe_from_dict
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    rollouts_path = os.path.join(rollouts.path, "rollouts.parquet")
    model_path = model.path if model else None
    reference_path = reference.path if reference else None
    state_path = state.path if state else None
    if recipe.train.distributed.nodes > 1:
        from care_core.trainjob import run_update_trainjob

        result = run_update_trainjob(
            recipe,
            kfp_run_id,
            int(round_index),
            model_path,
            rollouts_path,
            updated.path,
            reference_path,
            state_path,
        )
    else:
        from care_core.stages.update import run_update

        result = run_update(
            recipe, model_path or recipe.model.path, rollouts_path, updated.path, reference_path, state_path
        )
    return record_stage(
        recipe, "update", result, {f"round-{int(round_index)}/model": updated.path},
        kfp_run_id=kfp_run_id, step=int(round_index) + 1, kfp_metrics=metrics,
    )  # fmt: skip
