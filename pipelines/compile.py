"""``care compile``: write the pipeline's KFP IR YAML for the KFP UI."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from kfp import compiler

from care_core.config import Recipe, flatten, recipe_to_dict
from care_core.errors import SecurityError
from care_core.tracking.redact import find_credentials
from pipelines.care_pipeline import build_pipeline

log = logging.getLogger(__name__)


def refuse_credentials(recipe: Recipe) -> None:
    """Raise ``SecurityError`` when a recipe value holds a URI with credentials (``http://user:pass@host``):
    the compiled IR stores every recipe value as a parameter default, so secrets go to Kubernetes Secrets."""
    keys = find_credentials(flatten(recipe_to_dict(recipe)))
    if keys:
        raise SecurityError(
            "a URI with credentials (user:password@) would be stored in the compiled pipeline",
            f"recipe key {', '.join(keys)}",
            hint=f"remove them from the URI; the pods read MLflow credentials from the Secret "
            f"{recipe.kubernetes.mlflow_secret!r} (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) and S3 "
            f"credentials from {recipe.kubernetes.s3_secret!r} (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
        )


def compile_pipeline(recipe: Recipe, out_path: str | Path, stages: Iterable[str] | None = None) -> Path:
    """Compile the pipeline for ``recipe`` (with kfp-kubernetes platform settings) to ``out_path``.

    A recipe value holding credentials in a URI is refused (``refuse_credentials``)."""
    refuse_credentials(recipe)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(recipe, stages)
    compiler.Compiler().compile(pipeline, str(out_path))
    log.info("compiled pipeline %s to %s", pipeline.name, out_path)
    return out_path
