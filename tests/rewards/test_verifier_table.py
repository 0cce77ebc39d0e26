"""A table of (response, ground truth, type) -> expected accuracy across every verifier.

Each case was worked out by hand from the rules in ``care_core.rewards.verifiers`` and
``care_core.rewards.extraction``; flipping any rule (precision rounding, percent readings,
letter parsing, fallbacks, ...) breaks rows here.
"""

from __future__ import annotations

import time

import pytest

from care_core.rewards import score_response


def A(text: str) -> str:
    """A well-formed response whose answer block holds ``text``."""
    return f"<think>reasoning</think><answer>{text}</answer>"


OPTS4 = ["30°", "45°", "90°", "120°"]
OPTS_TXT = ["circle", "square", "triangle", "hexagon"]
OPTS_NUM = ["3", "5", "15", "7"]
OPTS10 = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]

# (id, response, answer, answer_type, choices, precision, data_source, expected accuracy)
CASES: list[tuple[str, str, str, str, list[str] | None, int | None, str | None, float]] = [
    # ---------------------------------------------------------------- multiple choice: letter forms
    ("mc-bare", A("B"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-paren", A("(B)"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-dot", A("B."), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-colon", A("B:"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-bracket", A("[B]"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-lower", A("b"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-option-word", A("Option B"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-option-paren", A("option (B)"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-choice-word", A("Choice D"), "D", "choice", OPTS4, None, None, 1.0),
    ("mc-answer-is", A("The answer is C"), "C", "choice", OPTS4, None, None, 1.0),
    ("mc-answer-is-article", A("The answer is a square"), "B", "choice", OPTS_TXT, None, None, 1.0),
    ("mc-answer-is-article-wrong", A("The answer is a circle"), "B", "choice", OPTS_TXT, None, None, 0.0),
    ("mc-letter-text", A("C. 90°"), "C", "choice", OPTS4, None, None, 1.0),
    ("mc-paren-text", A("(C) 90°"), "C", "choice", OPTS4, None, None, 1.0),
    ("mc-wrong-letter", A("A"), "B", "choice", OPTS4, None, None, 0.0),
    ("mc-wrong-paren", A("(D)"), "B", "choice", OPTS4, None, None, 0.0),
    ("mc-out-of-range", A("E"), "B", "choice", OPTS4, None, None, 0.0),
    ("mc-two-letters", A("(A) or (B)"), "B", "choice", OPTS4, None, None, 0.0),
    ("mc-boxed", A("\\boxed{B}"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-boxed-noanswer", "so \\boxed{D}", "D", "choice", OPTS4, None, None, 1.0),
    ("mc-bold", A("**B**"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-10-options-J", A("J"), "J", "choice", OPTS10, None, None, 1.0),
    ("mc-10-options-I-wrong", A("I"), "J", "choice", OPTS10, None, None, 0.0),
    # option text instead of the letter (trap: (C) vs option text)
    ("mc-text-exact", A("90°"), "C", "choice", OPTS4, None, None, 1.0),
    ("mc-text-wrong", A("45°"), "C", "choice", OPTS4, None, None, 0.0),
    ("mc-text-case", A("Square"), "B", "choice", OPTS_TXT, None, None, 1.0),
    ("mc-text-article", A("the triangle"), "C", "choice", OPTS_TXT, None, None, 1.0),
    ("mc-text-in-sentence", A("It is a hexagon"), "D", "choice", OPTS_TXT, None, None, 1.0),
    ("mc-text-two-options", A("circle or square"), "A", "choice", OPTS_TXT, None, None, 0.0),
    ("mc-numeric-option", A("5"), "B", "choice", OPTS_NUM, None, None, 1.0),
    ("mc-numeric-option-float", A("5.0"), "B", "choice", OPTS_NUM, None, None, 1.0),
    ("mc-substring-option", A("the value is 15"), "C", "choice", OPTS_NUM, None, None, 1.0),
    ("mc-numeric-wrong", A("7"), "B", "choice", OPTS_NUM, None, None, 0.0),
    ("mc-truth-is-text", A("(C)"), "90°", "choice", OPTS4, None, None, 1.0),
    ("mc-truth-is-text-wrong", A("(A)"), "90°", "choice", OPTS4, None, None, 0.0),
    ("mc-truth-paren", A("C"), "(C)", "choice", OPTS4, None, None, 1.0),
    ("mc-empty-answer", A(""), "B", "choice", OPTS4, None, None, 0.0),
    (
        "mc-no-tags-therefore",
        "Let me compare.\nTherefore, the answer is (C).",
        "C",
        "choice",
        OPTS4,
        None,
        None,
        1.0,
    ),
    ("mc-no-tags-answer-colon", "Reasoning...\nAnswer: B", "B", "choice", OPTS4, None, None, 1.0),
    ("mc-unreadable", A("I am not sure"), "B", "choice", OPTS4, None, None, 0.0),
    ("mc-latex-text", A("\\text{(B)}"), "B", "choice", OPTS4, None, None, 1.0),
    ("mc-dollar", A("$B$"), "B", "choice", OPTS4, None, None, 1.0),
    # ---------------------------------------------------------------- integers
    ("int-plain", A("42"), "42", "integer", None, None, None, 1.0),
    ("int-wrong", A("41"), "42", "integer", None, None, None, 0.0),
    ("int-float-form", A("42.0"), "42", "integer", None, None, None, 1.0),
    ("int-not-integral", A("42.5"), "42", "integer", None, None, None, 0.0),
    ("int-thousands", A("1,234"), "1234", "integer", None, None, None, 1.0),
    ("int-thousands-truth", A("1234"), "1,234", "integer", None, None, None, 1.0),
    ("int-millions", A("1,234,567"), "1234567", "integer", None, None, None, 1.0),
    ("int-bad-separator", A("12,34"), "1234", "integer", None, None, None, 0.0),
    ("int-unicode-minus", A("\u22123"), "-3", "integer", None, None, None, 1.0),
    ("int-unicode-minus-truth", A("-3"), "\u22123", "integer", None, None, None, 1.0),
    ("int-en-dash-minus", A("\u20133"), "-3", "integer", None, None, None, 1.0),
    ("int-sign-wrong", A("3"), "-3", "integer", None, None, None, 0.0),
    ("int-units", A("7 cm"), "7", "integer", None, None, None, 1.0),
    ("int-units-sq", A("16 cm^2"), "16", "integer", None, None, None, 1.0),
    ("int-degrees", A("60^\\circ"), "60", "integer", None, None, None, 1.0),
    ("int-degree-sign", A("60°"), "60", "integer", None, None, None, 1.0),
    ("int-degrees-brace", A("60^{\\circ}"), "60", "integer", None, None, None, 1.0),
    ("int-dollar", A("\\$25"), "25", "integer", None, None, None, 1.0),
    ("int-currency", A("$25"), "25", "integer", None, None, None, 1.0),
    ("int-assignment", A("x = 5"), "5", "integer", None, None, None, 1.0),
    ("int-boxed", A("\\boxed{12}"), "12", "integer", None, None, None, 1.0),
    ("int-boxed-text", A("\\boxed{12\\text{ apples}}"), "12", "integer", None, None, None, 1.0),
    ("int-spelled", A("twelve"), "12", "integer", None, None, None, 0.0),
    ("int-two-numbers", A("12 or 13"), "12", "integer", None, None, None, 0.0),
    ("int-fallback-last-number", "First 3, then 4, so 7 in total", "7", "integer", None, None, None, 1.0),
    ("int-fallback-therefore", "x = 3 at first. Therefore, x = 5", "5", "integer", None, None, None, 1.0),
    (
        "int-fallback-trailing-therefore",
        "The answer is 5.\nTherefore 5",
        "5",
        "integer",
        None,
        None,
        None,
        1.0,
    ),
    (
        "int-fallback-answer-is",
        "We get 10 and 12. The final answer is 12.",
        "12",
        "integer",
        None,
        None,
        None,
        1.0,
    ),
    ("int-no-number", "I cannot tell.", "12", "integer", None, None, None, 0.0),
    ("int-empty-response", "", "12", "integer", None, None, None, 0.0),
    ("int-missing-close-tag", "<think>r</think><answer>12", "12", "integer", None, None, None, 1.0),
    ("int-unclosed-think", "<think>maybe 3 or 4 ... still thinking 4", "4", "integer", None, None, None, 1.0),
    ("int-think-only-number", "<think>it is 9</think>", "9", "integer", None, None, None, 0.0),
    (
        "int-last-answer-block",
        "<answer>3</answer> wait <answer>4</answer>",
        "4",
        "integer",
        None,
        None,
        None,
        1.0,
    ),
    ("int-nested-boxed", A("\\boxed{\\boxed{8}}"), "8", "integer", None, None, None, 1.0),
    ("int-leading-plus", A("+8"), "8", "integer", None, None, None, 1.0),
    ("int-percent-vs-int", A("50%"), "50", "integer", None, None, None, 1.0),
    ("int-scientific", A("1e3"), "1000", "integer", None, None, None, 1.0),
    ("int-frac", A("\\frac{8}{2}"), "4", "integer", None, None, None, 1.0),
    ("int-zero", A("0"), "0", "integer", None, None, None, 1.0),
    ("int-negative-zero", A("-0"), "0", "integer", None, None, None, 1.0),
    # ---------------------------------------------------------------- floats and precision (MathVista)
    ("float-exact", A("3.14"), "3.14", "float", None, None, None, 1.0),
    ("float-close", A("3.14159"), "3.1416", "float", None, None, None, 1.0),
    ("float-far", A("3.2"), "3.14", "float", None, None, None, 0.0),
    ("float-4.99-vs-5-p0", A("4.99"), "5", "float", None, 0, None, 1.0),
    ("float-4.99-vs-5-p1", A("4.99"), "5", "float", None, 1, None, 1.0),
    ("float-4.99-vs-5-p2", A("4.99"), "5", "float", None, 2, None, 0.0),
    ("float-4.99-vs-5-none", A("4.99"), "5", "float", None, None, None, 0.0),
    ("float-5-vs-5.0-p1", A("5"), "5.0", "float", None, 1, None, 1.0),
    ("float-1.666-p2", A("1.666"), "1.67", "float", None, 2, None, 1.0),
    ("float-1.664-p2", A("1.664"), "1.67", "float", None, 2, None, 0.0),
    ("float-1.6-p1", A("1.64"), "1.6", "float", None, 1, None, 1.0),
    ("float-1.66-p1", A("1.66"), "1.6", "float", None, 1, None, 0.0),
    ("float-frac", A("\\frac{1}{2}"), "0.5", "float", None, None, None, 1.0),
    ("float-dfrac", A("\\dfrac{3}{4}"), "0.75", "float", None, None, None, 1.0),
    ("float-slash", A("3/4"), "0.75", "float", None, None, None, 1.0),
    ("float-neg-frac", A("-\\frac{1}{4}"), "-0.25", "float", None, None, None, 1.0),
    ("float-percent-vs-decimal", A("12%"), "0.12", "float", None, None, None, 1.0),
    ("float-latex-percent", A("12\\%"), "0.12", "float", None, None, None, 1.0),
    ("float-decimal-vs-percent", A("0.12"), "12%", "float", None, None, None, 1.0),
    ("float-percent-wrong", A("13%"), "0.12", "float", None, None, None, 0.0),
    ("float-leading-dot", A(".5"), "0.5", "float", None, None, None, 1.0),
    ("float-unicode-minus", A("\u22120.5"), "-0.5", "float", None, None, None, 1.0),
    ("float-thousands", A("1,234.5"), "1234.5", "float", None, 1, None, 1.0),
    ("float-units", A("2.5 m/s"), "2.5", "float", None, None, None, 1.0),
    ("float-trailing-period", A("2.5."), "2.5", "float", None, None, None, 1.0),
    ("float-fallback-number", "the length is about 2.5", "2.5", "float", None, None, None, 1.0),
    ("float-text", A("two and a half"), "2.5", "float", None, None, None, 0.0),
    ("float-div-zero", A("1/0"), "0", "float", None, None, None, 0.0),
    ("float-precision-3", A("0.3333"), "0.333", "float", None, 3, None, 1.0),
    # ---------------------------------------------------------------- ChartQA relaxed accuracy
    ("chart-exact", A("12"), "12", "float", None, None, "chartqa", 1.0),
    ("chart-within-5pct", A("12.5"), "12", "float", None, None, "chartqa", 1.0),
    ("chart-at-5pct", A("10.5"), "10", "float", None, None, "chartqa", 1.0),
    ("chart-beyond-5pct", A("12.7"), "12", "float", None, None, "chartqa", 0.0),
    ("chart-percent-vs-decimal", A("12%"), "0.12", "float", None, None, "chartqa", 1.0),
    ("chart-percent-vs-int", A("12%"), "12", "integer", None, None, "chartqa", 1.0),
    ("chart-percent-wrong", A("20%"), "0.12", "float", None, None, "chartqa", 0.0),
    ("chart-zero", A("0"), "0", "integer", None, None, "chartqa", 1.0),
    ("chart-zero-wrong", A("0.01"), "0", "float", None, None, "chartqa", 0.0),
    ("chart-text-yes", A("Yes"), "Yes", "text", None, None, "chartqa", 1.0),
    ("chart-text-case", A("yes"), "Yes", "text", None, None, "chartqa", 1.0),
    ("chart-text-wrong", A("No"), "Yes", "text", None, None, "chartqa", 0.0),
    ("chart-text-period", A("Yes."), "Yes", "text", None, None, "chartqa", 1.0),
    ("chart-text-partial", A("Yes, it is"), "Yes", "text", None, None, "chartqa", 0.0),
    ("chart-thousands", A("1,050"), "1000", "integer", None, None, "chartqa", 1.0),
    ("chart-negative", A("-9.6"), "-10", "float", None, None, "chartqa", 1.0),
    ("chart-source-prefix", A("104"), "100", "integer", None, None, "chartqa/human", 1.0),
    ("not-chart-no-relax", A("104"), "100", "integer", None, None, "virl39k", 0.0),
    # ---------------------------------------------------------------- expressions (math-verify)
    ("expr-frac-vs-decimal", A("\\boxed{\\frac{1}{2}}"), "0.5", "expression", None, None, None, 1.0),
    ("expr-decimal-vs-frac", A("0.5"), "\\frac{1}{2}", "expression", None, None, None, 1.0),
    ("expr-same-string", A("3\\sqrt{3}"), "3\\sqrt{3}", "expression", None, None, None, 1.0),
    ("expr-sqrt-forms", A("\\frac{\\sqrt{2}}{2}"), "\\sqrt{2}/2", "expression", None, None, None, 1.0),
    ("expr-sqrt-wrong", A("\\sqrt{3}"), "\\sqrt{2}", "expression", None, None, None, 0.0),
    ("expr-polynomial", A("(x+1)^2"), "x^2+2x+1", "expression", None, None, None, 1.0),
    ("expr-polynomial-wrong", A("(x-1)^2"), "x^2+2x+1", "expression", None, None, None, 0.0),
    ("expr-pi", A("16\\pi"), "16\\pi", "expression", None, None, None, 1.0),
    ("expr-pi-product", A("4 \\cdot 4\\pi"), "16\\pi", "expression", None, None, None, 1.0),
    ("expr-pi-numeric", A("50.27"), "16\\pi", "expression", None, None, None, 0.0),
    ("expr-degrees", A("17"), "17^\\circ", "expression", None, None, None, 1.0),
    ("expr-equation", A("x=5"), "5", "expression", None, None, None, 1.0),
    ("expr-set-order", A("3,2"), "2,3", "expression", None, None, None, 1.0),
    ("expr-interval", A("(0, 1)"), "(0,1)", "expression", None, None, None, 1.0),
    ("expr-interval-wrong", A("[0, 1]"), "(0,1)", "expression", None, None, None, 0.0),
    ("expr-boxed-in-text", "Hence \\boxed{2^{10}}", "1024", "expression", None, None, None, 1.0),
    (
        "expr-nested-braces",
        A("\\boxed{\\frac{\\sqrt{3}}{2}}"),
        "\\frac{\\sqrt{3}}{2}",
        "expression",
        None,
        None,
        None,
        1.0,
    ),
    ("expr-empty", A(""), "x+1", "expression", None, None, None, 0.0),
    ("expr-int-vs-float", A("3.0"), "3", "expression", None, None, None, 1.0),
    ("expr-symbol-wrong", A("y"), "x", "expression", None, None, None, 0.0),
    (
        "expr-therefore-fallback",
        "we find x=3, but then correct it. Therefore x = 4",
        "4",
        "expression",
        None,
        None,
        None,
        1.0,
    ),
    ("expr-percent", A("10\\%"), "0.1", "expression", None, None, None, 1.0),
    ("expr-unicode-minus", A("\u2212\\frac{1}{3}"), "-\\frac{1}{3}", "expression", None, None, None, 1.0),
    # ---------------------------------------------------------------- text
    ("text-exact", A("white"), "white", "text", None, None, None, 1.0),
    ("text-case-space", A("  White  "), "white", "text", None, None, None, 1.0),
    ("text-punct", A("white."), "white", "text", None, None, None, 1.0),
    ("text-quotes", A('"white"'), "white", "text", None, None, None, 1.0),
    ("text-latex", A("\\text{white}"), "white", "text", None, None, None, 1.0),
    ("text-wrong", A("black"), "white", "text", None, None, None, 0.0),
    ("text-extra-word", A("white square"), "white", "text", None, None, None, 0.0),
    ("text-multiword", A("New  York"), "new york", "text", None, None, None, 1.0),
    ("text-numeric", A("3.0"), "3", "text", None, None, None, 1.0),
    ("text-numeric-wrong", A("4"), "3", "text", None, None, None, 0.0),
    ("text-fallback-line", "Thinking...\nAnswer: blue", "blue", "text", None, None, None, 1.0),
    # a non-numeric gold is not cut down to the last number: the untagged final line counts (issue 12, cause 3)
    ("text-missing-tags", "blue", "blue", "text", None, None, None, 1.0),
    ("text-missing-tags-wrong", "red", "blue", "text", None, None, None, 0.0),
    ("text-article", A("The Eiffel Tower"), "Eiffel Tower", "text", None, None, None, 1.0),
    ("text-yes", A("Yes"), "yes", "text", None, None, None, 1.0),
]


@pytest.mark.parametrize(
    ("response", "answer", "answer_type", "choices", "precision", "data_source", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_accuracy_table(response, answer, answer_type, choices, precision, data_source, expected) -> None:
    scores = score_response(response, answer, answer_type, choices=choices, precision=precision,
                            data_source=data_source)  # fmt: skip
    assert scores["accuracy"] == expected


def test_table_is_large_and_ids_unique() -> None:
    ids = [case[0] for case in CASES]
    assert len(CASES) >= 150
    assert len(set(ids)) == len(ids)


def test_fallback_modes() -> None:
    text = "Counting gives 3 and then 4 more\nSo: seven"
    assert score_response(text, "4", "integer", fallback="last_number")["accuracy"] == 1.0
    assert score_response(text, "4", "integer", fallback="none")["accuracy"] == 0.0
    assert score_response(text, "So: seven", "text", fallback="last_line")["accuracy"] == 1.0


@pytest.mark.parametrize(
    "garbage",
    [
        "(" * 25_000 + "x" * 25_000,
        "<answer>" + "\\frac{" * 8_000 + "1" + "}{2}" * 8_000 + "</answer>",
        "\\boxed{" * 10_000 + "9" * 1000 + "}" * 10_000,
        "<think>" + "9," * 25_000 + "</think><answer>" + "x^" * 900 + "2</answer>",
        "".join(chr(33 + (i * 7919) % 90) for i in range(51_200)),
    ],
    ids=["parens", "deep-frac", "deep-boxed", "power-tower-in-answer", "pseudo-random"],
)
def test_50kb_garbage_finishes_fast(garbage: str) -> None:
    assert len(garbage) >= 50_000
    start = time.monotonic()
    for answer_type in ("expression", "integer", "text"):
        scores = score_response(garbage, "x^2", answer_type, timeout_s=1.0)
        assert scores["accuracy"] == 0.0
    assert (
        time.monotonic() - start < 20.0
    )  # unguarded, math-verify takes > 30 s here; slack for a loaded CI box


def test_adversarial_expression_is_cut_at_the_time_limit() -> None:
    # math-verify needs > 30 s for this 100-character power tower without a limit (measured)
    response = A("x^" * 50 + "2")
    start = time.monotonic()
    scores = score_response(response, "x^2", "expression", timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert scores == {"reward": 0.1, "accuracy": 0.0, "format": 1.0}
    assert elapsed < 10.0  # unguarded > 30 s (measured); slack for a loaded CI box
