"""Issue 17 item 3: recipe fingerprints on every artifact ``care train`` caches (data, SFT, rounds);
item 8 (third bullet): ``storage.artifact_root=s3://`` is refused by ``care train``."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rel_helpers import tree_digest

from care_core.config import build_recipe
from care_core.stages.cache import StaleArtifactError
from care_core.stages.train import run_train


def _recipe(out: Path, cache_dir: str, **changes) -> object:
    data = {
        "name": "fp", "model": {"path": "tiny://micro", "cache_dir": cache_dir},
        "data": {"synthetic": {"n_train": 8, "n_test": 2}},
        "train": {"rounds": 1, "prompts_per_round": 2, "mini_batch_size": 2, "output_dir": str(out),
                  "sft": {"enable": True, "max_steps": 2, "batch_size": 4}},
        "rollout": {"n": 4, "max_new_tokens": 8}, "algorithm": {"name": "grpo"},
        "eval": {"benchmarks": []}, "tracking": {"uri": f"sqlite:///{out}/mlflow.db"},
    }  # fmt: skip
    data = copy.deepcopy(data)
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return build_recipe(data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One finished 1-round run (data + SFT + round 1) to copy from."""
    base = tmp_path_factory.mktemp("fp-base")
    cache_dir = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    run_train(_recipe(base, cache_dir))
    return base, cache_dir


@pytest.fixture
def run_copy(trained, tmp_path) -> tuple[Path, str]:
    base, cache_dir = trained
    out = tmp_path / "out"
    shutil.copytree(base, out)  # the run folder and its MLflow store
    return out, cache_dir


def test_every_cached_artifact_carries_a_fingerprint(run_copy):
    out, _ = run_copy
    run = out / "fp"
    assert json.loads((run / "data" / "care_fingerprint.json").read_text())["kind"] == "data"
    assert json.loads((run / "sft" / "care_fingerprint.json").read_text())["kind"] == "sft"
    assert (
        json.loads((run / "rounds" / "round_0001" / "state.json").read_text())["fingerprint"]["kind"]
        == "round"
    )


def test_changed_data_recipe_is_refused_under_auto(run_copy):
    out, cache_dir = run_copy
    before = tree_digest(out / "fp" / "data")
    with pytest.raises(
        StaleArtifactError,
        match=r"fp/data was built from a different recipe: the recipe changed "
        r"\(data\.synthetic\.n_train: 8 -> 12\)\. .*train\.resume=never.*--force",
    ):
        run_train(_recipe(out, cache_dir, data__synthetic__n_train=12))
    assert tree_digest(out / "fp" / "data") == before


def test_changed_sft_recipe_is_refused_under_auto(run_copy):
    out, cache_dir = run_copy
    shutil.rmtree(out / "fp" / "rounds")
    (out / "fp" / "latest").unlink()
    with pytest.raises(
        StaleArtifactError, match=r"fp/sft was built from a different recipe: .*train\.sft\.max_steps: 2 -> 3"
    ):
        run_train(_recipe(out, cache_dir, train__sft__max_steps=3))


def test_artifact_without_fingerprint_is_not_reused_silently(run_copy):
    out, cache_dir = run_copy
    (out / "fp" / "data" / "care_fingerprint.json").unlink()
    with pytest.raises(StaleArtifactError, match=r"has no recipe fingerprint"):
        run_train(_recipe(out, cache_dir))


def test_changed_round_recipe_is_refused_then_forced(run_copy, caplog):
    out, cache_dir = run_copy
    changed = _recipe(out, cache_dir, optim={"lr": 5e-4}, train__rounds=2)
    with pytest.raises(
        StaleArtifactError,
        match=r"round_0001 was built from a different recipe: .*optim\.lr: 1e-06 -> 0\.0005",
    ):
        run_train(changed)
    summary = run_train(changed, force=True)
    assert summary["resumed_from"].endswith("round_0001")
    assert [int(r["train/round"]) for r in summary["rounds"]] == [2]
    assert "reusing" in caplog.text and "(--force)" in caplog.text


def test_never_rebuilds_stale_data_and_sft(run_copy):
    out, cache_dir = run_copy
    summary = run_train(
        _recipe(out, cache_dir, data__synthetic__n_train=12, train__sft__max_steps=3, train__resume="never")
    )
    assert pq.read_metadata(out / "fp" / "data" / "train.parquet").num_rows == 12
    assert summary["sft"]["sft/steps"] == 3.0
    assert (
        json.loads((out / "fp" / "sft" / "care_fingerprint.json").read_text())["inputs"][
            "train.sft.max_steps"
        ]
        == 3
    )


def test_never_reuses_matching_data_and_sft(run_copy):
    out, cache_dir = run_copy
    data, sft = tree_digest(out / "fp" / "data"), tree_digest(out / "fp" / "sft")
    run_train(_recipe(out, cache_dir, train__resume="never"))
    assert tree_digest(out / "fp" / "data") == data and tree_digest(out / "fp" / "sft") == sft


def test_s3_artifact_root_is_refused(tmp_path):
    recipe = _recipe(tmp_path, str(tmp_path / "models"), storage={"artifact_root": "s3://bucket/prefix"})
    with pytest.raises(
        ValueError, match=r"storage\.artifact_root=s3://bucket/prefix: care train keeps .* train\.output_dir"
    ):
        run_train(recipe)
    assert not (tmp_path / "fp").exists()
