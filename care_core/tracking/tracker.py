"""MLflow tracking: one MLflow run per pipeline run, tagged with algorithm, recipe, KFP run id and commit.

Every call to the tracking server is retried with exponential backoff; once retries are exhausted a
``TrackingError`` names the server URI and the call. mlflow's own HTTP retries are turned down
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``=0 unless set) so the total wait is bounded and predictable.

With ``enable_buffer(path)`` (``care train``) an unreachable server never stops training: metrics
that cannot be sent are appended to ``path`` (JSON lines, flushed to disk) and sent, in order, by the
next call that reaches the server; while the buffer is non-empty each call tries once, without
backoff. ``end_run(status, wait_s)`` waits up to ``wait_s`` for the server to flush the buffer; a
buffer still left is kept on disk and flushed by the next ``care train`` of the same run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from care_core.errors import CareError
from care_core.tracking.redact import redact

if TYPE_CHECKING:
    from care_core.config import Recipe

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG_ALGORITHM = "algorithm"
TAG_RECIPE = "recipe.name"
TAG_RECIPE_HASH = "recipe.hash"
TAG_KFP_RUN = "kfp.run_id"
TAG_GIT_COMMIT = "git.commit"
MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_FATAL_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "INVALID_STATE",
}


class TrackingError(CareError, RuntimeError):
    """A tracking call that failed for good; the message names the tracking URI."""

    default_hint = "check that the MLflow server at tracking.uri is reachable (credentials: MLFLOW_TRACKING_USERNAME/PASSWORD)"

    transient: bool = True  # False: the server answered and refused (a retry or the buffer cannot help)


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit (``CARE_GIT_COMMIT`` wins, set in images), or ``unknown``."""
    if os.environ.get("CARE_GIT_COMMIT"):
        return os.environ["CARE_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, float]:
    """Nested metric dicts -> ``{"a/b": float}``; keeps finite numbers and bools, drops everything else."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, name, sep))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float) and math.isfinite(float(value)):
            out[name] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
            item = value.item()
            if isinstance(item, int | float) and math.isfinite(float(item)):
                out[name] = float(item)
    return out


def _local_artifact_location(tracking_uri: str) -> str | None:
    """For a sqlite/file store, an explicit absolute artifact folder next to the database."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return (db.parent / "mlartifacts").as_uri()
    if tracking_uri.startswith("file:"):
        return None
    if "://" not in tracking_uri:  # a bare folder = file store
        Path(tracking_uri).mkdir(parents=True, exist_ok=True)
    return None


class Tracker:
    """Logs one run to MLflow through an explicit ``MlflowClient`` (no global fluent state).

    Usage::

        tracker = Tracker.from_recipe(recipe)
        with tracker.start_run(recipe, kfp_run_id=run_id):
            tracker.log_metrics({"rollout/reward_mean": 0.4}, step=1)
    """

    def __init__(
        self, tracking_uri: str, experiment: str, *, retries: int = 4, backoff_s: float | None = None
    ) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.retries = retries
        self.backoff_s = (
            float(os.environ.get("CARE_TRACKING_BACKOFF_S", "1.0")) if backoff_s is None else backoff_s
        )
        self.artifact_location = _local_artifact_location(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id: str | None = None
        self._experiment_id: str | None = None
        self.buffer_path: Path | None = None

    @classmethod
    def from_recipe(cls, recipe: Recipe, **kwargs: Any) -> Tracker:
        """Tracker for ``recipe.tracking.uri`` / ``recipe.tracking.experiment``."""
        return cls(recipe.tracking.uri, recipe.tracking.experiment, **kwargs)

    # ------------------------------------------------------------------ plumbing
    def _call(self, what: str, action: Callable[[], T], retries: int | None = None) -> T:
        from mlflow.exceptions import MlflowException

        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except MlflowException as exc:
                if exc.error_code in _FATAL_CODES:
                    fatal = TrackingError(f"MLflow {what} at {self.tracking_uri} failed: {exc}")
                    fatal.transient = False
                    raise fatal from exc
                error: Exception = exc
            except (OSError, ConnectionError) as exc:
                error = exc
            if attempt == attempts:
                raise TrackingError(
                    f"MLflow {what} at {self.tracking_uri} failed after {attempts} attempts "
                    f"(is the tracking server reachable?): {error}"
                ) from error
            delay = self.backoff_s * 2 ** (attempt - 1)
            log.warning(
                "MLflow %s: attempt %d/%d failed (%s); retrying in %.1fs",
                what,
                attempt,
                attempts,
                error,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    @property
    def experiment_id(self) -> str:
        """Id of the experiment, created (with a local artifact folder for sqlite stores) if missing."""
        if self._experiment_id is None:
            found = self._call(
                "get_experiment_by_name", lambda: self.client.get_experiment_by_name(self.experiment)
            )
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                self._experiment_id = self._call(
                    "create_experiment",
                    lambda: self.client.create_experiment(
                        self.experiment, artifact_location=self.artifact_location
                    ),
                )
        return self._experiment_id

    def _require_run(self) -> str:
        if self.run_id is None:
            raise TrackingError(f"no active MLflow run at {self.tracking_uri}: call start_run() first")
        return self.run_id

    # ------------------------------------------------------------------ runs
    def find_kfp_run(self, kfp_run_id: str) -> str | None:
        """MLflow run id already tagged with ``kfp_run_id`` in this experiment, if any."""
        escaped = kfp_run_id.replace("'", "\\'")
        runs = self._call(
            "search_runs",
            lambda: self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{TAG_KFP_RUN}` = '{escaped}'", max_results=1
            ),
        )
        return runs[0].info.run_id if runs else None

    def start_run(
        self,
        recipe: Recipe | None = None,
        *,
        run_name: str | None = None,
        kfp_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> _RunHandle:
        """Create (or re-attach to) the run; tag it and log the flattened recipe as params.

        Re-attaches when ``run_id`` is given, or when a run tagged with the same ``kfp_run_id``
        exists (so every pipeline step logs into one MLflow run). Returns a handle usable as a
        context manager that ends the run FINISHED (or FAILED on an exception).
        """
        from care_core.config import flatten, recipe_hash, recipe_to_dict

        all_tags: dict[str, str] = {TAG_GIT_COMMIT: git_commit()}
        if recipe is not None:
            all_tags.update(
                {
                    TAG_ALGORITHM: recipe.algorithm.name,
                    TAG_RECIPE: recipe.name,
                    TAG_RECIPE_HASH: recipe_hash(recipe),
                }
            )
        if kfp_run_id:
            all_tags[TAG_KFP_RUN] = kfp_run_id
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})

        if run_id is None and kfp_run_id:
            run_id = self.find_kfp_run(kfp_run_id)
        if run_id is not None:
            self.run_id = run_id
            self._call("update_run", lambda: self.client.update_run(run_id, status="RUNNING"))
        else:
            name = run_name or (recipe.tracking.run_name if recipe is not None else None)
            run = self._call(
                "create_run",
                lambda: self.client.create_run(self.experiment_id, run_name=name, tags=all_tags),
            )
            self.run_id = run.info.run_id
            log.info(
                "MLflow run %s in experiment %r at %s",
                self.run_id,
                self.experiment,
                redact(self.tracking_uri),
            )
        self.set_tags(all_tags)
        if recipe is not None:
            self.log_params(flatten(recipe_to_dict(recipe)))
        return _RunHandle(self)

    def end_run(self, status: str = "FINISHED", wait_s: float = 0.0) -> None:
        """Mark the run FINISHED / FAILED / KILLED.

        With a metric buffer: first wait up to ``wait_s`` for the server to take the buffered metrics;
        when it stays unreachable, warn and keep the buffer (never raise)."""
        run_id = self._require_run()
        if self.buffer_path is None:
            self._call("set_terminated", lambda: self.client.set_terminated(run_id, status=status))
            return
        deadline = time.monotonic() + wait_s
        while not self.flush_buffer(retries=0):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "MLflow at %s unreachable: run %s not marked %s; %d metric(s) kept in %s (the next "
                    "`care train` of this run folder sends them)",
                    self.tracking_uri,
                    run_id,
                    status,
                    self.buffered(),
                    self.buffer_path,
                )
                return
            log.info(
                "waiting for MLflow at %s to send %d buffered metric(s) (%.0fs left)",
                self.tracking_uri,
                self.buffered(),
                left,
            )
            time.sleep(min(self.backoff_s * 4, left))
        try:
            self._call("set_terminated", lambda: self.client.set_terminated(run_id, status=status))
        except TrackingError as exc:
            if not exc.transient:
                raise
            log.warning("MLflow run %s not marked %s: %s", run_id, status, exc)

    # ------------------------------------------------------------------ offline buffer
    def enable_buffer(self, path: str | Path) -> None:
        """Buffer metrics in ``path`` while the server is unreachable (see the module docstring)."""
        self.buffer_path = Path(path)

    def _read_buffer(self) -> list[dict[str, Any]]:
        if self.buffer_path is None or not self.buffer_path.is_file():
            return []
        entries = []
        for line in self.buffer_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:  # a line torn by a kill while it was appended
                log.warning("%s: skipping a torn line", self.buffer_path)
        return entries

    def buffered(self) -> int:
        """Number of metrics waiting in the buffer."""
        return len(self._read_buffer())

    def _write_buffer(self, entries: list[dict[str, Any]], append: bool) -> None:
        assert self.buffer_path is not None
        if not entries and not append:
            self.buffer_path.unlink(missing_ok=True)
            return
        text = "".join(json.dumps(e) + "\n" for e in entries)
        if append:
            with open(self.buffer_path, "a") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            from care_core.fsio import write_text_atomic

            write_text_atomic(self.buffer_path, text)

    def flush_buffer(self, retries: int | None = None) -> bool:
        """Send the buffered metrics in order; True when the buffer is empty afterwards."""
        from mlflow.entities import Metric

        entries = self._read_buffer()
        if not entries:
            return True
        run_id = self._require_run()
        while entries:
            chunk = entries[:1000]
            metrics = [Metric(e["key"], e["value"], e["timestamp"], e["step"]) for e in chunk]
            try:
                self._call(
                    "log_batch(buffered metrics)",
                    lambda m=metrics: self.client.log_batch(run_id, metrics=m),
                    retries=retries,
                )
            except TrackingError as exc:
                if not exc.transient:
                    raise
                return False
            entries = entries[len(chunk) :]
            self._write_buffer(entries, append=False)
        log.info("MLflow at %s reachable again: buffered metrics sent", self.tracking_uri)
        return True

    # ------------------------------------------------------------------ logging
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        run_id = self._require_run()
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        if items:
            self._call("log_batch(tags)", lambda: self.client.log_batch(run_id, tags=items))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (already flattened) params; values already logged on this run are skipped."""
        from mlflow.entities import Param

        run_id = self._require_run()
        existing = self._call("get_run", lambda: self.client.get_run(run_id)).data.params
        items = [
            Param(str(k), redact(str(v))[:MAX_PARAM_LEN]) for k, v in params.items() if str(k) not in existing
        ]
        for start in range(0, len(items), 100):  # MLflow accepts <= 100 params per batch
            chunk = items[start : start + 100]
            self._call("log_batch(params)", lambda chunk=chunk: self.client.log_batch(run_id, params=chunk))

    def log_metrics(
        self, metrics: Mapping[str, Any], *, step: int | None = None, prefix: str = ""
    ) -> dict[str, float]:
        """Log numeric values (nested dicts flattened with ``/``); returns what was logged."""
        from mlflow.entities import Metric

        run_id = self._require_run()
        flat = flatten_metrics(metrics, prefix)
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, int(step or 0)) for k, v in flat.items()]
        if self.buffer_path is not None and not self.flush_buffer(retries=0):
            self._buffer(items, "MLflow still unreachable")
            return flat
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            try:
                self._call(
                    "log_batch(metrics)", lambda chunk=chunk: self.client.log_batch(run_id, metrics=chunk)
                )
            except TrackingError as exc:
                if self.buffer_path is None or not exc.transient:
                    raise
                self._buffer(items[start:], str(exc))
                break
        return flat

    def _buffer(self, items: list[Any], why: str) -> None:
        entries = [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step} for m in items]
        self._write_buffer(entries, append=True)
        log.warning(
            "%s: %d metric(s) kept in %s (%d waiting); training continues",
            why,
            len(entries),
            self.buffer_path,
            self.buffered(),
        )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder to the run's artifacts (under ``artifact_path``)."""
        run_id = self._require_run()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"cannot log artifact {path}: no such file or folder")
        if path.is_dir():
            self._call(
                f"log_artifacts({path})", lambda: self.client.log_artifacts(run_id, str(path), artifact_path)
            )
        else:
            self._call(
                f"log_artifact({path})", lambda: self.client.log_artifact(run_id, str(path), artifact_path)
            )

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """Log a JSON/YAML-serialisable object as an artifact file (format from the suffix)."""
        run_id = self._require_run()
        self._call(f"log_dict({artifact_file})", lambda: self.client.log_dict(run_id, data, artifact_file))

    def log_fingerprint(self, fp: Mapping[str, Any], location: str = "") -> None:
        """Data lineage (``care_core.data.fingerprint``): an MLflow dataset input (digest, per-source
        profile), tags ``data.fingerprint`` / ``data.rows`` and ``lineage/fingerprint.json``."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        run_id = self._require_run()
        profile = {e["source"]: {"rows": e["rows"], "content_sha256": e["content_sha256"], "files": len(e["files"])}
                   for e in fp.get("sources", [])}  # fmt: skip
        source = {
            "location": location,
            "sources": [e.get("path") or e.get("hub_id") or e["name"] for e in fp.get("sources", [])],
        }
        dataset = Dataset(name="ingest", digest=str(fp["digest"])[:36], source_type="care-ingest",
                          source=json.dumps(source), profile=json.dumps(profile))  # fmt: skip
        entry = DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])
        self._call("log_inputs", lambda: self.client.log_inputs(run_id, datasets=[entry]))
        self.set_tags({"data.fingerprint": fp["digest"], "data.rows": fp.get("rows", "")})
        self.log_dict(dict(fp), "lineage/fingerprint.json")

    def log_text(self, text: str, artifact_file: str) -> None:
        run_id = self._require_run()
        self._call(f"log_text({artifact_file})", lambda: self.client.log_text(run_id, text, artifact_file))


class _RunHandle:
    """Returned by ``Tracker.start_run``: ``with`` ends the run FINISHED, or FAILED on an exception."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    @property
    def run_id(self) -> str:
        return self.tracker._require_run()

    def __enter__(self) -> Tracker:
        return self.tracker

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.tracker.end_run("FINISHED" if exc_type is None else "FAILED")
