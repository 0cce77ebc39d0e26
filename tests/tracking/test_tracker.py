"""Tracker against a real `mlflow server` process (and a sqlite store for the no-server path)."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from mlflow.tracking import MlflowClient

from care_core.config import build_recipe, flatten, recipe_hash, recipe_to_dict
from care_core.tracking import Tracker, TrackingError, flatten_metrics


def test_flatten_metrics_keeps_only_finite_numbers():
    import numpy as np

    got = flatten_metrics(
        {
            "rollout": {"reward_mean": 0.25, "n": 3, "ok": True, "nan": float("nan"), "name": "x"},
            "kl": np.float32(0.5),
        },
        prefix="r",
    )
    assert got == {"r/rollout/reward_mean": 0.25, "r/rollout/n": 3.0, "r/rollout/ok": 1.0, "r/kl": 0.5}


def test_run_tags_params_metrics_artifacts(mlflow_server, tmp_path):
    recipe = build_recipe({"name": "tiny-grpo", "algorithm": {"name": "grpo"}, "train": {"rounds": 2}})
    tracker = Tracker(mlflow_server, "test-tracker")
    with tracker.start_run(recipe, kfp_run_id="kfp-123", tags={"extra": "1"}) as tr:
        for step, reward in enumerate([0.1, 0.4, 0.7], start=1):
            tr.log_metrics({"reward_mean": reward, "kl": reward / 10}, step=step, prefix="rollout")
        (tmp_path / "table.md").write_text("| b | acc |\n")
        tr.log_artifact(tmp_path / "table.md", "eval")
        tr.log_dict({"synthetic": 0.5}, "eval/results.json")
    client = MlflowClient(mlflow_server)
    run = client.get_run(tracker.run_id)
    tags = run.data.tags
    assert tags["algorithm"] == "grpo" and tags["recipe.name"] == "tiny-grpo" and tags["extra"] == "1"
    assert tags["recipe.hash"] == recipe_hash(recipe) and tags["kfp.run_id"] == "kfp-123"
    assert len(tags["git.commit"]) in (7, 40) or tags["git.commit"] == "unknown"
    expected = {k: str(v) for k, v in flatten(recipe_to_dict(recipe)).items()}
    assert run.data.params == expected
    history = client.get_metric_history(tracker.run_id, "rollout/reward_mean")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (1, 0.1),
        (2, 0.4),
        (3, 0.7),
    ]
    assert run.info.status == "FINISHED"
    names = {f.path for f in client.list_artifacts(tracker.run_id, "eval")}
    assert names == {"eval/table.md", "eval/results.json"}
    local = client.download_artifacts(tracker.run_id, "eval/results.json", str(tmp_path / "dl"))
    assert json.loads(open(local).read()) == {"synthetic": 0.5}


def test_same_kfp_run_id_reattaches_one_mlflow_run(mlflow_server):
    recipe = build_recipe({"name": "tiny-care"})
    first = Tracker(mlflow_server, "test-reattach")
    first.start_run(recipe, kfp_run_id="pipeline-run-7")
    first.log_metrics({"sft/loss": 2.0}, step=0)
    second = Tracker(mlflow_server, "test-reattach")  # e.g. the next KFP step in another pod
    with second.start_run(recipe, kfp_run_id="pipeline-run-7") as tr:
        tr.log_metrics({"update/loss": 1.0}, step=1)
    assert second.run_id == first.run_id
    runs = MlflowClient(mlflow_server).search_runs([second.experiment_id])
    assert len(runs) == 1 and set(runs[0].data.metrics) == {"sft/loss", "update/loss"}


def test_exception_marks_run_failed(mlflow_server):
    tracker = Tracker(mlflow_server, "test-failed")
    with pytest.raises(ValueError), tracker.start_run(None, run_name="boom"):
        raise ValueError("stage crashed")
    assert MlflowClient(mlflow_server).get_run(tracker.run_id).info.status == "FAILED"


def test_unreachable_server_retries_then_names_uri(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    tracker = Tracker(uri, "nowhere", retries=2, backoff_s=0.1)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="care_core.tracking.tracker"):
        with pytest.raises(TrackingError, match=rf"{uri}.*failed after 3 attempts"):
            tracker.start_run(None)
    assert len([r for r in caplog.records if "retrying" in r.message]) == 2
    assert 0.3 <= time.monotonic() - start < 30


def test_sqlite_store_without_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = build_recipe({"name": "local"})
    tracker = Tracker.from_recipe(recipe)  # default sqlite:///.care/mlflow.db
    with tracker.start_run(recipe) as tr:
        tr.log_metrics({"a": 1.0}, step=2)
        (tmp_path / "f.txt").write_text("x")
        tr.log_artifact(tmp_path / "f.txt")
    assert (tmp_path / ".care" / "mlflow.db").is_file()
    assert list((tmp_path / ".care" / "mlartifacts").rglob("f.txt"))
