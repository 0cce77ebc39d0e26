"""Issue 17 item 4: tracking never kills training. A real ``mlflow server`` is stopped for 60 s in the
middle of ``care train`` and restarted on the same port and store: the run completes and every metric
reaches MLflow. SIGTERM (a Kubernetes preemption) marks the run KILLED and the run resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OUTAGE_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _start_server(store: Path, port: int, timeout_s: float = 120.0) -> subprocess.Popen:
    """``mlflow server`` on ``port`` over the sqlite store and artifact folder in ``store``."""
    store.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
           "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # fmt: skip
    log = open(store / f"server-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 (kept open for the process)
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mlflow server exited with {proc.returncode}"
        if _healthy(f"http://127.0.0.1:{port}"):
            return proc
        time.sleep(0.3)
    _stop(proc)
    raise RuntimeError(f"mlflow server on port {port} not healthy after {timeout_s}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _train(out: Path, cache: str, uri: str, rounds: int, env_extra: dict[str, str]) -> subprocess.Popen:
    sets = ["model.path=tiny://micro", f"model.cache_dir={cache}", "train.sft.enable=true", "train.sft.max_steps=2",
            "train.sft.batch_size=4", f"train.rounds={rounds}", "train.prompts_per_round=2", "train.mini_batch_size=2",
            "rollout.n=4", "rollout.max_new_tokens=8", "algorithm.name=grpo", "eval.benchmarks=[]",
            f"train.output_dir={out}", f"tracking.uri={uri}", "tracking.experiment=outage"]  # fmt: skip
    cmd = [str(BIN / "care"), "train", "-c", str(REPO / "recipes" / "tiny-grpo.yaml")]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_round(proc: subprocess.Popen, run_dir: Path, name: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    latest = run_dir / "latest"
    while time.monotonic() < deadline:
        if latest.is_file() and latest.read_text().strip() == f"rounds/{name}":
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"care train exited ({proc.returncode}) before {name}:\n{proc.stdout.read()[-4000:]}"
            )
        time.sleep(0.1)
    raise AssertionError(f"no {name} after {timeout_s}s")


def _assert_all_metrics_logged(client, run_id: str, summary: dict) -> int:
    """Every per-round metric of summary.json is in MLflow's history at its round, with its value."""
    checked = 0
    for row in summary["rounds"]:
        step = int(row["train/round"])
        for key, value in row.items():
            history = {m.step: m.value for m in client.get_metric_history(run_id, key)}
            assert step in history, f"metric {key} lost at round {step}"
            assert history[step] == pytest.approx(value, rel=1e-6, abs=1e-9), key
            checked += 1
    for key, value in (summary.get("sft") or {}).items():
        if isinstance(value, float):
            assert {m.step: m.value for m in client.get_metric_history(run_id, key)}.get(0) == pytest.approx(
                value
            ), key
    return checked


@pytest.mark.slow
def test_mlflow_down_for_60s_mid_run_loses_no_metric(tmp_path, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    store = tmp_path / "mlflow"
    server = _start_server(store, port)
    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    run_dir = tmp_path / "out" / "tiny-grpo"
    proc = _train(tmp_path / "out", cache, uri, rounds=4, env_extra={"CARE_TRACKING_FLUSH_TIMEOUT_S": "900"})
    try:
        _wait_for_round(proc, run_dir, "round_0001")
        _stop(server)  # the tracking server goes away mid-run
        down_at = time.monotonic()
        while time.monotonic() - down_at < OUTAGE_S:
            assert proc.poll() is None, (
                f"care train died during the MLflow outage:\n{proc.stdout.read()[-4000:]}"
            )
            time.sleep(0.5)
        server = _start_server(store, port)  # same port, same store
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-6000:]
        assert "metric(s) kept in" in out and "buffered metrics sent" in out, out[-6000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert [int(r["train/round"]) for r in summary["rounds"]] == [1, 2, 3, 4]
        client = MlflowClient(tracking_uri=uri)
        run = client.get_run(summary["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert _assert_all_metrics_logged(client, run.info.run_id, summary) > 4 * 20
        assert not (run_dir / "tracking_buffer.jsonl").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop(server)


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_and_resume_finishes(mlflow_server, tmp_path, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    run_dir = tmp_path / "out" / "tiny-grpo"
    proc = _train(tmp_path / "out", cache, mlflow_server, rounds=3, env_extra={})
    _wait_for_round(proc, run_dir, "round_0001")
    proc.send_signal(signal.SIGTERM)  # what the kubelet sends to the container's main process
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-4000:]
    assert "interrupted by SIGTERM" in out and "marked KILLED" in out
    run_id = json.loads((run_dir / "tracking.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=mlflow_server)
    assert client.get_run(run_id).info.status == "KILLED"
    assert (run_dir / "latest").read_text().strip() in ("rounds/round_0001", "rounds/round_0002")

    resumed = _train(tmp_path / "out", cache, mlflow_server, rounds=3, env_extra={})
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-6000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mlflow_run_id"] == run_id and "resumed_from" in summary
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run_id, "reward/mean"))
    assert steps == [1, 2, 3]
    assert not list((run_dir / "rounds").glob("*.tmp")), "the abandoned round's work folder is cleaned up"


def test_tracker_buffers_while_unreachable_and_sends_in_order(mlflow_server, tmp_path):
    """Fast check of the buffer: the client is pointed at a closed port (an outage), then back."""
    from mlflow.tracking import MlflowClient

    from care_core.tracking.tracker import Tracker

    tracker = Tracker(mlflow_server, "buffer-test", retries=1, backoff_s=0.01)
    tracker.start_run(run_name="buffer")
    tracker.enable_buffer(tmp_path / "buffer.jsonl")
    live = tracker.client
    tracker.client = MlflowClient(tracking_uri=f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    tracker.log_metrics({"loss": 3.0}, step=1)
    tracker.log_metrics({"loss": 2.0, "acc": 0.5}, step=2)
    assert tracker.buffered() == 3
    tracker.end_run("FINISHED", wait_s=0.0)  # still down: warns, keeps the buffer, does not raise
    assert tracker.buffered() == 3
    tracker.client = live  # the server is back
    tracker.log_metrics({"loss": 1.0}, step=3)
    assert not (tmp_path / "buffer.jsonl").exists()
    history = {m.step: m.value for m in live.get_metric_history(tracker.run_id, "loss")}
    assert history == {1: 3.0, 2: 2.0, 3: 1.0}
    assert [m.value for m in live.get_metric_history(tracker.run_id, "acc")] == [0.5]
    tracker.end_run("FINISHED")
    assert live.get_run(tracker.run_id).info.status == "FINISHED"


def test_tracker_without_buffer_still_raises(mlflow_server):
    from mlflow.tracking import MlflowClient

    from care_core.tracking.tracker import Tracker, TrackingError

    tracker = Tracker(mlflow_server, "buffer-test", retries=0, backoff_s=0.01)
    tracker.start_run(run_name="no-buffer")
    tracker.client = MlflowClient(tracking_uri=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(TrackingError, match="is the tracking server reachable"):
        tracker.log_metrics({"loss": 1.0}, step=1)
