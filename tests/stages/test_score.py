"""``care score``: scoring saved predictions, benchmark aggregates, malformed lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from care_core.config import build_recipe
from care_core.stages.score import run_score


def A(text: str) -> str:
    return f"<think>r</think><answer>{text}</answer>"


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


LINES = [
    {"id": "a", "response": A("42"), "answer": "42", "answer_type": "integer"},                      # acc 1, fmt 1
    {"id": "b", "response": "so \\boxed{\\frac{1}{2}}", "answer": "0.5", "answer_type": "expression"},  # acc 1, fmt 0
    {"id": "c", "response": A("(C)"), "answer": "B", "answer_type": "choice", "choices": ["x", "y", "z"]},  # 0, 1
    {"id": "d", "response": A("12%"), "answer": 0.12, "answer_type": "float", "data_source": "chartqa"},  # 1, 1
    {"id": "e", "response": A("4.99"), "answer": "5", "answer_type": "float", "precision": 2},        # 0, 1
]  # fmt: skip


def test_scores_lines_and_aggregate(tmp_path: Path) -> None:
    src = _write(tmp_path / "pred.jsonl", LINES)
    before = src.read_bytes()
    aggregate = run_score(src, tmp_path / "scored.jsonl")
    assert src.read_bytes() == before
    out = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["a", "b", "c", "d", "e"]
    assert [r["accuracy"] for r in out] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert [r["format"] for r in out] == [1.0, 0.0, 1.0, 1.0, 1.0]
    # reward = 0.9 * accuracy + 0.1 * format
    assert [r["reward"] for r in out] == pytest.approx([1.0, 0.9, 0.1, 1.0, 0.1])
    assert out[0]["answer_type"] == "integer"  # the input fields are kept
    assert aggregate["n"] == 5
    assert aggregate["accuracy"] == pytest.approx(3 / 5)
    assert aggregate["format"] == pytest.approx(4 / 5)
    assert aggregate["reward"] == pytest.approx((1.0 + 0.9 + 0.1 + 1.0 + 0.1) / 5)
    assert aggregate["by_data_source"]["chartqa"] == {"n": 1, "correct": 1.0, "accuracy": 1.0}
    assert "benchmarks" not in aggregate
    json.dumps(aggregate)  # the CLI prints it as JSON


def test_recipe_reward_settings(tmp_path: Path) -> None:
    src = _write(tmp_path / "pred.jsonl", LINES[:2])
    recipe = build_recipe({"reward": {"format_weight": 0.5}})
    aggregate = run_score(src, recipe=recipe)
    assert aggregate["reward"] == pytest.approx((1.0 + 0.5) / 2)


def test_benchmark_rules_and_breakdown(tmp_path: Path) -> None:
    records = [
        {"id": "mathvista/1", "response": A("12o°"), "answer": "D", "answer_type": "choice",
         "choices": ["30°", "45°", "90°", "120°"], "data_source": "mathvista", "meta": {"task": "gps"}},
        {"id": "mathvista/3", "response": A("4.99"), "answer": "5.0", "answer_type": "float", "precision": 1,
         "data_source": "mathvista", "meta": json.dumps({"task": "fqa", "native_answer_type": "float"})},
        {"id": "mmmu/validation_Art_1", "response": A("Paris"), "answer": "A", "answer_type": "choice",
         "choices": ["Paris", "Rome"], "data_source": "mmmu"},
        {"id": "x", "response": A("7"), "answer": "7", "answer_type": "integer"},
    ]  # fmt: skip
    aggregate = run_score(_write(tmp_path / "p.jsonl", records), tmp_path / "s.jsonl", scoring="strict")
    out = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    # mathvista's closest-option fallback makes "12o°" option D; the plain verifier would say 0
    assert [r["accuracy"] for r in out] == [1.0, 1.0, 0.0, 1.0]  # MMMU: "Paris" (<= 5 words) is not parsed
    assert aggregate["benchmarks"]["mathvista"]["accuracy"] == 1.0
    assert aggregate["benchmarks"]["mathvista"]["by_category"]["task"]["gps"]["n"] == 1
    assert aggregate["benchmarks"]["mmmu"]["accuracy"] == 0.0
    assert aggregate["benchmarks"]["mmmu"]["by_category"]["discipline"] == {
        "Art & Design": {"n": 1, "correct": 0, "accuracy": 0.0}
    }
    assert aggregate["macro_average"] == pytest.approx(0.5)
    assert aggregate["accuracy"] == pytest.approx(3 / 4)


def test_benchmark_argument_applies_to_every_line(tmp_path: Path) -> None:
    records = [{"id": "1", "response": "Answer: C", "answer": "C", "answer_type": "choice",
                "choices": ["a", "b", "c"], "subject": "History"}]  # fmt: skip
    aggregate = run_score(_write(tmp_path / "p.jsonl", records), benchmark="mmmu_pro_vision")
    assert aggregate["benchmarks"]["mmmu_pro_vision"]["accuracy"] == 1.0
    assert aggregate["benchmarks"]["mmmu_pro_vision"]["by_category"]["subject"]["History"]["n"] == 1
    with pytest.raises(KeyError, match="unknown benchmark"):
        run_score(tmp_path / "p.jsonl", benchmark="mme")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("{not json", "line 3: not valid JSON"),
        ('["a list"]', "line 3: expected a JSON object"),
        ('{"response": "x", "answer": "1"}', "line 3: missing field 'answer_type'"),
        ('{"response": "x", "answer": "1", "answer_type": "number"}', "line 3: field 'answer_type'='number'"),
        ('{"response": 5, "answer": "1", "answer_type": "integer"}', "line 3: field 'response'"),
        (
            '{"response": "x", "answer": "1", "answer_type": "choice", "choices": "AB"}',
            "line 3: field 'choices'",
        ),
        (
            '{"response": "x", "answer": "1", "answer_type": "float", "precision": "2"}',
            "line 3: field 'precision'",
        ),
    ],
)
def test_malformed_line_names_its_number(tmp_path: Path, bad: str, match: str) -> None:
    src = _write(tmp_path / "pred.jsonl", [LINES[0], "", bad])
    with pytest.raises(ValueError, match=match):
        run_score(src)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_score(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    assert run_score(tmp_path / "empty.jsonl")["n"] == 0
