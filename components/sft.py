"""KFP component: cold-start SFT on the ingested rows' solutions (care_core.stages.sft)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def sft(
    recipe_yaml: str,
    kfp_run_id: str,
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    init: Input[Model] = None,
) -> str:
    """Writes the fine-tuned HF model folder into ``model``; returns the MLflow run id.

    ``init``: the retraining plan's warm-start model (absent or empty = the recipe's base model)."""
    import yaml  # noqa: I001  (ruff misplaces care_core.stages.sft until that module exists)

    from care_core.config import recipe_from_dict
    from care_core.stages.register import start_model_path
    from care_core.stages.sft import run_sft
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    result = run_sft(recipe, data.path, model.path, model_path=start_model_path(init.path if init else None))
    return record_stage(
        recipe, "sft", result, {"sft/model": model.path}, kfp_run_id=kfp_run_id, step=0, kfp_metrics=metrics
    )
