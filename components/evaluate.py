"""KFP component: evaluate the final policy on the recipe's benchmarks (care_core.stages.evaluate)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    recipe_yaml: str,
    kfp_run_id: str,
    data: Input[Dataset],
    results: Output[Dataset],
    table: Output[Markdown],
    report: Output[HTML],
    metrics: Output[Metrics],
    model: Input[Model] = None,
) -> str:
    """Writes results.json/results.md into ``results``, the eval table (Markdown + HTML) for the KFP UI,
    logs the table and learning curves to MLflow and finishes the MLflow run."""
    import os

    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.evaluate import run_evaluate
    from care_core.tracking.report import write_table_reports
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    result = run_evaluate(recipe, model.path if model else None, results.path, data.path)
    write_table_reports(result, table.path, report.path, os.path.join(results.path, "results.md"))
    return record_stage(
        recipe, "evaluate", result, {"eval": results.path}, kfp_run_id=kfp_run_id,
        step=recipe.train.rounds, kfp_metrics=metrics, final=True,
        report_files=[os.path.join(results.path, name) for name in ("results.md", "results.json")],
    )  # fmt: skip


def evaluate_curve(
    recipe_yaml: str,
    kfp_run_id: str,
    data: Input[Dataset],
    round_index: int,
    metrics: Output[Metrics],
    model: Input[Model] = None,
) -> str:
    """A learning-curve point (``train.eval_every``): the held-out evaluation of the policy after
    ``round_index`` rounds (0: the SFT start), logged at that step; publishes nothing and leaves the
    MLflow run open for the final ``evaluate``."""
    import tempfile

    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.evaluate import run_evaluate
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    with tempfile.TemporaryDirectory() as out:
        result = run_evaluate(recipe, model.path if model else None, out, data.path)
    return record_stage(
        recipe, "evaluate", result, {}, kfp_run_id=kfp_run_id, step=int(round_index), kfp_metrics=metrics
    )
