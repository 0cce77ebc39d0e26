"""``care train``: the in-process loop over the steps the pipeline runs.

    ingest (if needed) -> SFT (optional) -> rounds x (rollout -> advantage -> update) -> evaluate

The rounds run in ``care_core.stages.resident.ResidentRun``, which keeps the policy, reference,
optimizer, engine and encoded prompts in memory (docs/method.md §14); with the DeepSpeed backend
each round goes through the stage functions and their files instead (``_stage_round``).

Rounds are checkpointed (``care_core.training.checkpoint``; every ``train.save_every`` rounds, the
evaluated ones and the last): policy, optimizer + LR schedule, RNG states, counters and a ``latest``
pointer. With ``train.resume: auto`` a killed run continues
from its last finished round and ends with the same weights as an uninterrupted run. Each round's
diagnostics (docs/method.md §11) are logged to MLflow (``tracking.uri``) at ``step = round``, under the
same names as the KFP components log them (``care_core.tracking.stage_log.stage_metrics``).

Reliability (docs/reliability.md):

- cached artifacts (``data/``, ``sft/``, round checkpoints) carry recipe fingerprints
  (``care_core.stages.cache``): a changed recipe rebuilds them under ``train.resume=never`` and is
  refused otherwise, unless ``force`` (``care train --force``);
- MLflow outages never stop training: metrics are buffered in ``tracking_buffer.jsonl`` and sent when
  the server is back (the run waits up to ``CARE_TRACKING_FLUSH_TIMEOUT_S``, default 300 s, at the end);
- SIGTERM / SIGINT abandon the round in progress (its ``.tmp`` folder is removed on resume), mark the
  MLflow run KILLED and exit 128 + signal; the last committed round is kept;
- ``storage.artifact_root=s3://`` is refused: ``care train`` keeps everything under ``train.output_dir``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from care_core.config import Recipe, recipe_hash
from care_core.stages import cache
from care_core.tracking.stage_log import stage_metrics
from care_core.training.checkpoint import commit_round, find_resume, load_rng, work_dir

logger = logging.getLogger(__name__)

TRACKING_FILE = "tracking.json"
TRACKING_BUFFER = "tracking_buffer.jsonl"
LOGGED_FILE = "tracking_logged.json"  # the last round whose metrics reached MLflow (or its buffer)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM / SIGINT during ``care train`` (a Kubernetes preemption is a SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def run_dir_for(recipe: Recipe) -> Path:
    """The run folder: ``train.output_dir / (tracking.run_name or recipe name)``, never outside ``output_dir``."""
    from care_core.storage.paths import contained

    return contained(
        recipe.train.output_dir, recipe.tracking.run_name or recipe.name, "tracking.run_name / recipe name"
    )


def _ensure_data(recipe: Recipe, data_dir: Path, force: bool = False) -> dict[str, Any]:
    """Reuse ``data_dir`` when its recipe fingerprint matches, else (re)build it aside and swap it in."""
    if (data_dir / "train.parquet").is_file() and cache.check(
        cache.read(data_dir), recipe, "data", data_dir, recipe.train.resume, force
    ):
        return {}
    from care_core.fsio import publish_dir, staging_dir

    tmp = staging_dir(data_dir)
    try:
        metrics = _build_data(recipe, tmp)
        cache.write(tmp, recipe, "data")
        publish_dir(tmp, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def _build_data(recipe: Recipe, data_dir: Path) -> dict[str, Any]:
    from care_core.stages.ingest import run_ingest

    return run_ingest(recipe, data_dir)


def _ensure_sft(
    recipe: Recipe, data_dir: Path, sft_dir: Path, base: str, force: bool = False
) -> tuple[str, dict[str, Any]]:
    """Reuse ``sft_dir`` when its recipe fingerprint matches, else train it aside and swap it in."""
    done = sft_dir / "sft_metrics.json"
    if done.is_file() and cache.check(
        cache.read(sft_dir), recipe, "sft", sft_dir, recipe.train.resume, force
    ):
        return str(sft_dir), json.loads(done.read_text())
    from care_core.fsio import publish_dir
    from care_core.stages.sft import run_sft

    tmp = sft_dir.with_name(sft_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    metrics = run_sft(recipe, data_dir, tmp, model_path=base)
    (tmp / "sft_metrics.json").write_text(json.dumps(metrics, default=str))
    cache.write(tmp, recipe, "sft")
    publish_dir(tmp, sft_dir)
    return str(sft_dir), metrics


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


class _Tracking:
    """MLflow logging through ``care_core.tracking.Tracker``, re-attaching to the run on resume."""

    def __init__(self, recipe: Recipe, run_dir: Path):
        from care_core.errors import read_json
        from care_core.tracking import Tracker
        from care_core.tracking.redact import redact

        self.tracker = Tracker.from_recipe(recipe)
        file = run_dir / TRACKING_FILE
        run_id = read_json(file).get("run_id") if file.is_file() else None  # a truncated file is named
        self.tracker.start_run(
            recipe,
            run_name=recipe.tracking.run_name or recipe.name,
            run_id=run_id,
            tags={"care.run_dir": str(run_dir.resolve())},
        )
        self.tracker.enable_buffer(run_dir / TRACKING_BUFFER)
        self.tracker.flush_buffer()  # metrics a previous process could not send
        file.write_text(json.dumps({"run_id": self.tracker.run_id, "uri": redact(recipe.tracking.uri)}))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.tracker.log_metrics(_numeric(metrics), step=step)

    def end(self, status: str) -> None:
        """End the run; a still-unreachable server is waited for (briefly when KILLED: the pod's grace period)."""
        wait = float(os.environ.get("CARE_TRACKING_FLUSH_TIMEOUT_S", "300"))
        self.tracker.end_run(status, wait_s=min(wait, 10.0) if status == "KILLED" else wait)


class _Signals:
    """Turn SIGTERM / SIGINT into ``TrainingInterrupted`` while training (main thread only).

    Inside ``shield()`` (a round's commit + its MLflow logging) the signal is held until the block ends,
    so a committed round's metrics are sent exactly once."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.shielded = False
        self.pending: int | None = None

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._raise)
        return self

    def _raise(self, signum: int, frame: Any) -> None:
        self.restore()  # a second signal gets the default behaviour
        if self.shielded:
            self.pending = signum
            return
        raise TrainingInterrupted(signum)

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False
        if self.pending is not None:
            raise TrainingInterrupted(self.pending)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def __exit__(self, *exc: Any) -> None:
        self.restore()


def _mark_logged(run_dir: Path, round_index: int) -> None:
    from care_core.fsio import write_text_atomic

    write_text_atomic(run_dir / LOGGED_FILE, json.dumps({"round": round_index}))


def _relog_committed(tracking: _Tracking, run_dir: Path, resume: Any) -> None:
    """Log the metrics of committed rounds a kill cut off between the commit and the MLflow call."""
    from care_core.training.checkpoint import ROUNDS, round_name

    logged = _logged_round(run_dir)
    for r in range(logged + 1, resume.round_index + 1):
        state_file = (
            resume.round_dir if r == resume.round_index else run_dir / ROUNDS / round_name(r)
        ) / "state.json"
        if state_file.is_file():
            logger.info("logging round %d's metrics again (the previous run stopped before sending them)", r)
            tracking.log(json.loads(state_file.read_text()).get("metrics") or {}, step=r)
    _mark_logged(run_dir, resume.round_index)


def _logged_round(run_dir: Path) -> int:
    """The last round whose metrics reached MLflow (or its buffer); 0 when none did."""
    try:
        return int(json.loads((run_dir / LOGGED_FILE).read_text())["round"])
    except (OSError, ValueError, KeyError):
        return 0


def _stage_round(
    recipe: Recipe, r: int, policy: str, reference: str, state_dir: str | None, data_dir: Path, wd: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One round through the stage functions and files (the DeepSpeed update runs in torchrun workers)."""
    from care_core.stages.advantage import run_advantage
    from care_core.stages.rollout import run_rollout
    from care_core.stages.update import run_update

    m_roll = run_rollout(recipe, policy, data_dir, wd / "rollouts.parquet", r)
    m_adv = run_advantage(recipe, wd / "rollouts.parquet", wd / "advantages.parquet")
    m_upd = run_update(
        recipe,
        policy,
        wd / "advantages.parquet",
        wd / "policy",
        reference_path=reference,
        state_dir=state_dir,
    )
    return m_roll, m_adv, m_upd


def _check_storage(recipe: Recipe) -> None:
    if str(recipe.storage.artifact_root).startswith("s3://"):
        raise ValueError(
            f"storage.artifact_root={recipe.storage.artifact_root}: care train keeps its data, checkpoints and "
            f"results in train.output_dir ({recipe.train.output_dir}) and uploads nothing; use `care run` / "
            "`care submit` for S3 artifacts, or --set storage.artifact_root=<local folder>"
        )


def _check_prompts(recipe: Recipe, data_dir: Path) -> None:
    """``train.prompts_per_round`` may not exceed the training rows (a round never repeats a prompt)."""
    import pyarrow.parquet as pq

    from care_core.errors import InputError

    train = data_dir / "train.parquet"
    rows = pq.ParquetFile(train).metadata.num_rows
    if recipe.train.rounds > 0 and recipe.train.prompts_per_round > rows:
        raise InputError(
            f"train.prompts_per_round={recipe.train.prompts_per_round} is more than the {rows} rows of the data",
            str(train),
            hint="lower train.prompts_per_round or ingest more rows (data.synthetic.n_train, a source's limit)",
        )


def run_train(recipe: Recipe, force: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole in-process training loop; returns a summary dict.

    ``force``: reuse cached data / SFT / round checkpoints built from a different recipe (warned)."""
    with _Signals() as signals:
        try:
            return _run_train(recipe, force, signals)
        except TrainingInterrupted as exc:
            logger.warning(
                "care train %s: the round in progress was abandoned, the MLflow run marked KILLED; "
                "run the same command again to resume from the last committed round",
                exc,
            )
            raise SystemExit(128 + exc.signum) from None


def _run_train(recipe: Recipe, force: bool, signals: _Signals) -> dict[str, Any]:
    from care_core.models import resolve_model_path
    from care_core.stages.update import TRAINER_STATE

    t_start = time.perf_counter()
    _check_storage(recipe)
    run_dir = run_dir_for(recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = find_resume(run_dir, recipe.train.resume)
    data_dir = run_dir / "data"
    data_metrics = _ensure_data(recipe, data_dir, force)
    _check_prompts(recipe, data_dir)  # before SFT and the first rollout, not after them
    if resume is not None:
        cache.check(
            resume.state.get("fingerprint"), recipe, "round", resume.round_dir, recipe.train.resume, force
        )
    base = resolve_model_path(recipe.model)
    tracking = _Tracking(recipe, run_dir)
    status = "FAILED"
    summary: dict[str, Any] = {"run_dir": str(run_dir), "recipe_hash": recipe_hash(recipe), "rounds": []}
    try:
        if data_metrics:
            tracking.log(stage_metrics("ingest", data_metrics), step=0)
        reference = base
        if recipe.train.sft.enable:
            reference, sft_metrics = _ensure_sft(recipe, data_dir, run_dir / "sft", base, force)
            tracking.log(stage_metrics("sft", sft_metrics), step=0)
            summary["sft"] = sft_metrics
        policy, state_dir, global_step, first = reference, None, 0, 1
        if resume is not None:
            load_rng(resume.round_dir)
            policy = str(resume.policy_dir)
            state_dir = str(resume.policy_dir / TRAINER_STATE)
            global_step = int(resume.state.get("global_step", 0))
            first = resume.round_index + 1
            summary["resumed_from"] = str(resume.round_dir)
            logger.info("resuming after round %d from %s", resume.round_index, resume.round_dir)
            _relog_committed(tracking, run_dir, resume)
        rounds = range(first, recipe.train.rounds + 1)
        runner = None
        if len(rounds) and recipe.train.distributed.backend != "deepspeed":
            from care_core.stages.resident import ResidentRun

            runner = ResidentRun(recipe, data_dir, policy, reference, state_dir, global_step)
        logged_before = _logged_round(run_dir)
        try:
            for r in tqdm(
                rounds, desc=f"care train ({recipe.algorithm.name})", unit="round", disable=len(rounds) == 0
            ):
                t_round = time.perf_counter()
                wd = work_dir(run_dir, r)
                shutil.rmtree(wd, ignore_errors=True)
                wd.mkdir(parents=True)
                if runner is not None:
                    m_roll, m_adv, m_upd = runner.run_round(r)
                else:
                    m_roll, m_adv, m_upd = _stage_round(recipe, r, policy, reference, state_dir, data_dir, wd)
                global_step = int(m_upd.get("update/global_step", global_step))
                metrics = {
                    **stage_metrics("rollout", m_roll),
                    **stage_metrics("advantage", m_adv),
                    **stage_metrics("update", m_upd),
                    "perf/round_s": time.perf_counter() - t_round,
                    "train/round": float(r),
                    "train/global_step": float(global_step),
                }
                state = {
                    "round": r,
                    "global_step": global_step,
                    "reference": str(reference),
                    "recipe_hash": recipe_hash(recipe),
                    "fingerprint": cache.record(recipe, "round"),
                    "metrics": _numeric(metrics),
                }
                periodic_eval = (
                    bool(recipe.train.eval_every)
                    and r % recipe.train.eval_every == 0
                    and r != recipe.train.rounds
                )
                commit = (
                    runner is None
                    or periodic_eval
                    or r == recipe.train.rounds
                    or r % recipe.train.save_every == 0
                )
                send = (
                    r > logged_before
                )  # a repeated round (resumed after an uncommitted one) was logged already
                # commit, then log exactly once (a SIGKILL here is repaired by _relog_committed)
                with signals.shield():
                    if commit:
                        if runner is not None:
                            runner.save(wd / "policy")
                        final = commit_round(run_dir, r, state)
                        policy, state_dir = str(final / "policy"), str(final / "policy" / TRAINER_STATE)
                    else:
                        shutil.rmtree(wd, ignore_errors=True)
                    if not periodic_eval and send:
                        tracking.log(metrics, step=r)
                        _mark_logged(run_dir, r)
                if periodic_eval:
                    metrics.update(_evaluate(recipe, policy, final / "eval", data_dir))
                    with signals.shield():
                        if send:
                            tracking.log(metrics, step=r)
                            _mark_logged(run_dir, r)
                summary["rounds"].append(_numeric(metrics))
                logger.info(
                    "round %d: reward %.3f acc %.3f loss %.4f (%.1fs)",
                    r,
                    metrics.get("reward/mean", math.nan),
                    metrics.get("accuracy/mean", math.nan),
                    metrics.get("actor/loss", math.nan),
                    metrics["perf/round_s"],
                )
        finally:
            if runner is not None:
                runner.close()
        if recipe.eval.benchmarks:
            eval_metrics = _evaluate(
                recipe, policy, run_dir / "eval" / f"round_{recipe.train.rounds:04d}", data_dir
            )
            if eval_metrics:
                tracking.log(eval_metrics, step=recipe.train.rounds)
                summary["eval"] = eval_metrics
        status = "FINISHED"
    except TrainingInterrupted:
        status = "KILLED"
        raise
    finally:
        tracking.end(status)
    summary.update(
        {
            "final_policy": policy,
            "global_step": global_step,
            "mlflow_run_id": tracking.tracker.run_id,
            "total_s": time.perf_counter() - t_start,
        }
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _evaluate(recipe: Recipe, policy: str, out_dir: Path, data_dir: Path) -> dict[str, float]:
    """Run ``care_core.stages.evaluate``; its metrics (``eval/...``), as the KFP component logs them."""
    from care_core.stages.evaluate import run_evaluate

    results = run_evaluate(recipe, policy, out_dir, data_dir=data_dir)
    return stage_metrics("evaluate", results)
