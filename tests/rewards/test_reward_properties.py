"""Property tests: invariants of the verifiers and extraction over generated inputs."""

from __future__ import annotations

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from care_core.rewards import extract_answer, find_spans_text, format_ok, score_response

LETTERS = "ABCDEFGHIJ"


def A(text: str) -> str:
    return f"<think>r</think><answer>{text}</answer>"


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integer_renderings(n: int) -> None:
    for shown in (str(n), f"{n:,}", str(n).replace("-", "\u2212"), f"\\boxed{{{n}}}", f"{n} units"):
        assert score_response(A(shown), str(n), "integer")["accuracy"] == 1.0, shown
    assert score_response(A(str(n + 1)), str(n), "integer")["accuracy"] == 0.0


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), st.integers(min_value=0, max_value=4),
       st.integers(min_value=0, max_value=3))  # fmt: skip
def test_precision_rule_matches_rounding(x: float, precision: int, extra: int) -> None:
    truth = f"{round(x, precision):.{precision}f}"
    shown = f"{x:.{precision + extra}f}"
    expected = float(round(float(shown), precision) == round(float(truth), precision))
    got = score_response(A(shown), truth, "float", precision=precision)["accuracy"]
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.01, max_value=1e6), st.floats(min_value=-0.2, max_value=0.2),
       st.booleans())  # fmt: skip
def test_chartqa_relaxed_five_percent(truth: float, error: float, negative: bool) -> None:
    assume(abs(abs(error) - 0.05) > 1e-3)  # stay clear of the float boundary
    t = -truth if negative else truth
    pred = t * (1 + error)
    got = score_response(A(repr(pred)), repr(t), "float", data_source="chartqa")["accuracy"]
    assert got == float(abs(error) <= 0.05)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_lowercase, min_size=3, max_size=8), min_size=2, max_size=10,
                unique=True), st.data())  # fmt: skip
def test_choice_letter_forms(options: list[str], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(options) - 1))
    letter = LETTERS[index]
    for shown in (letter, f"({letter})", f"{letter}.", f"Option {letter}", f"{letter}. {options[index]}",
                  options[index]):  # fmt: skip
        assert score_response(A(shown), letter, "choice", choices=options)["accuracy"] == 1.0, shown
    other = LETTERS[(index + 1) % len(options)]
    assert score_response(A(f"({other})"), letter, "choice", choices=options)["accuracy"] == 0.0


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0, max_value=1), st.booleans(), st.booleans())
def test_reward_is_the_weighted_mix(lam: float, correct: bool, well_formed: bool) -> None:
    body = "7" if correct else "8"
    response = A(body) if well_formed else f"answer: {body}"
    scores = score_response(response, "7", "integer", format_weight=lam)
    assert scores["accuracy"] == float(correct) and scores["format"] == float(well_formed)
    assert abs(scores["reward"] - ((1 - lam) * correct + lam * well_formed)) < 1e-12


_TAG_FREE = st.text(alphabet=string.ascii_letters + string.digits + " .,=+-()\n", max_size=40)


@settings(max_examples=150, deadline=None)
@given(_TAG_FREE, _TAG_FREE, st.text(alphabet=" \n", max_size=3))
def test_well_formed_responses(think: str, answer: str, gap: str) -> None:
    text = f"<think>{think}</think>{gap}<answer>{answer}</answer>"
    think_span, answer_span = find_spans_text(text)
    assert text[think_span[0] : think_span[1]] == f"<think>{think}</think>"
    assert text[answer_span[0] : answer_span[1]] == f"<answer>{answer}</answer>"
    assert format_ok(text) is bool(answer.strip())
    assert extract_answer(text, "none") == answer.strip()
