"""KFP component: ingest the recipe's sources into example-row Parquet (care_core.stages.ingest)."""

from kfp.dsl import Dataset, Metrics, Output


def ingest(recipe_yaml: str, kfp_run_id: str, data: Output[Dataset], metrics: Output[Metrics]) -> str:
    """Writes train/test Parquet, manifest.json and fingerprint.json into ``data`` (the data fingerprint is
    also the artifact's metadata in the KFP UI); returns the MLflow run id."""
    import yaml

    from care_core.config import recipe_from_dict
    from care_core.stages.ingest import run_ingest
    from care_core.tracking.stage_log import record_stage

    recipe = recipe_from_dict(yaml.safe_load(recipe_yaml), origin="recipe_yaml")
    result = run_ingest(recipe, data.path)
    data.metadata.update(
        {"fingerprint": result["fingerprint"]["digest"], "rows": result["fingerprint"]["rows"]}
    )
    return record_stage(
        recipe, "ingest", result, {"data": data.path}, kfp_run_id=kfp_run_id, kfp_metrics=metrics
    )
