"""`care train`: 3 rounds of the tiny recipes logging to a real MLflow server; kill-and-resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CARE = str(Path(sys.executable).with_name("care"))
# Size overrides only (micro model, short SFT/decoding, small eval); rounds and algorithms stay the recipe's.
FAST = [
    "model.path=tiny://micro",
    "train.sft.max_steps=8",
    "train.sft.batch_size=8",
    "rollout.max_new_tokens=24",
    "eval.benchmarks.0.limit=4",
    "eval.max_new_tokens=24",
]


def _care_train(recipe: str, sets: list[str], env_extra: dict | None = None, **popen) -> subprocess.Popen:
    cmd = [CARE, "train", "-c", str(REPO / "recipes" / recipe)]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **popen,
    )


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["care", "grpo"])
def test_care_train_three_rounds_logs_to_mlflow(algo, mlflow_server, tmp_path, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    experiment = f"test-train-{algo}"
    sets = FAST + [
        f"model.cache_dir={cache}",
        f"train.output_dir={tmp_path}",
        f"tracking.uri={mlflow_server}",
        f"tracking.experiment={experiment}",
    ]
    start = time.perf_counter()
    _finish(_care_train(f"tiny-{algo}.yaml", sets))
    elapsed = time.perf_counter() - start
    run_dir = tmp_path / f"tiny-{algo}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [int(r["train/round"]) for r in summary["rounds"]] == [1, 2, 3]
    assert (run_dir / "latest").read_text().strip() == "rounds/round_0003"
    assert summary["global_step"] == 3 and Path(summary["final_policy"]).is_dir()

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["algorithm"] == algo
    expected = [
        "reward/mean",
        "accuracy/mean",
        "format/mean",
        "groups/frac_all_correct",
        "groups/frac_all_wrong",
        "groups/frac_mixed",
        "response_length/mean",
        "perf/rollout_tokens_per_s",
        "perf/update_tokens_per_s",
        "actor/pg_clipfrac_low",
        "actor/pg_clipfrac_high",
        "actor/pg_clipfrac_dual",
        "actor/kl",
        "actor/entropy",
        "actor/grad_norm",
        "advantages/mean",
        "advantages/std",
    ]
    if algo == "care":
        expected += ["care/rescued_groups", "roles/anchor", "roles/pseudo_anchor", "rgr/eligible_groups"]
    for key in expected:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3], key
    vocabulary = (
        (Path(__file__).resolve().parents[2] / "docs" / "interfaces.md").read_text().split("## 5. Metrics")[1]
    )
    namespaces = set(re.findall(r"`([a-z_]+)/`", vocabulary.split("\n## ")[0]))  # docs/interfaces.md §5
    assert {name.split("/")[0] for name in run.data.metrics} <= namespaces, sorted(run.data.metrics)
    reward = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "reward/mean")}
    assert reward == {int(r["train/round"]): pytest.approx(r["reward/mean"]) for r in summary["rounds"]}
    assert "sft/train_loss" in run.data.metrics and run.data.params["algorithm.name"] == algo
    print(
        f"care train tiny-{algo}: 3 rounds in {elapsed:.1f}s; round times",
        [round(r["perf/round_s"], 1) for r in summary["rounds"]],
    )


@pytest.mark.slow
def test_kill_after_round_one_and_resume_matches_uninterrupted(tmp_path, tmp_path_factory):
    from safetensors.torch import load_file

    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    base = [
        "model.path=tiny://micro",
        f"model.cache_dir={cache}",
        "train.sft.enable=false",
        "train.rounds=3",
        "train.prompts_per_round=2",
        "rollout.n=4",
        "rollout.max_new_tokens=16",
        "algorithm.care.rgr.max_tokens=8",
        "eval.benchmarks=[]",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "optim.lr=1e-3",
    ]
    _finish(_care_train("tiny-care.yaml", base + [f"train.output_dir={tmp_path / 'straight'}"]))

    run_dir = tmp_path / "killed" / "tiny-care"
    proc = _care_train("tiny-care.yaml", base + [f"train.output_dir={tmp_path / 'killed'}"])
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        latest = run_dir / "latest"
        if latest.is_file() and latest.read_text().strip() == "rounds/round_0001":
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run should have been killed after round 1"
    assert not (run_dir / "rounds" / "round_0003").exists()

    out = _finish(_care_train("tiny-care.yaml", base + [f"train.output_dir={tmp_path / 'killed'}"]))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from"].endswith("round_0001") or summary["resumed_from"].endswith("round_0002"), (
        out[-2000:]
    )
    a = load_file(
        tmp_path / "straight" / "tiny-care" / "rounds" / "round_0003" / "policy" / "model.safetensors"
    )
    b = load_file(run_dir / "rounds" / "round_0003" / "policy" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run must end with the same weights (bit-exact)"
    base_sd = load_file(run_dir / "rounds" / "round_0001" / "policy" / "model.safetensors")
    assert any(not torch.equal(base_sd[k], b[k]) for k in b)  # training really moved the weights
