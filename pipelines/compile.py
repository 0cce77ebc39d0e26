"""``care compile``: write the pipeline's KFP IR YAML for the KFP UI."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from kfp import compiler

from care_core.config import Recipe
from pipelines.care_pipeline import build_pipeline

log = logging.getLogger(__name__)


def compile_pipeline(recipe: Recipe, out_path: str | Path, stages: Iterable[str] | None = None) -> Path:
    """Compile the pipeline for ``recipe`` (with kfp-kubernetes platform settings) to ``out_path``."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(recipe, stages)
    compiler.Compiler().compile(pipeline, str(out_path))
    log.info("compiled pipeline %s to %s", pipeline.name, out_path)
    return out_path
