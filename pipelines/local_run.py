"""``care run`` / ``care demo``: the whole pipeline on this machine through ``kfp.local`` (no Kubernetes).

kfp.local's pipeline root must be a local folder (an ``s3://`` root silently becomes a folder named
``s3:``), so it lives under ``work_dir``; components upload their outputs themselves when the recipe's
``storage.artifact_root`` is S3.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from care_core.config import Recipe
from care_core.constants import STAGES
from care_core.storage import is_s3

log = logging.getLogger(__name__)


def _rebase(value: str, work_dir: Path) -> str:
    """``.care/x`` -> ``<work_dir>/x``; other relative paths -> absolute; absolute paths and URIs unchanged."""
    if "://" in value or Path(value).is_absolute():
        return value
    parts = Path(value).parts
    if parts and parts[0] == ".care":
        return str(work_dir.joinpath(*parts[1:]))
    return str(Path(value).resolve())


def localize(recipe: Recipe, work_dir: Path) -> Recipe:
    """Make the recipe's local paths absolute (components run as subprocesses) and rooted in ``work_dir``."""
    uri = recipe.tracking.uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + _rebase(uri[len("sqlite:///") :], work_dir)
    elif "://" not in uri:
        uri = _rebase(uri, work_dir)
    root = (
        recipe.storage.artifact_root
        if is_s3(recipe.storage.artifact_root)
        else _rebase(recipe.storage.artifact_root, work_dir)
    )
    return dataclasses.replace(
        recipe,
        tracking=dataclasses.replace(recipe.tracking, uri=uri),
        storage=dataclasses.replace(recipe.storage, artifact_root=root),
        model=dataclasses.replace(recipe.model, cache_dir=_rebase(recipe.model.cache_dir, work_dir)),
        train=dataclasses.replace(recipe.train, output_dir=_rebase(recipe.train.output_dir, work_dir)),
    )


def _latest_run_dir(pipeline_root: Path, name: str, before: set[Path]) -> Path | None:
    candidates = [p for p in pipeline_root.glob(f"{name}-*") if p.is_dir() and p not in before]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def run_local(
    recipe: Recipe,
    work_dir: Path = Path(".care"),
    stages: Iterable[str] | None = None,
    *,
    quiet: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the pipeline with ``kfp.local.SubprocessRunner(use_venv=False)``; return a summary.

    ``progress``: the console shows one line per step, a bar for the running step and the summary;
    everything kfp.local and the components print goes to ``<work_dir>/logs/<pipeline>-<time>.log``
    (its path is printed first and is the summary's ``log_file``). A failed step raises
    ``StepFailed`` holding that step's error line. ``quiet``: print nothing.

    Summary keys: ``pipeline``, ``stages``, ``rounds``, ``wall_s``, ``pipeline_root``, ``run_dir``,
    ``artifacts`` (stage output name -> path or S3 URI), ``mlflow`` (tracking URI, experiment, run id,
    UI command), ``eval_table`` (Markdown) and ``eval`` (metrics).
    """
    from kfp import local

    from pipelines.care_pipeline import build_pipeline, pipeline_name
    from pipelines.compile import refuse_credentials

    refuse_credentials(recipe)  # the recipe is a pipeline parameter: kfp.local's files and logs would hold it
    work_dir = Path(work_dir).resolve()
    pipeline_root = work_dir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    recipe = localize(recipe, work_dir)
    stage_list = list(STAGES if stages is None else stages)
    name = pipeline_name(recipe)
    before = set(pipeline_root.glob(f"{name}-*"))

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True
    )
    pipeline = build_pipeline(recipe, stage_list, platform=False)
    start = time.monotonic()
    started_ms = int(time.time() * 1000)
    log_file = work_dir / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log" if progress else None
    try:
        with (
            warnings.catch_warnings()
        ):  # kfp.local notes that display names and the image are not used locally
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
            task = _run_with_progress(pipeline, name, log_file, quiet) if log_file else pipeline()
    except Exception:
        _mark_failed(recipe, started_ms)
        raise
    wall = time.monotonic() - start
    mlflow_run_id = task.output
    summary = _summarise(recipe, mlflow_run_id)
    summary.update(
        pipeline=name,
        stages=stage_list,
        rounds=recipe.train.rounds,
        wall_s=round(wall, 1),
        pipeline_root=str(pipeline_root),
        run_dir=str(_latest_run_dir(pipeline_root, name, before) or pipeline_root),
        log_file=str(log_file) if log_file else None,
    )
    if not quiet:
        print(_where_to_look(summary))
    return summary


def _run_with_progress(pipeline: Any, name: str, log_file: Path, quiet: bool) -> Any:
    """Run ``pipeline()`` with its output in ``log_file`` and step progress on the console."""
    from pipelines.progress import StepProgress, count_steps

    log_file.parent.mkdir(parents=True, exist_ok=True)
    console = open(os.devnull, "w") if quiet else sys.stdout  # noqa: SIM115  (closed below)
    total = count_steps(pipeline.pipeline_spec)
    console.write(f"Running pipeline {name} through kfp.local: {total} steps. Full log: {log_file}\n")
    root = logging.getLogger()
    saved = root.handlers[:]
    with log_file.open("w", encoding="utf-8") as log:
        stream = StepProgress(log, console, total)
        root.handlers = [logging.StreamHandler(log)]  # this process's own log records go to the file too
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                return pipeline()
        except Exception as exc:
            failure = stream.failure(log_file)
            if failure is None:
                raise
            raise failure from exc
        finally:
            root.handlers = saved
            if quiet:
                console.close()


def _mark_failed(recipe: Recipe, started_ms: int) -> None:
    """Mark the MLflow run(s) this local run opened (RUNNING, same recipe hash, started after us) FAILED."""
    from care_core.config import recipe_hash
    from care_core.tracking import TAG_RECIPE_HASH, Tracker

    try:
        tracker = Tracker.from_recipe(recipe, retries=1)
        runs = tracker.client.search_runs(
            [tracker.experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG_RECIPE_HASH}` = '{recipe_hash(recipe)}'",
        )
        for run in runs:
            if run.info.start_time >= started_ms:
                tracker.client.set_terminated(run.info.run_id, status="FAILED")
                log.error("pipeline failed: MLflow run %s marked FAILED", run.info.run_id)
    except Exception as exc:  # noqa: BLE001  (never hide the pipeline's own error)
        log.warning("could not mark the MLflow run FAILED: %s", exc)


def _summarise(recipe: Recipe, mlflow_run_id: str) -> dict[str, Any]:
    from care_core.tracking import Tracker

    tracker = Tracker.from_recipe(recipe)
    run = tracker.client.get_run(mlflow_run_id)
    artifacts = {
        k[len("artifact.") :]: v for k, v in sorted(run.data.tags.items()) if k.startswith("artifact.")
    }
    eval_metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")}
    curves = {}  # the learning curve: held-out accuracy per evaluated round, training reward per round
    per_bench = sorted(
        k for k in run.data.metrics if k.startswith("eval/") and k.count("/") == 2 and k.endswith("/accuracy")
    )
    held_out = (
        "eval/macro_avg" if "eval/macro_avg" in run.data.metrics or len(per_bench) != 1 else per_bench[0]
    )
    for name, key in (("held_out", held_out), ("reward", "reward/mean")):
        history = tracker.client.get_metric_history(mlflow_run_id, key) if key in run.data.metrics else []
        curves[name] = sorted({int(m.step): float(m.value) for m in history}.items())
    table = ""
    results_dir = artifacts.get("eval")
    if results_dir and not is_s3(results_dir) and (Path(results_dir) / "results.md").is_file():
        table = (Path(results_dir) / "results.md").read_text()
    ui = (
        f"mlflow ui --backend-store-uri {recipe.tracking.uri}"
        if recipe.tracking.uri.startswith("sqlite:")
        else f"open {recipe.tracking.uri}"
    )
    return {
        "mlflow": {
            "tracking_uri": recipe.tracking.uri,
            "experiment": recipe.tracking.experiment,
            "run_id": mlflow_run_id,
            "status": run.info.status,
            "ui": ui,
        },
        "artifact_root": recipe.storage.artifact_root,
        "artifacts": artifacts,
        "eval": eval_metrics,
        "curves": curves,
        "eval_table": table,
    }


def _where_to_look(summary: dict[str, Any]) -> str:
    mlf = summary["mlflow"]
    lines = [
        f"Pipeline {summary['pipeline']} finished in {summary['wall_s']} s "
        f"(stages: {', '.join(summary['stages'])}; rounds: {summary['rounds']}).",
        f"  MLflow run {mlf['run_id']} in experiment {mlf['experiment']!r} -> {mlf['ui']}",
        f"  KFP local run folder: {summary['run_dir']}",
        *([f"  Full log: {summary['log_file']}"] if summary.get("log_file") else []),
        f"  Artifacts ({summary['artifact_root'] if is_s3(summary['artifact_root']) else 'in the KFP pipeline root'}):",
        *[f"    {name}: {uri}" for name, uri in summary["artifacts"].items()],
    ]
    lines += learning_lines(summary.get("curves") or {})
    if summary["eval_table"]:
        lines += ["", summary["eval_table"]]
    return "\n".join(lines)


def learning_lines(curves: dict[str, list[tuple[int, float]]]) -> list[str]:
    """The run's learning in two or three lines: held-out accuracy (``held_out``: the macro average, or the
    one benchmark's accuracy) at each evaluated round (round 0 is the SFT start when
    ``train.eval_every`` is set), the training reward per round (``reward``), and before -> after."""
    lines = []
    held_out, reward = curves.get("held_out") or [], curves.get("reward") or []
    if len(held_out) > 1:
        points = "  ".join(f"r{step}: {100 * v:.1f}%" for step, v in held_out)
        lines.append(f"  Held-out accuracy by round: {points}")
    if reward:
        lines.append("  Training reward by round:   " + "  ".join(f"r{step}: {v:.3f}" for step, v in reward))
    if len(held_out) > 1:
        (_, before), (_, after) = held_out[0], held_out[-1]
        lines.append(
            f"  Before RL (round 0) -> after (round {held_out[-1][0]}): {100 * before:.1f}% -> {100 * after:.1f}% "
            f"held-out accuracy ({100 * (after - before):+.1f} points)"
        )
    return lines
