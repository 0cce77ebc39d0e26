"""MLflow Model Registry for scheduled retraining: lineage tags, the eval gate, aliases, model sources.

A registered model (``retrain.registered_model``) gets one version per trained pipeline run. Each
version carries tags (``VERSION_TAGS``): the data fingerprint, the recipe hashes, the git commit,
the eval metrics, the eval spec (benchmarks, limits and decoding settings the score was measured
with), the parent version it was warm-started from and the gate's decision. The alias ``champion``
marks the model in use; ``challenger`` the latest version that did not pass the gate.

``decide_promotion`` is the pure gate; the rest are small functions over a ``Tracker`` (its
``MlflowClient`` with retries).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from care_core.tracking.tracker import Tracker, TrackingError

if TYPE_CHECKING:
    from care_core.config import Recipe

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_FINGERPRINT = "data.fingerprint"
TAG_ROWS = "data.rows"
TAG_TRAIN_HASH = "recipe.train_hash"
TAG_EVAL_SCORE = "eval.score"
TAG_EVAL_SPEC = "eval.spec"
TAG_PARENT_VERSION = "parent.version"
TAG_PARENT_SOURCE = "parent.source"
TAG_START_FROM = "retrain.start_from"
TAG_DECISION = "gate.decision"
TAG_REASON = "gate.reason"
TAG_MLFLOW_RUN = "mlflow.run_id"
# recipe sections that say where a run happens, not what is trained (left out of the training hash)
_WHERE_KEYS = ("name", "retrain", "tracking", "storage", "kubernetes")
_WHERE_LEAVES = (("model", "cache_dir"), ("train", "output_dir"))
_TOLERANCE = 1e-9  # scores are means of counts: 0.2 + 0.1 must reach 0.3


def training_hash(recipe: Recipe) -> str:
    """Short sha256 of what is trained: the resolved recipe without names, places and the retrain policy."""
    from care_core.config import recipe_to_dict

    data = {k: v for k, v in recipe_to_dict(recipe).items() if k not in _WHERE_KEYS}
    for section, leaf in _WHERE_LEAVES:
        data[section] = {k: v for k, v in data[section].items() if k != leaf}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def eval_spec(recipe: Recipe) -> str:
    """Canonical JSON of what a score is measured on: benchmarks (name, split, config, limit) and decoding."""
    ev = recipe.eval
    spec = {
        "benchmarks": [
            {"name": b.name, "split": b.split, "config_name": b.config_name, "limit": b.limit}
            for b in ev.benchmarks
        ],
        "decode": {"temperature": ev.temperature, "top_p": ev.top_p, "max_new_tokens": ev.max_new_tokens},
    }
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def gate_score(metrics: Mapping[str, float], benchmarks: Sequence[str]) -> float | None:
    """The gate's score: ``eval/macro_avg`` (the six benchmarks) when logged, else the mean accuracy
    over ``benchmarks`` (None when one of them has no accuracy)."""
    if "eval/macro_avg" in metrics:
        return float(metrics["eval/macro_avg"])
    values = [metrics.get(f"eval/{name}/accuracy") for name in benchmarks]
    if not values or any(v is None for v in values):
        return None
    return sum(float(v) for v in values) / len(values)


@dataclass(frozen=True)
class Candidate:
    """What the gate compares: a score and the eval spec it was measured on (``version`` for a champion)."""

    score: float | None
    spec: str
    version: str | None = None


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    score: float | None
    champion_score: float | None
    threshold: float | None
    champion_version: str | None

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


def decide_promotion(new: Candidate, champion: Candidate | None, min_improvement: float) -> GateDecision:
    """Promote ``new`` when there is no champion, or when both were scored on the same eval spec and
    ``new.score >= champion.score + min_improvement``; otherwise say why not."""
    old_score = champion.score if champion else None
    old_version = champion.version if champion else None

    def verdict(promote: bool, reason: str, threshold: float | None = None) -> GateDecision:
        return GateDecision(promote, reason, new.score, old_score, threshold, old_version)

    if new.score is None or not math.isfinite(new.score):
        return verdict(
            False, "the new model has no eval score (no accuracy logged for a configured benchmark)"
        )
    if champion is None:
        return verdict(True, "no champion yet: the first registered model becomes champion")
    if champion.score is None or not math.isfinite(champion.score):
        return verdict(
            False, f"champion v{old_version} has no eval score to compare with; promote by hand if wanted"
        )
    if champion.spec != new.spec:
        return verdict(
            False,
            f"not comparable: champion v{old_version} was scored on {champion.spec}, the new model on {new.spec}; "
            "promote by hand if wanted",
        )
    threshold = champion.score + min_improvement
    if new.score >= threshold - _TOLERANCE:
        return verdict(True, f"score {new.score:.4f} >= champion v{old_version} {champion.score:.4f} "
                             f"+ min_improvement {min_improvement:g} = {threshold:.4f}", threshold)  # fmt: skip
    return verdict(False, f"score {new.score:.4f} < champion v{old_version} {champion.score:.4f} "
                          f"+ min_improvement {min_improvement:g} = {threshold:.4f}", threshold)  # fmt: skip


# --------------------------------------------------------------------------- registry calls
def _not_found(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return getattr(cause, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()


def version_by_alias(tracker: Tracker, name: str, alias: str) -> Any | None:
    """The ModelVersion ``alias`` points to, or None (no such model or alias)."""
    try:
        return tracker._call(f"get_model_version_by_alias({name}@{alias})",
                             lambda: tracker.client.get_model_version_by_alias(name, alias))  # fmt: skip
    except TrackingError as exc:
        if _not_found(exc):
            return None
        raise


def candidate_of(version: Any) -> Candidate:
    """The gate's view of a registered version (from its tags)."""
    tags = version.tags or {}
    raw = tags.get(TAG_EVAL_SCORE)
    try:
        score = float(raw) if raw not in (None, "", "None") else None
    except ValueError:
        score = None
    return Candidate(score, tags.get(TAG_EVAL_SPEC, ""), str(version.version))


def register_version(tracker: Tracker, name: str, source: str, run_id: str | None, tags: Mapping[str, Any],
                     description: str = "") -> Any:  # fmt: skip
    """Create ``name`` if missing and add a version for ``source`` with ``tags``; return the ModelVersion."""
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise TrackingError(
                f"MLflow get_registered_model({name}) at {tracker.tracking_uri} failed: {exc}"
            ) from exc
        tracker._call(
            f"create_registered_model({name})", lambda: tracker.client.create_registered_model(name)
        )
    clean = {str(k): str(v) for k, v in tags.items() if v is not None}
    return tracker._call(
        f"create_model_version({name})",
        lambda: tracker.client.create_model_version(
            name, source, run_id=run_id, tags=clean, description=description
        ),
    )


def apply_decision(tracker: Tracker, name: str, version: str, decision: GateDecision) -> None:
    """Point ``champion`` (promoted) or ``challenger`` at ``version`` and tag it with the decision."""
    client = tracker.client
    tracker._call(f"set_registered_model_alias({name}@{decision.alias})",
                  lambda: client.set_registered_model_alias(name, decision.alias, version))  # fmt: skip
    for key, value in ((TAG_DECISION, decision.alias), (TAG_REASON, decision.reason)):
        tracker._call(f"set_model_version_tag({name} v{version})",
                      lambda key=key, value=value: client.set_model_version_tag(name, version, key, value))  # fmt: skip


def set_alias(tracker: Tracker, name: str, alias: str, version: str) -> None:
    """Move ``alias`` to ``version`` (the roll-back: ``set_alias(t, name, "champion", "3")``)."""
    tracker._call(f"set_registered_model_alias({name}@{alias})",
                  lambda: tracker.client.set_registered_model_alias(name, alias, str(version)))  # fmt: skip


def resolve_models_uri(tracker: Tracker, uri: str) -> tuple[str, Any | None]:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` -> (the version's source, the version)."""
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = version_by_alias(tracker, name, alias)
        if version is None:
            raise TrackingError(
                f"{uri}: registered model {name!r} has no alias {alias!r} at {tracker.tracking_uri}"
            )
    else:
        name, _, number = rest.rpartition("/")
        version = tracker._call(
            f"get_model_version({uri})", lambda: tracker.client.get_model_version(name, number)
        )
    return str(version.source), version


def download_model(source: str, dest: str | Path, tracking_uri: str, *, retries: int = 5) -> Path:
    """Copy the model folder at ``source`` (s3://, runs:/, mlflow-artifacts:/, a local folder) into ``dest``."""
    from care_core.storage import download_dir, is_s3

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if is_s3(source):
        download_dir(source, dest, retries=retries)
    elif source.startswith(("runs:/", "mlflow-artifacts:/")):
        import mlflow.artifacts

        tmp = dest / ".download"
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(tmp), tracking_uri=tracking_uri
            )
        )
        for item in got.iterdir():
            shutil.move(str(item), dest / item.name)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        local = Path(source[len("file://") :] if source.startswith("file://") else source)
        if not local.is_dir():
            raise FileNotFoundError(f"model source {source}: no such folder")
        shutil.copytree(local, dest, dirs_exist_ok=True)
    if not (dest / "config.json").is_file():
        raise FileNotFoundError(f"model source {source}: no config.json in what was downloaded to {dest}")
    return dest


def registry_state(tracker: Tracker, name: str) -> dict[str, Any]:
    """``{"name", "aliases": {alias: version}, "versions": [{version, source, run_id, tags}]}`` (oldest first)."""
    model = tracker._call(f"get_registered_model({name})", lambda: tracker.client.get_registered_model(name))
    versions = tracker._call(f"search_model_versions({name})",
                             lambda: tracker.client.search_model_versions(f"name = '{name}'"))  # fmt: skip
    rows = [
        {"version": str(v.version), "source": v.source, "run_id": v.run_id, "tags": dict(v.tags or {})}
        for v in sorted(versions, key=lambda v: int(v.version))
    ]
    return {"name": name, "aliases": dict(model.aliases or {}), "versions": rows}


__all__ = [
    "CHALLENGER", "CHAMPION", "Candidate", "GateDecision", "apply_decision", "candidate_of", "decide_promotion",
    "download_model", "eval_spec", "gate_score", "register_version", "registry_state", "resolve_models_uri",
    "set_alias", "training_hash", "version_by_alias",
]  # fmt: skip
