"""Evaluation stage: plumbing, scoring, resume after a real SIGKILL, results files.

Scoring is checked with injected generators: the gold answer must give 100 %, a wrong answer
0 %, and a known mix exactly the hand-computed share. Budget: ~20 s (no model loaded here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from care_core.config import build_recipe
from care_core.evaluation import PredictionLog
from care_core.evaluation.report import summarize
from care_core.stages.evaluate import load_benchmark_rows, run_evaluate

REPO = Path(__file__).resolve().parents[2]


def gold_response(row: dict[str, Any]) -> str:
    return f"<think>reasoning</think><answer>{row['answer']}</answer>"


def wrong_response(row: dict[str, Any]) -> str:
    """A response that is wrong under every rule: another option's letter, else a non-answer."""
    from care_core.rewards.verifiers import truth_letter

    choices = row.get("choices") or []
    if row["answer_type"] == "choice" and choices:
        truth = truth_letter(str(row["answer"]), choices)
        other = next(letter for letter in "ABCDEFGHIJ"[: len(choices)] if letter != truth)
        return f"<think>reasoning</think><answer>{other}</answer>"
    return "<think>reasoning</think><answer>zzqx</answer>"


def synthetic_recipe(n_test: int = 20, limit: int | None = None, batch_size: int = 4) -> Any:
    return build_recipe(
        {
            "data": {"synthetic": {"n_train": 10, "n_test": n_test, "difficulty": [1]}},
            "eval": {
                "benchmarks": [{"name": "synthetic", "limit": limit}],
                "batch_size": batch_size,
                "max_new_tokens": 16,
            },
        }
    )


class Recorder:
    """A generate function built from a row -> response rule that records what it was asked."""

    def __init__(self, rule):
        self.rule = rule
        self.calls: list[list[str]] = []

    def __call__(self, rows: list[dict[str, Any]]) -> list[str]:
        self.calls.append([r["id"] for r in rows])
        return [self.rule(r) for r in rows]


def test_gold_answers_score_100_and_wrong_answers_0(tmp_path: Path) -> None:
    recipe = synthetic_recipe()
    gold = run_evaluate(recipe, "injected", tmp_path / "gold", generate_fn=Recorder(gold_response))
    wrong = run_evaluate(recipe, "injected", tmp_path / "wrong", generate_fn=Recorder(wrong_response))
    assert gold["metrics"]["eval/synthetic/accuracy"] == 1.0
    assert gold["metrics"]["eval/synthetic/format_rate"] == 1.0
    assert wrong["metrics"]["eval/synthetic/accuracy"] == 0.0
    assert gold["macro_avg"] is None and "eval/macro_avg" not in gold["metrics"]  # synthetic is its own entry
    families = gold["benchmarks"]["synthetic"]["categories"]["family"]
    assert set(families) == {"count", "compare", "bar_read", "bar_add", "choice"}
    assert sum(cell["n"] for cell in families.values()) == 20


def test_mixed_answers_give_hand_computed_accuracy_and_categories(tmp_path: Path) -> None:
    recipe = synthetic_recipe(n_test=10, batch_size=3)
    rows = load_benchmark_rows(recipe.eval.benchmarks[0], recipe)
    right = {row["id"] for i, row in enumerate(rows) if i % 5 in (0, 1)}  # families count and compare
    generate = Recorder(lambda r: gold_response(r) if r["id"] in right else wrong_response(r))
    result = run_evaluate(recipe, "injected", tmp_path, generate_fn=generate)
    assert result["benchmarks"]["synthetic"]["accuracy"] == pytest.approx(4 / 10)
    families = result["benchmarks"]["synthetic"]["categories"]["family"]
    assert families["count"]["accuracy"] == 1.0 and families["compare"]["accuracy"] == 1.0
    assert families["bar_read"]["accuracy"] == 0.0 and families["choice"]["n"] == 2
    assert [len(c) for c in generate.calls] == [3, 3, 3, 1]  # batched by eval.batch_size
    md = (tmp_path / "results.md").read_text()
    assert "| Synthetic (held-out) | 10 | 40.00 |" in md
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["metrics"] == result["metrics"]


def test_limit_and_data_dir(tmp_path: Path) -> None:
    from care_core.data.synthetic import generate_rows
    from care_core.schema import write_examples

    recipe = synthetic_recipe(n_test=6, limit=4)
    rows = generate_rows(recipe.data.synthetic, "test")
    rows[0]["answer"] = "999"  # a marker: only the data_dir file has it
    write_examples(rows, tmp_path / "data" / "test.parquet")
    generate = Recorder(lambda r: "<think></think><answer>999</answer>")
    result = run_evaluate(
        recipe, "injected", tmp_path / "out", data_dir=tmp_path / "data", generate_fn=generate
    )
    assert result["benchmarks"]["synthetic"]["n"] == 4
    assert result["benchmarks"]["synthetic"]["correct"] == 1.0


def test_resume_skips_done_items_and_matches_a_fresh_run(tmp_path: Path) -> None:
    recipe = synthetic_recipe(n_test=10, batch_size=4)

    class Crash(Exception):
        pass

    def crashing(rows):
        if crashing.calls == 1:
            raise Crash
        crashing.calls += 1
        return [gold_response(r) if i % 2 else wrong_response(r) for i, r in enumerate(rows)]

    crashing.calls = 0
    with pytest.raises(Crash):
        run_evaluate(recipe, "injected", tmp_path / "a", generate_fn=crashing)
    assert len(PredictionLog(tmp_path / "a" / "synthetic" / "predictions.jsonl").load()) == 4
    rest = Recorder(lambda r: "<think></think><answer>zzqx</answer>")
    resumed = run_evaluate(recipe, "injected", tmp_path / "a", generate_fn=rest)
    assert sum(len(c) for c in rest.calls) == 6  # only the 6 items not yet predicted
    assert resumed["timing"]["synthetic"]["resumed"] == 4.0
    assert resumed["benchmarks"]["synthetic"]["correct"] == 2.0  # 2 gold among the first 4, then wrong


def test_changed_settings_discard_old_predictions(tmp_path: Path) -> None:
    recipe = synthetic_recipe(n_test=5)
    run_evaluate(recipe, "injected", tmp_path, generate_fn=Recorder(gold_response))
    recipe.eval.max_new_tokens = 32
    again = Recorder(wrong_response)
    result = run_evaluate(recipe, "injected", tmp_path, generate_fn=again)
    assert sum(len(c) for c in again.calls) == 5 and result["benchmarks"]["synthetic"]["accuracy"] == 0.0


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "correct": 1}\n{"id": "b", "corr')
    log = PredictionLog(path)
    assert set(log.load()) == {"a"}
    assert path.read_text() == '{"id": "a", "correct": 1}\n'
    log.append([{"id": "b", "correct": 0}])
    assert set(PredictionLog(path).load()) == {"a", "b"}


def test_summarize_counts_multi_label_categories() -> None:
    records = [
        {"correct": 1, "format": 1, "categories": {"skills": ["algebra", "logic"]}},
        {"correct": 0, "format": 1, "categories": {"skills": ["algebra"]}},
        {"correct": 1, "format": 0, "categories": {"skills": []}},
    ]
    result = summarize("mathvista", records)
    assert result.accuracy == pytest.approx(2 / 3) and result.format_rate == pytest.approx(2 / 3)
    assert result.categories["skills"] == {
        "algebra": {"n": 2, "accuracy": 0.5},
        "logic": {"n": 1, "accuracy": 1.0},
    }


_KILL_SCRIPT = """
import sys, time
from care_core.config import build_recipe
from care_core.stages.evaluate import run_evaluate
recipe = build_recipe({"data": {"synthetic": {"n_train": 10, "n_test": 12, "difficulty": [1]}},
                       "eval": {"benchmarks": [{"name": "synthetic"}], "batch_size": 2}})
calls = []
def gold_then_hang(rows):
    calls.append(len(rows))
    if len(calls) == 3:  # two batches (4 items) are logged: wait here for the SIGKILL
        while True:
            time.sleep(1)
    return [f"<think>x</think><answer>{r['answer']}</answer>" for r in rows]
run_evaluate(recipe, "injected", sys.argv[1], generate_fn=gold_then_hang)
"""


def test_sigkilled_eval_continues_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    predictions = out / "synthetic" / "predictions.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)], cwd=REPO)
    deadline = time.time() + 300  # generous: the child blocks after 4 items, so no timing race
    while time.time() < deadline and (not predictions.is_file() or predictions.read_text().count("\n") < 4):
        assert proc.poll() is None, "the evaluation child exited early"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(PredictionLog(predictions).load())
    assert done_before == 4, "the kill lands mid-evaluation, after the two logged batches"
    assert not (out / "results.json").exists()
    rest = Recorder(gold_response)
    result = run_evaluate(
        build_recipe(
            {
                "data": {"synthetic": {"n_train": 10, "n_test": 12, "difficulty": [1]}},
                "eval": {"benchmarks": [{"name": "synthetic"}], "batch_size": 2},
            }
        ),
        "injected",
        out,
        generate_fn=rest,
    )
    assert sum(len(c) for c in rest.calls) == 12 - done_before
    assert (
        result["benchmarks"]["synthetic"]["n"] == 12 and result["benchmarks"]["synthetic"]["accuracy"] == 1.0
    )
    assert len(predictions.read_text().splitlines()) == 12  # nothing decoded twice
