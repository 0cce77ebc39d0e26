"""After a pipeline stage: publish its outputs to the artifact store and log it to the pipeline's MLflow run.

Used by the KFP components (one call each), so that every step of one KFP run logs into one MLflow
run (found by the ``kfp.run_id`` tag) and components keep no logic of their own.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from care_core.config import Recipe
from care_core.storage import is_s3, join, upload
from care_core.tracking.plots import plot_learning_curves, run_history
from care_core.tracking.tracker import Tracker, flatten_metrics

log = logging.getLogger(__name__)


def stage_metrics(stage: str, result: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics of a stage result (its ``metrics`` dict when it has one, else the result itself).

    Keys already namespaced (``actor/kl``, ``rollout/reward/mean``, ``eval/<bench>/accuracy``) are kept;
    bare keys get the stage as namespace (``rows_train`` -> ``ingest/rows_train``); nested dicts are
    flattened with ``/``.
    """
    inner = result.get("metrics")
    source = inner if isinstance(inner, Mapping) and inner else result
    out: dict[str, float] = {}
    for key, value in source.items():
        name = str(key) if "/" in str(key) else f"{stage}/{key}"
        out.update(flatten_metrics({name: value}))
    return out


def publish_outputs(recipe: Recipe, run_key: str, outputs: Mapping[str, str | Path]) -> dict[str, str]:
    """Upload each output (file or folder) to ``<artifact_root>/<run_key>/<name>`` when the root is S3.

    Returns name -> URI (S3 URIs, or the local paths unchanged for a local artifact root).
    """
    root = recipe.storage.artifact_root
    uris: dict[str, str] = {}
    for name, path in outputs.items():
        if is_s3(root):
            uris[name] = upload(
                path,
                join(root, run_key, name),
                retries=recipe.storage.retries,
                multipart_threshold_mb=recipe.storage.multipart_threshold_mb,
            )
        else:
            uris[name] = str(path)
    return uris


def record_stage(
    recipe: Recipe,
    stage: str,
    result: Mapping[str, Any],
    outputs: Mapping[str, str | Path],
    *,
    kfp_run_id: str,
    step: int | None = None,
    kfp_metrics: Any = None,
    final: bool = False,
    report_files: Sequence[str | Path] = (),
    report_dir: str = "eval",
) -> str:
    """Publish ``outputs``, log ``result`` (metrics at ``step``) into the KFP run's MLflow run; return its id.

    ``kfp_metrics``: an ``Output[Metrics]`` artifact to mirror the metrics into the KFP UI.
    ``final``: log learning-curve plots from the run's history and mark the run FINISHED.
    ``report_files``: local files attached under ``report_dir`` (e.g. the eval table).
    """
    uris = publish_outputs(recipe, kfp_run_id, outputs)
    tracker = Tracker.from_recipe(recipe)
    tracker.start_run(recipe, kfp_run_id=kfp_run_id)
    metrics = stage_metrics(stage, result)
    tracker.log_metrics(metrics, step=step)
    tracker.set_tags({f"artifact.{name}": uri for name, uri in uris.items()})
    if isinstance(result.get("tags"), Mapping):  # a stage's own run tags (e.g. the retraining decision)
        tracker.set_tags(result["tags"])
    if isinstance(result.get("fingerprint"), Mapping):  # ingest's data lineage -> an MLflow dataset input
        tracker.log_fingerprint(result["fingerprint"], uris.get("data", ""))
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / f"{stage}.json"
        summary.write_text(json.dumps({"result": result, "outputs": uris}, indent=2, default=str))
        suffix = f"round-{step}" if step is not None and stage in ("rollout", "advantage", "update") else ""
        tracker.log_artifact(summary, "/".join(p for p in ("stages", suffix) if p))
        for local in report_files:
            if Path(local).exists():
                tracker.log_artifact(local, report_dir)
        if final:
            png = log_learning_curves(tracker, Path(tmp) / "learning_curves.png")
            if png is not None:
                tracker.log_artifact(png, "plots")
    if kfp_metrics is not None:
        for name, value in metrics.items():
            kfp_metrics.log_metric(name.replace("/", "."), value)
    if final:
        tracker.end_run("FINISHED")
    log.info("%s: logged %d metrics to MLflow run %s; outputs %s", stage, len(metrics), tracker.run_id, uris)
    assert tracker.run_id is not None
    return tracker.run_id


def log_learning_curves(tracker: Tracker, png: Path) -> Path | None:
    """Plot this run's per-round curves (reward, accuracy, KL, length) to ``png``."""
    run = tracker.client.get_run(tracker.run_id)
    history = run_history(tracker.client, tracker.run_id, run.data.metrics.keys())
    label = f"{run.data.tags.get('algorithm', '?')} ({run.data.tags.get('recipe.name', '')})"
    return plot_learning_curves({label: history}, png, title=f"MLflow run {tracker.run_id[:8]}")
