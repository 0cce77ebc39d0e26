"""`care run` end to end under kfp.local with a real MLflow server and a real SeaweedFS S3 server."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from care_core.config import load_recipe
from care_core.storage import download_file
from care_core.storage.s3 import list_keys
from pipelines.local_run import localize, run_local

# the smallest settings that still exercise every stage (sizes are not what is under test here)
TINY = [
    "data.synthetic.n_train=32",
    "data.synthetic.n_test=4",
    "train.sft.max_steps=2",
    "train.sft.batch_size=4",
    "train.prompts_per_round=2",
    "train.mini_batch_size=2",
    "train.micro_batch_size=8",
    "rollout.n=4",
    "rollout.max_new_tokens=12",
    "rollout.batch_size=4",
    "algorithm.care.K=2",
    "algorithm.care.M=3",
    "algorithm.care.rgr.max_tokens=8",
    "eval.benchmarks=[{name: synthetic, limit: 4}]",
    "eval.max_new_tokens=12",
]


def test_localize_rebases_care_paths(tmp_path):
    recipe = localize(load_recipe("recipes/tiny-care.yaml"), tmp_path)
    assert recipe.tracking.uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert recipe.storage.artifact_root == str(tmp_path / "artifacts")
    assert recipe.model.cache_dir == str(tmp_path / "models")
    s3 = localize(
        load_recipe(
            "recipes/tiny-care.yaml", ["storage.artifact_root=s3://b/x", "tracking.uri=http://h:5000"]
        ),
        tmp_path,
    )
    assert (s3.storage.artifact_root, s3.tracking.uri) == ("s3://b/x", "http://h:5000")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_care_run_end_to_end(s3_env, mlflow_server, tmp_path):
    root = f"s3://{s3_env.bucket}/e2e"
    recipe = load_recipe(
        "recipes/tiny-care.yaml",
        [
            *TINY,
            "train.rounds=2",
            f"storage.artifact_root={root}",
            f"tracking.uri={mlflow_server}",
            "tracking.experiment=e2e",
        ],
    )
    summary = run_local(recipe, work_dir=tmp_path / "care", quiet=True)

    # every stage's output is in S3, byte-identical to what the step wrote locally
    artifacts = summary["artifacts"]
    assert set(artifacts) == {
        "data", "sft/model", "round-0/rollouts", "round-0/advantages", "round-0/model",
        "round-1/rollouts", "round-1/advantages", "round-1/model", "eval",
    }  # fmt: skip
    run_dir = Path(summary["run_dir"])
    keys = list_keys(root)
    for name, uri in artifacts.items():
        assert uri.startswith(f"{root}/"), (name, uri)
        assert any(k == uri or k.startswith(uri + "/") for k in keys), f"{name}: nothing at {uri}"
    prefix = artifacts["data"].rsplit("/data", 1)[0]
    assert (
        download_file(f"{artifacts['eval']}/results.json", tmp_path / "r.json").read_bytes()
        == (run_dir / "evaluate" / "results" / "results.json").read_bytes()
    )
    assert any(k.startswith(f"{prefix}/round-1/model/") and k.endswith("config.json") for k in keys)
    assert _sha(download_file(artifacts["round-0/advantages"], tmp_path / "a.parquet")) == _sha(
        run_dir / "advantage" / "scored" / "rollouts.parquet"
    )

    # one MLflow run: tags, params, per-round metrics with steps, eval table, plots
    client = MlflowClient(mlflow_server)
    run = client.get_run(summary["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["algorithm"] == "care" and run.data.tags["kfp.run_id"] == prefix.rsplit("/", 1)[1]
    assert run.data.params["algorithm.care.K"] == "2" and run.data.params["train.rounds"] == "2"
    assert run.data.params["storage.artifact_root"] == root
    rollout_metrics = [k for k in run.data.metrics if k.startswith("rollout/")]
    assert rollout_metrics, sorted(run.data.metrics)
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, rollout_metrics[0]))
    assert steps == [1, 2]
    update_metrics = [k for k in run.data.metrics if k.startswith("update/")]
    assert update_metrics and sorted(
        m.step for m in client.get_metric_history(run.info.run_id, update_metrics[0])
    ) == [1, 2]
    assert "eval/synthetic/accuracy" in run.data.metrics
    logged = {
        f.path
        for folder in ("eval", "plots", "stages")
        for f in client.list_artifacts(run.info.run_id, folder)
    }
    assert {"eval/results.md", "eval/results.json", "plots/learning_curves.png"} <= logged
    assert "Synthetic" in summary["eval_table"] or summary["eval_table"] == ""


@pytest.mark.slow
def test_s3_outage_mid_run_fails_loudly_and_keeps_earlier_uploads(
    start_s3_server, mlflow_server, tmp_path, monkeypatch, capfd
):
    server = start_s3_server()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CARE_STORAGE_BACKOFF_S", "0.2")
    root = f"s3://{server.bucket}/outage"
    recipe = load_recipe(
        "recipes/tiny-care.yaml",
        [*TINY, "train.rounds=0", "storage.retries=2", f"storage.artifact_root={root}", f"tracking.uri={mlflow_server}",
         "tracking.experiment=outage"],
    )  # fmt: skip
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_local(recipe, work_dir=tmp_path / "care", stages=["ingest", "evaluate"], quiet=True)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(k.endswith("/data/train.parquet") for k in list_keys(root)):
        time.sleep(0.2)
    uploaded = list_keys(root)
    assert any(k.endswith("/data/train.parquet") for k in uploaded), "ingest never reached S3"
    server.stop()  # S3 goes away while evaluate runs
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert (
        "error" in outcome
        and "Inner task failed" in str(outcome["error"])
        and "evaluate" in str(outcome["error"])
    )
    log = capfd.readouterr()
    text = log.out + log.err
    assert "StorageError" in text and "failed after 3 attempts" in text and f"{root}/" in text
    assert text.count("retrying in") >= 2
    client = MlflowClient(mlflow_server)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    assert mlflow_run.info.status == "FAILED"
    assert any(k.startswith("ingest/") for k in mlflow_run.data.metrics)  # what ingest logged is kept

    # the store comes back on the same data: everything uploaded before the outage is intact
    again = start_s3_server(server.state_dir)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", again.endpoint)
    assert list_keys(root) == uploaded
    run_dir = max((tmp_path / "care" / "pipeline_root").glob("care-tiny-care-*"))
    for key in uploaded:
        name = key.rsplit("/", 1)[1]
        local = download_file(key, tmp_path / "back" / name)  # verifies the recorded sha256
        assert _sha(local) == _sha(run_dir / "ingest" / "data" / name)


@pytest.mark.slow
def test_care_compare_on_finished_pipeline_runs(s3_env, mlflow_server, tmp_path):
    """A GRPO pipeline run next to the CARE run of ``test_care_run_end_to_end``; compare builds the report."""
    from care_core.tracking.compare import compare_experiment

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("e2e")
    if experiment is None or not client.search_runs([experiment.experiment_id], "tags.algorithm = 'care'"):
        pytest.skip("needs the CARE run of test_care_run_end_to_end (run the module, not this test alone)")
    recipe = load_recipe(
        "recipes/tiny-grpo.yaml",
        [*TINY, "train.rounds=1", f"storage.artifact_root=s3://{s3_env.bucket}/e2e", f"tracking.uri={mlflow_server}",
         "tracking.experiment=e2e"],
    )  # fmt: skip
    grpo = run_local(recipe, work_dir=tmp_path / "care", quiet=True)
    report = compare_experiment(mlflow_server, "e2e", tmp_path / "compare", quiet=True)
    assert report["runs"]["grpo"] == grpo["mlflow"]["run_id"]
    rows = {row[0]: row for row in report["rows"]}
    care_acc = client.get_run(report["runs"]["care"]).data.metrics["eval/synthetic/accuracy"]
    grpo_acc = grpo["eval"]["eval/synthetic/accuracy"]
    assert rows["synthetic"][1:] == [grpo_acc, care_acc, f"{100 * (care_acc - grpo_acc):+.2f}"]
    png = Path(report["png"]).read_bytes()
    assert png[:4] == b"\x89PNG" and Path(report["html"]).read_text().count("<tr>") == len(report["rows"]) + 1
