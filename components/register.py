"""KFP components of scheduled retraining (care_core.stages.register): the plan step after ingest and
the register + eval-gate step after evaluate."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output


def plan_retrain(
    recipe_yaml: str,
    kfp_run_id: str,
    data: Input[Dataset],
    start: Output[Model],
    plan: Output[Markdown],
    metrics: Output[Metrics],
) -> str:
    """Returns the action, ``train`` or ``skip`` (skip ends the MLflow run); ``start`` holds the warm-start
    model (empty: the base model). The parent version goes to the MLflow run's tags."""
    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.register import run_plan
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    result = run_plan(recipe, data.path, start.path, plan.path)
    start.metadata.update({"start": result["start"], "parent_version": result["parent_version"]})
    record_stage(
        recipe, "plan", result, {}, kfp_run_id=kfp_run_id, kfp_metrics=metrics,
        final=result["action"] == "skip", report_files=[plan.path], report_dir="retrain",
    )  # fmt: skip
    return result["action"]


def register(
    recipe_yaml: str,
    kfp_run_id: str,
    model_output: str,
    data: Input[Dataset],
    results: Input[Dataset],
    model: Input[Model],
    decision: Output[Markdown],
    metrics: Output[Metrics],
) -> str:
    """Registers the model as a version of ``retrain.registered_model`` (parent: the plan's run tags);
    ``decision``: the gate's verdict and both scores (Markdown)."""
    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.register import run_register
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    result = run_register(
        recipe, model.path, results.path, data.path, decision.path, kfp_run_id=kfp_run_id,
        model_output=model_output,
    )  # fmt: skip
    return record_stage(
        recipe, "register", result, {}, kfp_run_id=kfp_run_id, kfp_metrics=metrics, final=True,
        report_files=[decision.path], report_dir="retrain",
    )  # fmt: skip
