"""Scheduled retraining stages around the MLflow Model Registry (``care_core.tracking.registry``).

``run_plan`` (after ingest): reads the data fingerprint, looks up the registered model's
``champion``, decides ``train`` or ``skip`` (``retrain.skip_if_unchanged``: same data fingerprint
and training recipe as the champion) and, for ``retrain.start_from`` = ``champion`` or a model URI,
copies the start model into ``start_dir`` (SFT, or the first round without SFT, start from it).

``run_register`` (after evaluate): registers the trained model as a new version of
``retrain.registered_model`` with lineage and eval tags, runs the gate (``decide_promotion``) and
moves ``champion`` or ``challenger``. Both write a Markdown report (the KFP UI shows it) and return
``tags``/``metrics`` that ``record_stage`` logs into the pipeline's MLflow run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from care_core.config import Recipe, recipe_hash
from care_core.data.fingerprint import fingerprint_markdown, read_fingerprint
from care_core.tracking.registry import (
    CHAMPION,
    TAG_EVAL_SCORE,
    TAG_EVAL_SPEC,
    TAG_FINGERPRINT,
    TAG_MLFLOW_RUN,
    TAG_PARENT_SOURCE,
    TAG_PARENT_VERSION,
    TAG_ROWS,
    TAG_START_FROM,
    TAG_TRAIN_HASH,
    Candidate,
    apply_decision,
    candidate_of,
    decide_promotion,
    download_model,
    eval_spec,
    gate_score,
    register_version,
    resolve_models_uri,
    training_hash,
    version_by_alias,
)
from care_core.tracking.tracker import (
    TAG_ALGORITHM,
    TAG_GIT_COMMIT,
    TAG_KFP_RUN,
    TAG_RECIPE,
    TAG_RECIPE_HASH,
    Tracker,
    git_commit,
)

log = logging.getLogger(__name__)

PLAN_TRAIN, PLAN_SKIP = "train", "skip"


def start_model_path(folder: str | Path | None) -> str | None:
    """The warm-start model in ``folder`` (the plan step's ``start`` artifact), or None: the recipe's base model."""
    if folder is None:
        return None
    return str(folder) if (Path(folder) / "config.json").is_file() else None


def _start_source(
    tracker: Tracker, recipe: Recipe, champion: Any | None
) -> tuple[str | None, str | None, str]:
    """(source URI, parent version, note) for ``retrain.start_from``; source None = the base model."""
    start = recipe.retrain.start_from
    if start == "base":
        return None, None, "starting from the base model (retrain.start_from=base)"
    if start == CHAMPION:
        if champion is None:
            return None, None, "no champion yet: starting from the base model"
        return str(champion.source), str(champion.version), f"warm start from champion v{champion.version}"
    if start.startswith("models:/"):
        source, version = resolve_models_uri(tracker, start)
        parent = (
            str(version.version)
            if version is not None and version.name == recipe.retrain.registered_model
            else None
        )
        return source, parent, f"warm start from {start} ({source})"
    return start, None, f"warm start from {start}"


def run_plan(
    recipe: Recipe, data_dir: str | Path, start_dir: str | Path, report_path: str | Path
) -> dict[str, Any]:
    """Decide train/skip and fetch the warm-start model; returns ``{action, reason, parent_version, ...}``."""
    fp = read_fingerprint(data_dir)
    digest, thash = fp["digest"], training_hash(recipe)
    name = recipe.retrain.registered_model
    Path(start_dir).mkdir(parents=True, exist_ok=True)
    champion = None
    tracker = Tracker.from_recipe(recipe)
    if name:
        champion = version_by_alias(tracker, name, CHAMPION)
    action, reason = PLAN_TRAIN, "data or training recipe differ from the champion's"
    source = parent = None
    if not name:
        reason = "retrain.registered_model is not set: no registry, plain training run"
        note = "starting from the base model"
    elif champion is None:
        reason = f"registered model {name!r} has no champion yet"
    elif (recipe.retrain.skip_if_unchanged and (champion.tags or {}).get(TAG_FINGERPRINT) == digest
          and (champion.tags or {}).get(TAG_TRAIN_HASH) == thash):  # fmt: skip
        action = PLAN_SKIP
        reason = (f"skipped: data fingerprint {digest[:12]} and training recipe {thash} equal champion "
                  f"v{champion.version}'s (retrain.skip_if_unchanged)")  # fmt: skip
    elif not recipe.retrain.skip_if_unchanged:
        reason = "retrain.skip_if_unchanged is off"
    if action == PLAN_TRAIN and name:
        source, parent, note = _start_source(tracker, recipe, champion)
        if source is not None and not recipe.train.sft.enable:
            raise ValueError(f"retrain.start_from={recipe.retrain.start_from!r} needs train.sft.enable=true: "
                             "the warm start enters the pipeline through SFT")  # fmt: skip
        if source is not None:
            download_model(source, start_dir, recipe.tracking.uri, retries=recipe.storage.retries)
    elif action == PLAN_SKIP:
        note = "nothing trained"
    (Path(start_dir) / "START.json").write_text(
        json.dumps({"start": note, "source": source, "parent_version": parent})
    )
    champ_text = f"v{champion.version} (source {champion.source})" if champion is not None else "none"
    report = (
        f"# Retraining plan: **{action}**\n\n{reason}.\n\n- registered model: `{name}`\n- champion: {champ_text}\n"
        f"- start: {note}\n- training recipe hash: `{thash}`\n\n" + fingerprint_markdown(fp)
    )
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(report)
    tags = {
        "retrain.action": action, "retrain.reason": reason, "retrain.start": note,
        TAG_TRAIN_HASH: thash, TAG_FINGERPRINT: digest,
        TAG_PARENT_VERSION: parent or "", TAG_PARENT_SOURCE: source or "",
        "retrain.champion_version": str(champion.version) if champion is not None else "",
    }  # fmt: skip
    log.info("retraining plan: %s (%s); %s", action, reason, note)
    return {
        "action": action,
        "reason": reason,
        "start": note,
        "parent_version": parent or "",
        "parent_source": source or "",
        "data_fingerprint": digest,
        "recipe_train_hash": thash,
        "tags": tags,
        "metrics": {"retrain/skipped": float(action == PLAN_SKIP)},
        "report": report,
    }


def _model_source(
    tracker: Tracker, recipe: Recipe, run_id: str, model_dir: str | Path, published: str | None
) -> str:
    """Where the registry points: the model's S3 copy when the artifact root is S3, else the model logged
    into the MLflow run (``runs:/<run>/model``; a tracking server refuses plain local paths)."""
    from care_core.storage import is_s3

    if published and is_s3(published):
        return published
    tracker.run_id = run_id
    tracker.log_artifact(model_dir, "model")
    return f"runs:/{run_id}/model"


def run_register(
    recipe: Recipe,
    model_dir: str | Path | None,
    eval_dir: str | Path,
    data_dir: str | Path,
    report_path: str | Path,
    *,
    kfp_run_id: str,
    model_output: str = "",
) -> dict[str, Any]:
    """Register ``model_dir`` as a new version, gate it against the champion, move the alias; returns
    ``{version, decision, reason, score, champion_score, tags, metrics, report}``.

    ``kfp_run_id`` finds the pipeline's MLflow run (the plan step tagged it with the parent version);
    ``model_output``: the name under which the trained model was published (its ``artifact.<name>`` run
    tag holds the S3 copy when the root is S3).
    """
    name = recipe.retrain.registered_model
    if not name:
        raise ValueError("retrain.registered_model is not set: nothing to register the model under")
    if model_dir is None or not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no trained model to register (no config.json)")
    results = json.loads((Path(eval_dir) / "results.json").read_text())
    metrics = {k: float(v) for k, v in results.get("metrics", {}).items()}
    spec = eval_spec(recipe)
    score = gate_score(metrics, [b.name for b in recipe.eval.benchmarks])
    fp = read_fingerprint(data_dir)
    tracker = Tracker.from_recipe(recipe)
    run_id = tracker.find_kfp_run(kfp_run_id) if kfp_run_id else None
    if run_id is None:
        raise ValueError(
            f"no MLflow run tagged kfp.run_id={kfp_run_id!r} in experiment {recipe.tracking.experiment!r}"
        )
    run_tags = tracker._call("get_run", lambda: tracker.client.get_run(run_id)).data.tags
    published_model = run_tags.get(f"artifact.{model_output}") if model_output else None
    parent_version, parent_source = run_tags.get(TAG_PARENT_VERSION, ""), run_tags.get(TAG_PARENT_SOURCE, "")
    champion = version_by_alias(tracker, name, CHAMPION)
    decision = decide_promotion(Candidate(score, spec), candidate_of(champion) if champion is not None else None,
                                recipe.retrain.min_improvement)  # fmt: skip
    source = _model_source(tracker, recipe, run_id, model_dir, published_model)
    tags = {
        TAG_FINGERPRINT: fp["digest"], TAG_ROWS: fp["rows"], TAG_TRAIN_HASH: training_hash(recipe),
        TAG_RECIPE_HASH: recipe_hash(recipe), TAG_RECIPE: recipe.name, TAG_ALGORITHM: recipe.algorithm.name,
        TAG_GIT_COMMIT: git_commit(), TAG_KFP_RUN: kfp_run_id, TAG_MLFLOW_RUN: run_id,
        TAG_EVAL_SCORE: "" if score is None else repr(score), TAG_EVAL_SPEC: spec,
        TAG_PARENT_VERSION: parent_version, TAG_PARENT_SOURCE: parent_source,
        TAG_START_FROM: recipe.retrain.start_from,
        **{k: repr(v) for k, v in metrics.items()},
    }  # fmt: skip
    version = register_version(tracker, name, source, run_id, tags, description=decision.reason)
    number = str(version.version)
    apply_decision(tracker, name, number, decision)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    report = (
        f"# Gate: v{number} is **{decision.alias}**\n\n{decision.reason}.\n\n"
        f"| model | version | score |\n|---|---:|---:|\n"
        f"| new | {number} | {fmt(score)} |\n"
        f"| champion before | {decision.champion_version or '—'} | {fmt(decision.champion_score)} |\n\n"
        f"- registered model: `{name}` (source `{source}`)\n- min_improvement: {recipe.retrain.min_improvement:g}\n"
        f"- parent version: {parent_version or '—'}\n- data fingerprint: `{fp['digest']}`\n- eval spec: `{spec}`\n"
    )
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(report)
    log.info("registered %s v%s: %s (%s)", name, number, decision.alias, decision.reason)
    run_tags = {
        "registry.model": name, "registry.version": number, "registry.source": source,
        "gate.decision": decision.alias, "gate.reason": decision.reason,
        "gate.score": fmt(score), "gate.champion_score": fmt(decision.champion_score),
        "gate.champion_version": decision.champion_version or "",
    }  # fmt: skip
    gate_metrics = {"gate/promoted": float(decision.promote)}
    if score is not None:
        gate_metrics["gate/score"] = score
    if decision.champion_score is not None:
        gate_metrics["gate/champion_score"] = decision.champion_score
    return {
        "registered_model": name,
        "version": number,
        "source": source,
        "decision": decision.alias,
        "promoted": decision.promote,
        "reason": decision.reason,
        "score": score,
        "champion_score": decision.champion_score,
        "champion_version": decision.champion_version,
        "tags": run_tags,
        "metrics": gate_metrics,
        "report": report,
    }


__all__ = ["PLAN_SKIP", "PLAN_TRAIN", "run_plan", "run_register", "start_model_path"]
