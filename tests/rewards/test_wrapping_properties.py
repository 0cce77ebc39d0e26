"""Property: a correct answer stays correct when wrapped in tags, a box or a sentence.

For every benchmark, both scoring modes and the RL reward: generated numbers, option letters and
words are scored bare in ``<answer>`` tags, boxed (in and out of tags) and inside the sentence
"The answer is X." (in and out of tags); each wrapping must score 1. A different answer in the same
wrappings must score 0.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from care_core.rewards import judge_item, score_response
from care_core.rewards.verifiers import LETTERS

MODES = ("official", "strict")
_RESERVED = {
    "so",
    "is",
    "thus",
    "therefore",
    "final",
    "answer",
    "result",
    "could",
    "be",
    "the",
    "and",
    "or",
    "no",
    "not",
    "wait",
    "a",
    "an",
    "cm",
    "m",
    "km",
}  # indicator / correction / unit words


def wrappings(x: str) -> list[str]:
    return [
        f"<think>working</think><answer>{x}</answer>",
        f"<think>working</think><answer>\\boxed{{{x}}}</answer>",
        f"Some working first.\n\\boxed{{{x}}}",
        f"Some working first.\nThe answer is {x}.",
        f"<think>working</think><answer>The answer is {x}.</answer>",
    ]


def _item(answer: str, answer_type: str, choices: list[str] | None = None, **meta: object) -> dict:
    return {
        "id": "prop/1",
        "answer": answer,
        "answer_type": answer_type,
        "choices": choices or [],
        "meta": meta,
    }


numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.decimals(-1000, 1000, places=2, allow_nan=False).map(lambda d: f"{d:.2f}"),
)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=9).filter(
    lambda w: w not in _RESERVED
)


@settings(max_examples=40, deadline=None)
@given(value=numbers)
def test_numbers_survive_every_wrapping(value: str) -> None:
    other = str(float(value) * 2 + 7)  # a clearly different number (no tolerance reaches it)
    is_int = "." not in value
    vista_gold = value if is_int else str(round(float(value), 2))  # MathVista stores floats without padding
    cases = [
        ("mathverse", _item(value, "integer" if is_int else "float")),
        ("mathvision", _item(value, "expression")),
        ("mmmu", _item(value, "text")),
        (
            "mathvista",
            _item(
                vista_gold,
                "integer" if is_int else "float",
                native_answer_type="integer" if is_int else "float",
                precision=2,
            ),
        ),
    ]
    for wrapped in wrappings(value):
        for benchmark, it in cases:
            for mode in MODES:
                assert judge_item(benchmark, wrapped, it, mode), (benchmark, mode, wrapped)
        assert score_response(wrapped, value, "integer" if is_int else "float")["accuracy"] == 1.0, wrapped
    for wrapped in wrappings(other):
        for benchmark, it in cases:
            for mode in MODES:
                assert not judge_item(benchmark, wrapped, it, mode), (benchmark, mode, wrapped)


@settings(max_examples=40, deadline=None)
@given(n_options=st.integers(2, 10), data=st.data())
def test_option_letters_survive_every_wrapping(n_options: int, data: st.DataObject) -> None:
    choices = [f"option number {i}" for i in range(n_options)]
    index = data.draw(st.integers(0, n_options - 1))
    letter, wrong = LETTERS[index], LETTERS[(index + 1) % n_options]
    it = _item(
        letter,
        "choice",
        choices,
        native_answer_type="text",
        question_type="multi_choice",
        answer_text=choices[index],
    )
    benchmarks = ["mathvista", "mathverse", "mmmu", "mmmu_pro_standard", "mmmu_pro_vision"]
    if n_options <= 5:
        benchmarks.append("mathvision")  # MATH-V has options A-E
    for wrapped in wrappings(letter) + [f"Reasoning.\nAnswer: {letter}"]:
        for benchmark in benchmarks:
            if wrapped.startswith("Reasoning.") and not benchmark.startswith("mmmu_pro"):
                continue  # the "Answer: X" line is MMMU-Pro's own format
            for mode in MODES:
                assert judge_item(benchmark, wrapped, it, mode), (benchmark, mode, wrapped)
        assert score_response(wrapped, letter, "choice", choices=choices)["accuracy"] == 1.0, wrapped
    for wrapped in wrappings(wrong):
        for benchmark in benchmarks:
            for mode in MODES:
                assert not judge_item(benchmark, wrapped, it, mode), (benchmark, mode, wrapped)


@settings(max_examples=40, deadline=None)
@given(word=words, other=words)
def test_words_survive_every_wrapping(word: str, other: str) -> None:
    cases = [("mmmu", _item(word, "text")), ("mathvista", _item(word, "text", native_answer_type="text"))]
    for wrapped in wrappings(word):
        for benchmark, it in cases:
            for mode in MODES:
                assert judge_item(benchmark, wrapped, it, mode), (benchmark, mode, wrapped)
        # the RL reward on ChartQA-style text answers (relaxed accuracy: exact text)
        assert score_response(wrapped, word, "text", data_source="chartqa")["accuracy"] == 1.0, wrapped
    if word not in other and other not in word:
        for wrapped in wrappings(other):
            for benchmark, it in cases:
                for mode in MODES:
                    assert not judge_item(benchmark, wrapped, it, mode), (benchmark, mode, wrapped)
