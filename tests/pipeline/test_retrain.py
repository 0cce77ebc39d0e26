"""Scheduled retraining end to end: three simulated scheduled runs of the embedded default under kfp.local,
logging to a real ``mlflow server`` and its Model Registry.

(a) from base on data A -> v1, champion; (b) on new data B, warm-started from the champion, gate forced
to fail (``min_improvement`` 2: an accuracy in [0, 1] cannot reach the champion's + 2) -> v2, challenger,
parent v1; (c) on data A again, unchanged against the champion -> skipped, nothing trained or registered.
The gate forced the other way (promotion over an existing champion) runs through the same stage in
tests/tracking/test_registry.py::test_register_stage_promotes_over_the_champion.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from care_core.config import load_recipe
from care_core.tracking import Tracker
from care_core.tracking.registry import registry_state, training_hash
from pipelines.local_run import run_local

MODEL = "care-tiny-nightly"
# the cheapest settings that still run every step: micro model, 2 SFT steps, 1 round, 4 eval items
CHEAP = [
    "model.path=tiny://micro",
    "data.synthetic.n_train=24",
    "data.synthetic.n_test=4",
    "train.sft.max_steps=2",
    "train.sft.batch_size=4",
    "train.rounds=1",
    "train.prompts_per_round=2",
    "train.mini_batch_size=2",
    "train.micro_batch_size=8",
    "rollout.n=4",
    "rollout.max_new_tokens=8",
    "rollout.batch_size=4",
    "algorithm.care.K=2",
    "algorithm.care.M=3",
    "algorithm.care.rgr.max_tokens=6",
    "eval.benchmarks=[{name: synthetic, limit: 4}]",
    "eval.max_new_tokens=8",
    f"retrain.registered_model={MODEL}",
    "retrain.skip_if_unchanged=true",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scheduled_run(
    mlflow_server: str, work: Path, seed: int, start_from: str, min_improvement: float
) -> dict:
    recipe = load_recipe(
        "recipes/tiny-care.yaml",
        [*CHEAP, f"data.synthetic.seed={seed}", f"retrain.start_from={start_from}",
         f"retrain.min_improvement={min_improvement}", f"tracking.uri={mlflow_server}", "tracking.experiment=retrain"],
    )  # fmt: skip
    return run_local(recipe, work_dir=work, quiet=True)


def _registry(client: MlflowClient) -> dict:
    model = client.get_registered_model(MODEL)
    versions = sorted(client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    return {"aliases": dict(model.aliases), "versions": {v.version: v for v in versions}}


@pytest.mark.slow
def test_three_scheduled_runs_register_gate_warm_start_and_skip(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server)
    work = tmp_path / "care"  # one work dir, as one schedule reuses its cluster paths

    # (a) first scheduled run: from base, no champion yet -> v1 becomes champion
    a = _scheduled_run(mlflow_server, work, seed=0, start_from="base", min_improvement=0.0)
    run_a = client.get_run(a["mlflow"]["run_id"])
    state = _registry(client)
    assert state["aliases"] == {"champion": "1"}
    v1 = state["versions"]["1"]
    assert v1.run_id == run_a.info.run_id and v1.source == f"runs:/{run_a.info.run_id}/model"
    fingerprint_a = json.loads((Path(a["artifacts"]["data"]) / "fingerprint.json").read_text())
    assert v1.tags["data.fingerprint"] == fingerprint_a["digest"] == run_a.data.tags["data.fingerprint"]
    assert v1.tags["data.rows"] == str(fingerprint_a["rows"]) and fingerprint_a["sources"][0]["rows"] == 28
    assert v1.tags["recipe.hash"] == run_a.data.tags["recipe.hash"] and len(v1.tags["git.commit"]) >= 7
    assert v1.tags["parent.version"] == "" and v1.tags["retrain.start_from"] == "base"
    assert float(v1.tags["eval.score"]) == run_a.data.metrics["eval/synthetic/accuracy"]
    assert v1.tags["eval/synthetic/accuracy"] == repr(run_a.data.metrics["eval/synthetic/accuracy"])
    assert json.loads(v1.tags["eval.spec"])["benchmarks"] == [
        {"name": "synthetic", "split": None, "config_name": None, "limit": 4}
    ]
    assert v1.tags["gate.decision"] == "champion" and "no champion yet" in v1.tags["gate.reason"]
    assert run_a.info.status == "FINISHED" and run_a.data.tags["gate.decision"] == "champion"
    assert run_a.data.tags["retrain.action"] == "train" and run_a.data.metrics["gate/promoted"] == 1.0
    ingest_out = json.loads((Path(a["run_dir"]) / "ingest" / "executor_output.json").read_text())
    assert (
        ingest_out["artifacts"]["data"]["artifacts"][0]["metadata"]["fingerprint"] == fingerprint_a["digest"]
    )  # KFP UI
    (dataset,) = run_a.inputs.dataset_inputs
    assert dataset.dataset.digest == fingerprint_a["digest"][:36]
    logged = {f.path for f in client.list_artifacts(run_a.info.run_id, "retrain")}
    assert {"retrain/plan", "retrain/decision"} <= logged
    decision_md = Path(a["run_dir"]) / "register" / "decision"
    assert "v1 is **champion**" in decision_md.read_text()

    # (b) new data, warm start from the champion, gate forced to fail -> v2 challenger, champion stays v1
    b = _scheduled_run(mlflow_server, work, seed=1, start_from="champion", min_improvement=2.0)
    run_b = client.get_run(b["mlflow"]["run_id"])
    state = _registry(client)
    assert state["aliases"] == {"champion": "1", "challenger": "2"}
    v2 = state["versions"]["2"]
    assert v2.tags["parent.version"] == "1" and v2.tags["parent.source"] == v1.source
    assert (
        run_b.data.tags["parent.version"] == "1"
        and run_b.data.tags["retrain.start"] == "warm start from champion v1"
    )
    assert v2.tags["data.fingerprint"] != v1.tags["data.fingerprint"]
    assert v2.tags["recipe.train_hash"] != v1.tags["recipe.train_hash"]  # data.synthetic.seed is part of it
    score_a, score_b = float(v1.tags["eval.score"]), float(v2.tags["eval.score"])
    reason = f"score {score_b:.4f} < champion v1 {score_a:.4f} + min_improvement 2 = {score_a + 2:.4f}"
    assert v2.tags["gate.decision"] == "challenger" and v2.tags["gate.reason"] == reason
    assert run_b.data.tags["gate.reason"] == reason and run_b.data.metrics["gate/champion_score"] == score_a
    assert "v2 is **challenger**" in (Path(b["run_dir"]) / "register" / "decision").read_text()
    # SFT started from the champion's weights: the plan's start artifact is v1's model, byte for byte
    start = Path(b["run_dir"]) / "plan-retrain" / "start"
    champion_weights = Path(a["artifacts"]["round-0/model"]) / "model.safetensors"
    assert _sha(start / "model.safetensors") == _sha(champion_weights)

    # (c) data A again: same fingerprint and training recipe as champion v1 -> skipped, nothing trained
    c = _scheduled_run(mlflow_server, work, seed=0, start_from="champion", min_improvement=0.0)
    run_c = client.get_run(c["mlflow"]["run_id"])
    assert run_c.info.status == "FINISHED" and run_c.data.tags["retrain.action"] == "skip"
    assert (
        run_c.data.tags["retrain.reason"].startswith("skipped: data fingerprint")
        and "v1" in run_c.data.tags["retrain.reason"]
    )
    assert run_c.data.metrics["retrain/skipped"] == 1.0 and not any(
        k.startswith("sft/") for k in run_c.data.metrics
    )
    assert run_c.data.tags["data.fingerprint"] == v1.tags["data.fingerprint"]
    assert run_c.data.tags["recipe.train_hash"] == v1.tags["recipe.train_hash"]
    assert sorted(p.name for p in Path(c["run_dir"]).iterdir()) == [
        "ingest",
        "plan-retrain",
        "resolve-recipe",
    ]
    assert "**skip**" in (Path(c["run_dir"]) / "plan-retrain" / "plan").read_text()
    assert (
        _registry(client)["aliases"] == {"champion": "1", "challenger": "2"}
        and len(_registry(client)["versions"]) == 2
    )

    # the registry state, for the record (pytest -s shows it)
    print(
        "REGISTRY",
        json.dumps(registry_state(Tracker(mlflow_server, "retrain"), MODEL), indent=1, sort_keys=True),
    )
    print("wall_s", [r["wall_s"] for r in (a, b, c)])


def test_training_hash_ignores_places_and_retrain_policy():
    base = load_recipe("recipes/tiny-care.yaml")
    moved = load_recipe(
        "recipes/tiny-care.yaml",
        ["tracking.uri=http://elsewhere:5000", "storage.artifact_root=s3://b/p", "retrain.start_from=champion",
         "retrain.min_improvement=0.5", "model.cache_dir=/cache", "train.output_dir=/runs"],
    )  # fmt: skip
    assert training_hash(moved) == training_hash(base)
    assert training_hash(load_recipe("recipes/tiny-care.yaml", ["optim.lr=1e-4"])) != training_hash(base)
    assert training_hash(load_recipe("recipes/tiny-care.yaml", ["data.synthetic.seed=3"])) != training_hash(
        base
    )
