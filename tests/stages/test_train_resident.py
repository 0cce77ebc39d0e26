"""``care train``'s in-memory rounds (stages/resident.py): the same round as the stage functions,
checkpoints every ``train.save_every`` rounds, and a resume that repeats uncommitted rounds without
logging them twice."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from care_core.config import build_recipe


def _recipe(tmp_path: Path, cache: str, out: str, **train) -> object:
    return build_recipe(
        {
            "model": {"path": "tiny://micro", "cache_dir": cache},
            "data": {"synthetic": {"n_train": 16, "n_test": 4}},
            "rollout": {"n": 4, "max_new_tokens": 12, "batch_size": 2},
            "algorithm": {"name": "care", "care": {"K": 2, "M": 2, "rgr": {"max_tokens": 6}}},
            "optim": {"lr": 1e-3},
            "train": {
                "rounds": 3,
                "prompts_per_round": 2,
                "mini_batch_size": 2,
                "micro_batch_size": 8,
                "output_dir": str(tmp_path / out),
                "sft": {"enable": False},
                **train,
            },
            "eval": {"benchmarks": []},
            "tracking": {"uri": f"sqlite:///{tmp_path}/{out}.db", "experiment": "resident"},
            "storage": {"artifact_root": str(tmp_path / "artifacts")},
        }
    )


@pytest.fixture
def cache(tmp_path_factory) -> str:
    return str(Path(tmp_path_factory.getbasetemp()) / "care_models")


def _weights(run_dir: Path, round_name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "rounds" / round_name / "policy" / "model.safetensors")


def test_in_memory_round_equals_the_stage_functions(tmp_path, cache):
    """Round 1 of care train and the rollout -> advantage -> update stage functions on the same
    inputs give the same rollouts (tokens, log-probs, advantages) and the same updated weights."""
    import pyarrow.parquet as pq

    from care_core.stages.advantage import run_advantage
    from care_core.stages.resident import ADVANTAGES_FILE
    from care_core.stages.rollout import run_rollout
    from care_core.stages.train import run_train
    from care_core.stages.update import run_update

    recipe = _recipe(tmp_path, cache, "resident", rounds=1)
    summary = run_train(recipe)
    run_dir = Path(summary["run_dir"])
    base = str(json.loads((run_dir / "rounds" / "round_0001" / "state.json").read_text())["reference"])
    run_rollout(recipe, base, run_dir / "data", tmp_path / "r.parquet", 1)
    run_advantage(recipe, tmp_path / "r.parquet", tmp_path / "a.parquet")
    run_update(recipe, base, tmp_path / "a.parquet", tmp_path / "policy")
    ours = pq.read_table(run_dir / "rounds" / "round_0001" / ADVANTAGES_FILE).to_pylist()
    theirs = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert [r["response_ids"] for r in ours] == [r["response_ids"] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a["advantage"] == pytest.approx(b["advantage"], abs=1e-6)
        assert a["old_logprobs"] == pytest.approx(b["old_logprobs"], abs=1e-5)
        assert a["embedding"] == pytest.approx(b["embedding"], abs=1e-5)  # decoder hidden states vs a forward
    from safetensors.torch import load_file

    resident, staged = _weights(run_dir, "round_0001"), load_file(tmp_path / "policy" / "model.safetensors")
    assert resident.keys() == staged.keys()
    assert max(float((resident[k] - staged[k]).abs().max()) for k in resident) < 1e-6
    start = load_file(Path(base) / "model.safetensors")
    assert any(not torch.equal(start[k], resident[k]) for k in resident)


@pytest.mark.slow
def test_save_every_and_resume_repeat_uncommitted_rounds(tmp_path, cache, monkeypatch):
    from mlflow.tracking import MlflowClient

    from care_core.stages import resident
    from care_core.stages.train import TrainingInterrupted, run_train

    straight = run_train(_recipe(tmp_path, cache, "straight", save_every=3))
    straight_dir = Path(straight["run_dir"])
    assert sorted(p.name for p in (straight_dir / "rounds").iterdir()) == ["round_0003"]

    original = resident.ResidentRun.run_round

    def interrupted(self, round_index):
        if round_index == 3:
            raise TrainingInterrupted(signal.SIGTERM)
        return original(self, round_index)

    monkeypatch.setattr(resident.ResidentRun, "run_round", interrupted)
    with pytest.raises(SystemExit) as stop:
        run_train(_recipe(tmp_path, cache, "killed", save_every=3))
    assert stop.value.code == 128 + signal.SIGTERM
    killed_dir = Path(straight["run_dir"].replace("straight", "killed"))
    assert not (killed_dir / "latest").exists(), "no round was committed before the interruption"
    monkeypatch.setattr(resident.ResidentRun, "run_round", original)
    resumed = run_train(_recipe(tmp_path, cache, "killed", save_every=3))

    a, b = _weights(straight_dir, "round_0003"), _weights(killed_dir, "round_0003")
    assert all(torch.equal(a[k], b[k]) for k in a), "the repeated rounds must end with the same weights"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/killed.db")
    steps = sorted(m.step for m in client.get_metric_history(resumed["mlflow_run_id"], "reward/mean"))
    assert steps == [1, 2, 3], "rounds 1-2 ran twice but are logged once"
