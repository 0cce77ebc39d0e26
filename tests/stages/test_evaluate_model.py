"""Evaluation stage with a real tiny model (``tiny://micro``): real batched greedy decoding on the
synthetic suite and benchmark fixtures, determinism, and a SIGKILLed run that resumes to exactly
the predictions of an uninterrupted run. Budget: ~40 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from care_core.config import build_recipe
from care_core.evaluation import PredictionLog
from care_core.stages.evaluate import run_evaluate

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "sources"

RECIPE = {
    "model": {"path": "tiny://micro"},
    "data": {"synthetic": {"n_train": 10, "n_test": 16, "difficulty": [1]}},
    "eval": {"benchmarks": [{"name": "synthetic"}], "batch_size": 2, "max_new_tokens": 24},
}


def predictions(out: Path, name: str = "synthetic") -> dict[str, str]:
    return {k: v["response"] for k, v in PredictionLog(out / name / "predictions.jsonl").load().items()}


def test_real_model_decodes_and_scores_every_benchmark(tmp_path: Path) -> None:
    if not (FIXTURES / "mmmu_pro").is_dir():
        subprocess.run([sys.executable, str(FIXTURES.parent / "make_source_fixtures.py")], check=True)
    benchmarks = [
        {"name": "synthetic", "limit": 4},
        {"name": "mathvista", "path": str(FIXTURES / "mathvista"), "split": "testmini"},
        {"name": "mathvision", "path": str(FIXTURES / "mathvision"), "split": "test"},
        {"name": "mmmu_pro_vision", "path": str(FIXTURES / "mmmu_pro"), "split": "test"},
    ]
    recipe = build_recipe({**RECIPE, "eval": {**RECIPE["eval"], "benchmarks": benchmarks, "batch_size": 3}})
    result = run_evaluate(recipe, None, tmp_path / "a")
    for name, n in (("synthetic", 4), ("mathvista", 5), ("mathvision", 4), ("mmmu_pro_vision", 3)):
        assert result["benchmarks"][name]["n"] == n
        assert result["timing"][name]["decoded"] == n
        assert 0.0 <= result["benchmarks"][name]["accuracy"] <= 1.0
        preds = predictions(tmp_path / "a", name)
        assert len(preds) == n and all(isinstance(p, str) for p in preds.values())
    assert result["macro_over"] == ["mathvista", "mathvision", "mmmu_pro_vision"]
    # greedy decoding is deterministic: a second run in a fresh folder predicts the same
    again = run_evaluate(recipe, None, tmp_path / "b")
    assert predictions(tmp_path / "b", "mathvista") == predictions(tmp_path / "a", "mathvista")
    assert again["metrics"] == result["metrics"]
    # everything done: a rerun in the same folder decodes nothing
    rerun = run_evaluate(recipe, None, tmp_path / "a")
    assert all(t["decoded"] == 0 for t in rerun["timing"].values())


_SCRIPT = """
import json, sys
from care_core.config import build_recipe
from care_core.stages.evaluate import run_evaluate
run_evaluate(build_recipe(json.loads(sys.argv[1])), None, sys.argv[2])
"""


def test_sigkilled_real_eval_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    full = run_evaluate(build_recipe(RECIPE), None, tmp_path / "full")
    out = tmp_path / "killed"
    log = out / "synthetic" / "predictions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, json.dumps(RECIPE), str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while (
        time.time() < deadline
        and proc.poll() is None
        and (not log.is_file() or log.read_text().count("\n") < 2)
    ):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(PredictionLog(log).load())
    assert 2 <= done < 16, f"the kill must land mid-evaluation (had {done} of 16)"
    resumed = run_evaluate(build_recipe(RECIPE), None, out)
    assert resumed["timing"]["synthetic"]["resumed"] == done
    assert resumed["timing"]["synthetic"]["decoded"] == 16 - done
    assert predictions(out) == predictions(tmp_path / "full")
    assert resumed["metrics"] == full["metrics"]
