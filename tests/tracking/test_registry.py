"""The eval gate (hand-computed cases + a monotonicity property), the data fingerprint, and the registry
helpers against a real ``mlflow server`` (and a real SeaweedFS S3 server for an S3 model source)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from care_core.config import load_recipe
from care_core.data.fingerprint import read_fingerprint
from care_core.stages.ingest import run_ingest
from care_core.stages.register import run_plan, start_model_path
from care_core.storage import upload_dir
from care_core.tracking import Tracker
from care_core.tracking.registry import (
    Candidate,
    decide_promotion,
    download_model,
    eval_spec,
    gate_score,
    register_version,
    registry_state,
    set_alias,
    training_hash,
    version_by_alias,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
SPEC = '{"benchmarks":[{"name":"synthetic","limit":4}]}'


# --------------------------------------------------------------------------- gate (pure)
def test_first_model_becomes_champion():
    d = decide_promotion(Candidate(0.1, SPEC), None, 0.05)
    assert d.promote and d.alias == "champion" and d.champion_score is None and d.threshold is None
    assert d.reason.startswith("no champion yet")


def test_promotes_at_exactly_champion_plus_min_improvement():
    # 0.2 + 0.1 = 0.30000000000000004 in floats; a score of 0.3 must still pass
    d = decide_promotion(Candidate(0.3, SPEC), Candidate(0.2, SPEC, "4"), 0.1)
    assert d.promote and d.threshold == pytest.approx(0.3) and d.champion_version == "4"
    assert d.reason == "score 0.3000 >= champion v4 0.2000 + min_improvement 0.1 = 0.3000"


def test_keeps_champion_below_threshold():
    d = decide_promotion(Candidate(0.55, SPEC), Candidate(0.5, SPEC, "2"), 0.1)  # 0.55 < 0.5 + 0.1 = 0.6
    assert not d.promote and d.alias == "challenger" and d.threshold == pytest.approx(0.6)
    assert d.reason == "score 0.5500 < champion v2 0.5000 + min_improvement 0.1 = 0.6000"
    assert (d.score, d.champion_score) == (0.55, 0.5)


def test_negative_min_improvement_tolerates_a_regression():
    assert decide_promotion(Candidate(0.45, SPEC), Candidate(0.5, SPEC, "1"), -0.1).promote  # 0.45 >= 0.4
    assert not decide_promotion(Candidate(0.35, SPEC), Candidate(0.5, SPEC, "1"), -0.1).promote


def test_different_benchmarks_or_limits_are_not_comparable():
    other = '{"benchmarks":[{"name":"synthetic","limit":64}]}'
    d = decide_promotion(Candidate(0.9, SPEC), Candidate(0.1, other, "3"), 0.0)
    assert (
        not d.promote
        and d.reason.startswith("not comparable: champion v3 was scored on")
        and other in d.reason
    )


def test_missing_scores_never_promote():
    assert not decide_promotion(Candidate(None, SPEC), None, 0.0).promote
    assert not decide_promotion(Candidate(float("nan"), SPEC), Candidate(0.1, SPEC, "1"), 0.0).promote
    d = decide_promotion(Candidate(0.5, SPEC), Candidate(None, SPEC, "1"), 0.0)
    assert not d.promote and "has no eval score" in d.reason


@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(-1, 1),
    st.floats(0, 1),
)
def test_gate_is_monotone_in_the_new_score(champion, score, min_improvement, bump):
    """A higher score never turns a promotion into a rejection."""
    old = Candidate(champion, SPEC, "1")
    if decide_promotion(Candidate(score, SPEC), old, min_improvement).promote:
        assert decide_promotion(Candidate(min(1.0, score + bump), SPEC), old, min_improvement).promote


def test_gate_score_macro_average_else_mean_accuracy():
    assert gate_score({"eval/macro_avg": 0.4, "eval/synthetic/accuracy": 0.9}, ["synthetic"]) == 0.4
    assert gate_score({"eval/a/accuracy": 0.5, "eval/b/accuracy": 0.25}, ["a", "b"]) == 0.375
    assert gate_score({"eval/a/accuracy": 0.5}, ["a", "b"]) is None


def test_eval_spec_names_benchmarks_limits_and_decoding():
    a = load_recipe("recipes/tiny-care.yaml")
    b = load_recipe("recipes/tiny-care.yaml", ["eval.benchmarks=[{name: synthetic, limit: 8}]"])
    c = load_recipe("recipes/tiny-care.yaml", ["eval.max_new_tokens=7"])
    assert len({eval_spec(a), eval_spec(b), eval_spec(c)}) == 3
    assert json.loads(eval_spec(a))["benchmarks"] == [
        {"name": "synthetic", "split": None, "config_name": None, "limit": 64}
    ]


# --------------------------------------------------------------------------- fingerprint
def _ingest(tmp_path: Path, name: str, overrides: list[str]) -> dict:
    recipe = load_recipe(
        "recipes/tiny-care.yaml", ["data.synthetic.n_train=6", "data.synthetic.n_test=2", *overrides]
    )
    run_ingest(recipe, tmp_path / name)
    return read_fingerprint(tmp_path / name)


def test_fingerprint_follows_content_not_location(tmp_path):
    a = _ingest(tmp_path, "a", [])
    again = _ingest(tmp_path, "again", [])
    other = _ingest(tmp_path, "other", ["data.synthetic.seed=5"])
    assert a == again and a["digest"] != other["digest"] and a["rows"] == 8
    (entry,) = a["sources"]
    assert entry["rows"] == 8 and entry["files"] == [] and len(entry["content_sha256"]) == 64

    copy = tmp_path / "copy" / "geometry3k"
    shutil.copytree(FIXTURES / "geometry3k", copy)
    src = "data.sources=[{name: geometry3k, path: %s, split: train}]"
    here = _ingest(tmp_path, "g1", [src % (FIXTURES / "geometry3k")])
    moved = _ingest(tmp_path, "g2", [src % copy])
    assert here["digest"] == moved["digest"] and here["sources"][0]["path"] != moved["sources"][0]["path"]
    (file,) = here["sources"][0]["files"]
    data_file = FIXTURES / "geometry3k" / file["name"]
    assert file == {"name": "data/train-00000-of-00001.parquet", "size": data_file.stat().st_size,
                    "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest()}  # fmt: skip
    (copy / "data" / "test-00000-of-00001.parquet").unlink()  # a file of another split: not read, no change
    assert _ingest(tmp_path, "g3", [src % copy])["digest"] == here["digest"]


# --------------------------------------------------------------------------- registry against a real server
def _model_folder(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "marker": marker}))
    (path / "model.safetensors").write_bytes(marker.encode() * 100)
    return path


def test_versions_aliases_rollback_and_model_sources(mlflow_server, s3_env, tmp_path):
    tracker = Tracker(mlflow_server, "registry-unit")
    client = MlflowClient(mlflow_server)
    run = client.create_run(tracker.experiment_id)
    tracker.run_id = run.info.run_id
    local = _model_folder(tmp_path / "m1", "one")
    tracker.log_artifact(local, "model")
    s3_uri = upload_dir(_model_folder(tmp_path / "m2", "two"), f"s3://{s3_env.bucket}/registry-unit/model")
    name = "unit-model"
    assert version_by_alias(tracker, name, "champion") is None  # no such registered model yet
    v1 = register_version(
        tracker, name, f"runs:/{run.info.run_id}/model", run.info.run_id, {"eval.score": "0.25"}
    )
    v2 = register_version(
        tracker, name, s3_uri, run.info.run_id, {"eval.score": "0.5", "parent.version": "1"}
    )
    assert (
        (v1.version, v2.version) == ("1", "2")
        if isinstance(v1.version, str)
        else (v1.version, v2.version) == (1, 2)
    )
    assert version_by_alias(tracker, name, "champion") is None  # the model exists, the alias does not
    set_alias(tracker, name, "champion", "2")
    assert str(version_by_alias(tracker, name, "champion").version) == "2"
    set_alias(tracker, name, "champion", "1")  # roll back
    state = registry_state(tracker, name)
    assert state["aliases"] == {"champion": "1"}
    assert [v["version"] for v in state["versions"]] == ["1", "2"] and state["versions"][1][
        "source"
    ] == s3_uri

    got1 = download_model(f"runs:/{run.info.run_id}/model", tmp_path / "d1", mlflow_server)
    got2 = download_model(s3_uri, tmp_path / "d2", mlflow_server)
    for got, src in ((got1, local), (got2, tmp_path / "m2")):
        assert (got / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert (
        start_model_path(got1) == str(got1)
        and start_model_path(tmp_path) is None
        and start_model_path(None) is None
    )
    with pytest.raises(FileNotFoundError, match="no such folder"):
        download_model(str(tmp_path / "nowhere"), tmp_path / "d3", mlflow_server)


def test_plan_skips_only_unchanged_data_and_recipe(mlflow_server, tmp_path):
    recipe = load_recipe(
        "recipes/tiny-care.yaml",
        ["data.synthetic.n_train=6", "data.synthetic.n_test=2", "retrain.registered_model=plan-unit",
         "retrain.start_from=champion", f"tracking.uri={mlflow_server}", "tracking.experiment=plan-unit"],
    )  # fmt: skip
    run_ingest(recipe, tmp_path / "data")
    fp = read_fingerprint(tmp_path / "data")
    first = run_plan(recipe, tmp_path / "data", tmp_path / "start0", tmp_path / "plan0.md")
    assert (
        first["action"] == "train" and first["parent_version"] == "" and "no champion yet" in first["reason"]
    )
    assert start_model_path(tmp_path / "start0") is None  # base model

    tracker = Tracker.from_recipe(recipe)
    run = tracker.client.create_run(tracker.experiment_id)
    tracker.run_id = run.info.run_id
    tracker.log_artifact(_model_folder(tmp_path / "champ", "champ"), "model")
    tags = {"data.fingerprint": fp["digest"], "recipe.train_hash": training_hash(recipe)}
    version = register_version(tracker, "plan-unit", f"runs:/{run.info.run_id}/model", run.info.run_id, tags)
    set_alias(tracker, "plan-unit", "champion", str(version.version))

    same = run_plan(recipe, tmp_path / "data", tmp_path / "start1", tmp_path / "plan1.md")
    assert same["action"] == "skip" and same["reason"].startswith(
        f"skipped: data fingerprint {fp['digest'][:12]}"
    )
    assert "**skip**" in (tmp_path / "plan1.md").read_text() and start_model_path(tmp_path / "start1") is None
    off = load_recipe("recipes/tiny-care.yaml", [*_args(recipe), "retrain.skip_if_unchanged=false"])
    warm = run_plan(off, tmp_path / "data", tmp_path / "start2", tmp_path / "plan2.md")
    assert warm["action"] == "train" and warm["parent_version"] == str(version.version)
    assert json.loads((tmp_path / "start2" / "config.json").read_text())["marker"] == "champ"
    changed = load_recipe(
        "recipes/tiny-care.yaml", [*_args(recipe), "optim.lr=1e-3"]
    )  # same data, other recipe
    assert (
        run_plan(changed, tmp_path / "data", tmp_path / "start3", tmp_path / "plan3.md")["action"] == "train"
    )
    no_sft = load_recipe(
        "recipes/tiny-care.yaml", [*_args(recipe), "optim.lr=1e-3", "train.sft.enable=false"]
    )
    with pytest.raises(ValueError, match="needs train.sft.enable=true"):
        run_plan(no_sft, tmp_path / "data", tmp_path / "start4", tmp_path / "plan4.md")


def _args(recipe) -> list[str]:
    return ["data.synthetic.n_train=6", "data.synthetic.n_test=2", "retrain.registered_model=plan-unit",
            "retrain.start_from=champion", f"tracking.uri={recipe.tracking.uri}", "tracking.experiment=plan-unit"]  # fmt: skip


def test_care_compare_reads_champion_and_challenger(mlflow_server, tmp_path, capsys):
    from care_core.cli import main
    from care_core.tracking.compare import CompareError, compare_registered

    tracker = Tracker(mlflow_server, "compare-registry")
    runs = []
    for accuracy in (0.5, 0.25):
        run = tracker.client.create_run(tracker.experiment_id)
        tracker.client.log_metric(run.info.run_id, "eval/synthetic/accuracy", accuracy)
        runs.append(run.info.run_id)
    reason = "score 0.2500 < champion v1 0.5000 + min_improvement 0 = 0.5000"
    register_version(tracker, "cmp", "s3://b/one", runs[0], {"eval.score": "0.5"})
    with pytest.raises(
        CompareError, match=r"has no alias \['champion', 'challenger'\]; aliases present: none"
    ):
        compare_registered(mlflow_server, "cmp", tmp_path, quiet=True)
    register_version(tracker, "cmp", "s3://b/two", runs[1], {"eval.score": "0.25", "gate.reason": reason})
    set_alias(tracker, "cmp", "champion", "1")
    set_alias(tracker, "cmp", "challenger", "2")
    report = compare_registered(mlflow_server, "cmp", tmp_path / "out", quiet=True)
    assert (
        report["versions"] == {"champion": "1", "challenger": "2"} and report["runs"]["challenger"] == runs[1]
    )
    assert {r[0]: r for r in report["rows"]}["synthetic"][1:] == [0.5, 0.25, "-25.00"]
    assert (
        report["gate_scores"] == {"champion": "0.5", "challenger": "0.25"} and report["gate_reason"] == reason
    )
    assert (
        main(
            [
                "compare",
                "--registered-model",
                "cmp",
                "--tracking-uri",
                mlflow_server,
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    assert "challenger v2 vs champion v1" in capsys.readouterr().out
    with pytest.raises(CompareError, match="no such registered model"):
        compare_registered(mlflow_server, "nope", tmp_path, quiet=True)


def test_register_stage_promotes_over_the_champion(mlflow_server, tmp_path):
    """run_register with the gate forced open (min_improvement -1) and shut (+2) on top of a champion."""
    from care_core.data.fingerprint import write_fingerprint
    from care_core.stages.register import run_register

    def recipe(min_improvement: float):
        return load_recipe("recipes/tiny-care.yaml", [
            "retrain.registered_model=gate-unit", f"retrain.min_improvement={min_improvement}",
            "eval.benchmarks=[{name: synthetic, limit: 4}]", f"tracking.uri={mlflow_server}", "tracking.experiment=gate-unit",
        ])  # fmt: skip

    tracker = Tracker.from_recipe(recipe(0.0))
    (tmp_path / "data").mkdir()
    write_fingerprint(tmp_path / "data", {"digest": "d" * 64, "rows": 3, "sources": []})
    results = []
    for i, accuracy in enumerate((0.5, 0.25, 0.75)):
        run = tracker.client.create_run(
            tracker.experiment_id, tags={"kfp.run_id": f"kfp-{i}", "parent.version": str(i) if i else ""}
        )
        (tmp_path / f"eval{i}").mkdir()
        (tmp_path / f"eval{i}" / "results.json").write_text(
            json.dumps({"metrics": {"eval/synthetic/accuracy": accuracy}})
        )
        model = _model_folder(tmp_path / f"model{i}", f"m{i}")
        gate = (0.0, -1.0, 2.0)[
            i
        ]  # first: no champion; second: forced open (0.25 >= 0.5 - 1); third: forced shut
        results.append(run_register(recipe(gate), model, tmp_path / f"eval{i}", tmp_path / "data", tmp_path / f"d{i}.md",
                                    kfp_run_id=f"kfp-{i}"))  # fmt: skip
        assert results[-1]["source"] == f"runs:/{run.info.run_id}/model"
    assert [r["decision"] for r in results] == ["champion", "champion", "challenger"]
    assert results[1]["reason"] == "score 0.2500 >= champion v1 0.5000 + min_improvement -1 = -0.5000"
    assert results[2]["reason"] == "score 0.7500 < champion v2 0.2500 + min_improvement 2 = 2.2500"
    state = registry_state(tracker, "gate-unit")
    assert state["aliases"] == {"champion": "2", "challenger": "3"}
    v2 = state["versions"][1]["tags"]
    assert (v2["gate.decision"], v2["eval.score"], v2["parent.version"], v2["data.fingerprint"]) == (
        "champion",
        "0.25",
        "1",
        "d" * 64,
    )
    assert v2["eval/synthetic/accuracy"] == "0.25" and v2["recipe.train_hash"] == training_hash(recipe(-1.0))
    assert (
        "v2 is **champion**" in (tmp_path / "d1.md").read_text()
        and "| champion before | 1 | 0.5000 |" in (tmp_path / "d1.md").read_text()
    )
