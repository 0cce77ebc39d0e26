"""Evaluation stage on native-schema fixtures of all six benchmarks plus the synthetic suite.

Injected generators: gold answers -> 100 % on every benchmark, wrong answers -> 0 %, a known
mix -> the hand-computed macro average. The per-category tables are re-computed independently
with the rewards package's batch scorers. Budget: ~15 s (no model).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_evaluate import Recorder, gold_response, wrong_response  # same folder (pytest rootdir-less import)

from care_core.config import build_recipe
from care_core.evaluation.prompts import benchmark_problem
from care_core.rewards import score_benchmark
from care_core.stages.evaluate import load_benchmark_rows, run_evaluate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
SIX = ["mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_standard", "mmmu_pro_vision"]
BENCHMARKS = [
    {"name": "mathvista", "path": str(FIXTURES / "mathvista"), "split": "testmini"},
    {"name": "mathverse", "path": str(FIXTURES / "mathverse"), "split": "testmini"},
    {"name": "mathvision", "path": str(FIXTURES / "mathvision"), "split": "test"},
    {"name": "mmmu", "path": str(FIXTURES / "mmmu"), "split": "validation"},
    {"name": "mmmu_pro_standard", "path": str(FIXTURES / "mmmu_pro"), "split": "test"},
    {"name": "mmmu_pro_vision", "path": str(FIXTURES / "mmmu_pro"), "split": "test"},
    {"name": "synthetic"},
]


@pytest.fixture(scope="module", autouse=True)
def source_fixtures() -> None:
    if not (FIXTURES / "mmmu_pro").is_dir():  # generated files (deterministic)
        subprocess.run([sys.executable, str(FIXTURES.parent / "make_source_fixtures.py")], check=True)


def recipe(benchmarks: list[dict[str, Any]] = BENCHMARKS) -> Any:
    return build_recipe(
        {
            "data": {"synthetic": {"n_train": 10, "n_test": 10, "difficulty": [1]}},
            "eval": {"benchmarks": benchmarks, "batch_size": 3, "max_new_tokens": 16},
        }
    )


def test_gold_is_100_wrong_is_0_on_all_six_and_synthetic(tmp_path: Path) -> None:
    r = recipe()
    gold = run_evaluate(r, "injected", tmp_path / "gold", generate_fn=Recorder(gold_response))
    wrong = run_evaluate(r, "injected", tmp_path / "wrong", generate_fn=Recorder(wrong_response))
    for name in [*SIX, "synthetic"]:
        assert gold["benchmarks"][name]["n"] > 0, name
        assert gold["metrics"][f"eval/{name}/accuracy"] == 1.0, name
        assert wrong["metrics"][f"eval/{name}/accuracy"] == 0.0, name
    assert gold["metrics"]["eval/macro_avg"] == 1.0 and wrong["metrics"]["eval/macro_avg"] == 0.0
    assert gold["macro_over"] == SIX
    md = (tmp_path / "gold" / "results.md").read_text()
    assert "| **macro average (6 of 6)** | | **100.00** | |" in md
    assert "## MathVista by skills" in md and "## MMMU by discipline" in md


def test_macro_average_of_a_known_mix_and_categories_match_batch_scorers(tmp_path: Path) -> None:
    r = recipe()
    right = {"mathvista", "mmmu"}
    correct_ids = {
        row["id"] for b in r.eval.benchmarks if b.name in right for row in load_benchmark_rows(b, r)
    }
    mathverse_first = load_benchmark_rows(r.eval.benchmarks[1], r)[0]["id"]
    correct_ids.add(mathverse_first)  # 1 of 4 mathverse items
    generate = Recorder(lambda row: gold_response(row) if row["id"] in correct_ids else wrong_response(row))
    result = run_evaluate(r, "injected", tmp_path, generate_fn=generate)
    n_mathverse = result["benchmarks"]["mathverse"]["n"]
    assert result["benchmarks"]["mathverse"]["accuracy"] == pytest.approx(1 / n_mathverse)
    assert result["metrics"]["eval/macro_avg"] == pytest.approx((1 + 1 + 1 / n_mathverse) / 6)
    for bench in r.eval.benchmarks:
        if bench.name == "synthetic":
            continue
        items = [
            {**row, "response": gold_response(row) if row["id"] in correct_ids else wrong_response(row)}
            for row in load_benchmark_rows(bench, r)
        ]
        independent = score_benchmark(bench.name, items)
        ours = result["benchmarks"][bench.name]
        assert ours["accuracy"] == pytest.approx(independent["accuracy"]), bench.name
        assert {d: {v: c["n"] for v, c in cells.items()} for d, cells in ours["categories"].items()} == {
            d: {v: c["n"] for v, c in cells.items()} for d, cells in independent["by_category"].items()
        }, bench.name


def test_limit_per_benchmark_and_subset_macro(tmp_path: Path) -> None:
    r = recipe([{**BENCHMARKS[0], "limit": 2}, {**BENCHMARKS[3], "limit": 3}])
    result = run_evaluate(r, "injected", tmp_path, generate_fn=Recorder(gold_response))
    assert result["benchmarks"]["mathvista"]["n"] == 2 and result["benchmarks"]["mmmu"]["n"] == 3
    assert result["macro_over"] == ["mathvista", "mmmu"]
    assert "macro average (2 of 6)" in (tmp_path / "results.md").read_text()


def test_prompt_format_lists_options_once() -> None:
    r = recipe()
    for bench in r.eval.benchmarks:
        for row in load_benchmark_rows(bench, r):
            text = benchmark_problem(bench.name, row)
            vision_only = bench.name == "mmmu_pro_vision" or (
                bench.name == "mathverse" and "Vision Only" in str(row["meta"])
            )
            if row["answer_type"] == "choice" and bench.name != "synthetic":
                first = row["choices"][0]
                listed = text.count(f"A. {first}") + text.count(f"(A) {first}") + text.count(f"A:{first}")
                assert listed == (0 if vision_only else 1), (bench.name, text)
    bare = {"problem": "Which?", "answer": "B", "answer_type": "choice", "choices": ["x", "y"]}
    assert benchmark_problem("mmmu", bare) == (
        "Which?\n\n(A) x\n(B) y\n\nAnswer with the option's letter from the given choices directly."
    )
    assert benchmark_problem("other", bare) == (
        "Which?\nOptions:\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
    )


def test_unknown_benchmark_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'mathvistaa'"):
        run_evaluate(
            recipe([{"name": "mathvistaa"}]), "injected", tmp_path, generate_fn=Recorder(gold_response)
        )
