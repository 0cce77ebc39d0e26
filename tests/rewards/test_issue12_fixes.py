"""One test per scoring bug of issue 12 (causes 1-9), each failing on the code before its fix.

Cases are our own, written from the benchmarks' published rules; the wider neighbourhood of each
trap is in tests/rewards/test_conformance.py.
"""

from __future__ import annotations

import pytest

from care_core.rewards import extract_answer, judge_item, score_response
from care_core.rewards.benchmarks import mmmu_parse_choice
from care_core.rewards.verifiers import choice_letter, number_readings, verify_expression

MODES = ("official", "strict")


def A(text: str) -> str:
    return f"<think>working</think><answer>{text}</answer>"


@pytest.mark.parametrize("scoring", MODES)
def test_cause1_mathverse_gold_with_label_and_units_matches_its_value(scoring: str) -> None:
    gold = "Volume $=904.78 \\mathrm{~cm}^{3}$"
    assert number_readings(gold) == [904.78]
    item = {"id": "mathverse/9", "answer": gold, "answer_type": "expression", "choices": []}
    assert judge_item("mathverse", A("904.78"), item, scoring)
    assert judge_item("mathverse", A("904.78 \\mathrm{cm}^3"), item, scoring)
    assert not judge_item("mathverse", A("94.78"), item, scoring)
    assert number_readings("$3,000") == [3000.0]  # a lone $ is still a currency sign


@pytest.mark.parametrize(("response", "gold"), [
    ("So the answer simplifies to $\\frac{\\sqrt{30}}{2}$.", "\\frac{\\sqrt{30}}{2}"),
    ("The lines meet at (-3,-3).", "(-3,-3)"),
])  # fmt: skip
@pytest.mark.parametrize("benchmark", ["mathverse", "mathvision"])
def test_cause2_untagged_non_numeric_answer_is_not_cut_to_its_last_number(
    response: str, gold: str, benchmark: str
) -> None:
    assert extract_answer(response, "last_number", numeric=False) == gold
    item = {"id": f"{benchmark}/1", "answer": gold, "answer_type": "expression", "choices": []}
    assert judge_item(benchmark, response, item, "strict")
    if benchmark == "mathverse":
        assert judge_item(benchmark, response, item, "official")


@pytest.mark.parametrize(("response", "gold"), [("Yes", "Yes"), ("The bar is light blue", "light blue")])
def test_cause3_chartqa_text_answers_without_tags_score(response: str, gold: str) -> None:
    scores = score_response(response, gold, "text", data_source="chartqa", format_weight=0.0)
    assert scores["accuracy"] == 1.0
    assert score_response("No", "Yes", "text", data_source="chartqa")["accuracy"] == 0.0
    # numbers keep the 5 % relaxed rule through the last-number fallback
    assert score_response("it is about 104", "100", "float", data_source="chartqa")["accuracy"] == 1.0


@pytest.mark.parametrize(("response", "choices", "letter"), [
    ("After the discount the price is $3,000 for all units", ["$1,500", "$3,000", "$4,500"], "B"),
    ("The exchange is always quoted in U.S. dollars per ounce", ["euros", "U.S. dollars", "yen"], "B"),
])  # fmt: skip
def test_cause4_mmmu_option_text_with_punctuation_is_found(
    response: str, choices: list[str], letter: str
) -> None:
    assert mmmu_parse_choice(response, choices) == letter
    item = {
        "id": "mmmu/validation_Economics_4",
        "answer": letter,
        "answer_type": "choice",
        "choices": choices,
    }
    assert judge_item("mmmu", response, item, "strict") and judge_item("mmmu", response, item, "official")


@pytest.mark.parametrize("scoring", MODES)
@pytest.mark.parametrize(("response", "gold"), [("so the ratio is 1/64", "1/64"), ("thus 24/7", "24/7")])
def test_cause5_mmmu_fraction_open_gold_can_be_correct(scoring: str, response: str, gold: str) -> None:
    item = {"id": "mmmu/validation_Math_5", "answer": gold, "answer_type": "text", "choices": []}
    assert judge_item("mmmu", A(response), item, scoring)
    assert not judge_item("mmmu", A("so the ratio is 1/65"), item, scoring)


@pytest.mark.parametrize("scoring", MODES)
def test_cause6_one_letter_open_gold_does_not_match_inside_a_word(scoring: str) -> None:
    item = {"id": "mmmu/validation_Biology_6", "answer": "C", "answer_type": "text", "choices": []}
    assert not judge_item("mmmu", A("the answer is cancer"), item, scoring)
    assert judge_item("mmmu", A("so the answer is c"), item, scoring)
    # MMMU's padding (" c", "c ") still matches at the start of a later word: an official quirk
    assert judge_item("mmmu", A("the structure is a cell"), item, scoring) is (scoring == "official")


@pytest.mark.parametrize("scoring", MODES)
@pytest.mark.parametrize(
    "response", ["Reasoning.\nAnswer: **B**", "Reasoning.\n**Answer:** B", "Answer: __B__"]
)
def test_cause7_mmmu_pro_markdown_bold_answer_is_read(scoring: str, response: str) -> None:
    item = {"id": "mmmu_pro_vision/test_Art_7", "answer": "B", "answer_type": "choice",
            "choices": ["p", "q", "r", "s"]}  # fmt: skip
    assert judge_item("mmmu_pro_vision", response, item, scoring)


def test_cause8_the_last_answer_phrase_wins_in_extraction_and_the_rl_reward() -> None:
    text = "The answer is B. Wait\u2026 so the answer is C."
    assert extract_answer(text, "last_line") == "C"
    assert extract_answer(text, "last_number") == "C"
    assert extract_answer("the answer is 3, no, the answer is 5", "last_number") == "5"
    reward = score_response(text, "C", "choice", choices=["x", "y", "z"], format_weight=0.0)
    assert reward["accuracy"] == 1.0
    assert score_response(text, "B", "choice", choices=["x", "y", "z"])["accuracy"] == 0.0


def test_cause9_final_letter_inside_a_sentence() -> None:
    assert choice_letter("I think it's B... no, D", ["1", "2", "3", "4"]) == "D"
    assert choice_letter("B or D", ["1", "2", "3", "4"]) is None  # a hedge names no option
    assert choice_letter("A square is B", ["1", "2", "3", "4"]) == "B"  # "A" the article


def test_cause9_scientific_notation() -> None:
    assert extract_answer("the rate is 1.25e1 per second", "last_number") == "1.25e1"
    assert score_response("it comes to 1.25e1", "12.5", "float", format_weight=0.0)["accuracy"] == 1.0


def test_cause9_unicode_root() -> None:
    assert verify_expression("4\u221a6", "4\\sqrt{6}")
    assert verify_expression("\u221a(2)", "\\sqrt{2}")
    assert not verify_expression("4\u221a5", "4\\sqrt{6}")


@pytest.mark.parametrize("scoring", MODES)
def test_cause9_list_given_in_prose(scoring: str) -> None:
    item = {"id": "mathvista/9", "answer": "[2007, 2008]", "answer_type": "text", "choices": [],
            "meta": {"native_answer_type": "list"}}  # fmt: skip
    assert judge_item("mathvista", A("The peak is between 2007 and 2008."), item, scoring)
    assert not judge_item("mathvista", A("The peak is between 2006 and 2008."), item, scoring)
