"""Benchmark scorers reproduce hand-computed scores on the native fixtures (tests/fixtures/sources)."""

from __future__ import annotations

from pathlib import Path

import pytest

from care_core.data.sources import load_source_rows
from care_core.rewards import get_benchmark_scorer, judge_item
from care_core.rewards.benchmarks import (
    BENCHMARKS,
    _closest_option,
    benchmark_name,
    macro_average,
    mmmu_open_match,
    mmmu_parse_choice,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def A(text: str) -> str:
    return f"<think>r</think><answer>{text}</answer>"


def _items(name: str, folder: str, responses: dict[str, str]) -> list[dict]:
    rows = load_source_rows(name, path=str(FIXTURES / folder))
    assert sorted(r["id"] for r in rows) == sorted(responses)
    return [{**row, "response": responses[row["id"]]} for row in rows]


def _cell(result: dict, dimension: str, value: str) -> tuple[int, int]:
    cell = result["by_category"][dimension][value]
    assert cell["accuracy"] == pytest.approx(cell["correct"] / cell["n"])
    return cell["correct"], cell["n"]


def test_mathvista_hand_computed() -> None:
    items = _items("mathvista", "mathvista", {
        "mathvista/1": A("120°"),    # option text -> D: correct
        "mathvista/2": A("7.0"),     # integral 7: correct
        "mathvista/3": A("4.99"),    # precision 1: 5.0 == 5.0: correct
        "mathvista/4": A("1.664"),   # precision 2: 1.66 != 1.67: wrong
        "mathvista/5": A("black"),   # text: wrong
    })  # fmt: skip
    result = get_benchmark_scorer("mathvista")(items)
    by_id = dict(zip(result["ids"], result["per_item"], strict=True))
    assert by_id == {"mathvista/1": 1, "mathvista/2": 1, "mathvista/3": 1, "mathvista/4": 0, "mathvista/5": 0}
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert _cell(result, "task", "geometry problem solving") == (1, 1)
    assert _cell(result, "task", "visual question answering") == (1, 2)
    assert _cell(result, "task", "figure question answering") == (1, 2)
    assert _cell(result, "skills", "arithmetic reasoning") == (1, 2)
    assert _cell(result, "skills", "numeric commonsense") == (1, 2)
    assert _cell(result, "skills", "algebraic reasoning") == (1, 1)
    assert _cell(result, "question_type", "free_form") == (2, 4)


def test_mathvista_precision_decides() -> None:
    item = next(
        r for r in load_source_rows("mathvista", path=str(FIXTURES / "mathvista")) if r["id"] == "mathvista/4"
    )
    assert judge_item("mathvista", A("1.666"), item) is True
    assert judge_item("mathvista", A("1.664"), item) is False
    assert judge_item("mathvista", A("5/3"), item) is True  # 1.6667 -> 1.67


def test_mathvista_closest_option_fallback() -> None:
    # edit distances from "12o°": "30°" 3, "45°" 3, "90°" 3, "120°" 1 -> D
    assert _closest_option("12o°", ["30°", "45°", "90°", "120°"]) == "D"
    item = next(
        r for r in load_source_rows("mathvista", path=str(FIXTURES / "mathvista")) if r["id"] == "mathvista/1"
    )
    assert judge_item("mathvista", A("12o°"), item) is True


def test_mathverse_hand_computed() -> None:
    items = _items("mathverse", "mathverse", {
        "mathverse/1": A("60°"),                       # option text of C: correct
        "mathverse/2": A("B"),                         # wrong letter
        "mathverse/3": A("0.5"),                       # = \frac{1}{2}: correct
        "mathverse/4": "so the intercept is \u22123",  # no tags, last number, unicode minus: correct
    })  # fmt: skip
    result = get_benchmark_scorer("mathverse")(items)
    assert dict(zip(result["ids"], result["per_item"], strict=True)) == {
        "mathverse/1": 1, "mathverse/2": 0, "mathverse/3": 1, "mathverse/4": 1}  # fmt: skip
    assert result["accuracy"] == pytest.approx(0.75)
    assert _cell(result, "problem_version", "Vision Only") == (0, 1)
    assert _cell(result, "subject", "Plane Geometry") == (1, 2)
    assert _cell(result, "subject", "Functions") == (2, 2)


def test_mathvision_hand_computed() -> None:
    items = _items("mathvision", "mathvision", {
        "mathvision/1": "the third figure fits, \\boxed{3}",  # option text "3" is option C: correct
        "mathvision/2": "\\boxed{12}",                        # correct
        "mathvision/3": "\\boxed{A}",                         # truth B: wrong
        "mathvision/4": "x = 0.75, so \\boxed{0.75}",         # = 3/4: correct
    })  # fmt: skip
    result = get_benchmark_scorer("mathvision")(items)
    assert dict(zip(result["ids"], result["per_item"], strict=True)) == {
        "mathvision/1": 1, "mathvision/2": 1, "mathvision/3": 0, "mathvision/4": 1}  # fmt: skip
    assert result["accuracy"] == pytest.approx(0.75)
    assert _cell(result, "level", "1") == (1, 2)
    assert _cell(result, "subject", "algebra") == (1, 1)


def test_mmmu_hand_computed() -> None:
    items = _items("mmmu", "mmmu", {
        "mmmu/validation_Accounting_1": "The net income is (B) $20.",  # (B): correct
        "mmmu/validation_Accounting_2": A("the second"),               # nothing parseable: wrong (strict: no random pick)
        "mmmu/validation_Art_Theory_1": "I think the brushwork shows it, so the answer is Impressionism",
        "mmmu/validation_Art_Theory_2": A("It was painted in 1889."),  # open: number 1889: correct
    })  # fmt: skip
    result = get_benchmark_scorer("mmmu")(items, "strict")
    assert result["per_item"] == [1 if i != "mmmu/validation_Accounting_2" else 0 for i in result["ids"]]
    assert result["accuracy"] == pytest.approx(0.75)
    assert _cell(result, "subject", "Accounting") == (1, 2)
    assert _cell(result, "subject", "Art_Theory") == (2, 2)
    assert _cell(result, "discipline", "Business") == (1, 2)
    assert _cell(result, "discipline", "Art & Design") == (2, 2)


def test_mmmu_pro_hand_computed() -> None:
    standard = _items("mmmu_pro_standard", "mmmu_pro", {
        "mmmu_pro_standard/test_Accounting_1": "Inventory is debited.\nAnswer: C",  # Answer line: correct
        "mmmu_pro_standard/test_History_2": A("(E)"),                             # correct
        "mmmu_pro_standard/test_Physics_3": A("5 N"),                             # short, no letter: wrong
    })  # fmt: skip
    result = get_benchmark_scorer("mmmu_pro_standard")(standard)
    assert result["correct"] == 2 and result["n"] == 3
    assert _cell(result, "discipline", "Science") == (0, 1)
    assert _cell(result, "discipline", "Humanities & Social Science") == (1, 1)
    vision = _items("mmmu_pro_vision", "mmmu_pro", {
        "mmmu_pro_vision/test_Accounting_1": "Answer: C",
        "mmmu_pro_vision/test_History_2": A("B"),
        "mmmu_pro_vision/test_Physics_3": A("(B) 5 N"),
    })  # fmt: skip
    result_v = get_benchmark_scorer("mmmu_pro_vision")(vision)
    assert result_v["per_item"] == [1, 0, 1]
    assert macro_average({"a": result, "b": result_v}) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("(A) first, but actually (C)", "C"),  # several candidates: the one mentioned last
        ("The answer is B because", "B"),
        ("I choose the option with Revenue in it here", "B"),  # option text, over five words
        ("Revenue", None),  # option text but five words or fewer: MMMU does not match it
        ("nothing", None),
    ],
)
def test_mmmu_choice_parse(response: str, expected: str | None) -> None:
    assert mmmu_parse_choice(response, ["Cash", "Revenue", "Inventory"]) == expected


@pytest.mark.parametrize(
    ("response", "answer", "ok"),
    [
        ("so the result is 3.14159", "3.14", True),
        ("the value is 42", "['42', '42.0']", True),
        ("therefore the answer is paris", "Paris", True),
        ("the value is 43", "42", False),
    ],
)
def test_mmmu_open_match(response: str, answer: str, ok: bool) -> None:
    assert mmmu_open_match(response, answer) is ok


def test_registry() -> None:
    assert sorted(BENCHMARKS) == sorted(
        ["mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_standard", "mmmu_pro_vision"]
    )
    assert benchmark_name("mathvista/testmini") == "mathvista"
    assert benchmark_name("chartqa") is None
    with pytest.raises(KeyError, match="unknown benchmark"):
        get_benchmark_scorer("mme")
    with pytest.raises(ValueError, match="needs fields"):
        get_benchmark_scorer("mmmu")([{"id": "x", "answer": "A"}])


@pytest.mark.parametrize(
    ("response", "ok"),
    [(A("[1, 2.5]"), True), (A("1,2.5"), True), (A("[2.5, 1]"), False), (A("[1]"), False), (A("x"), False)],
)
def test_mathvista_list_answers(response: str, ok: bool) -> None:
    item = {"id": "l", "answer": "[1, 2.5]", "answer_type": "text", "meta": {"native_answer_type": "list"}}
    assert judge_item("mathvista", response, item) is ok
