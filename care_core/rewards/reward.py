"""Per-response verifiable reward: ``r = (1 - lam) * accuracy + lam * format``."""

from __future__ import annotations

from care_core.rewards.extraction import extract_answer, format_reward
from care_core.rewards.verifiers import number_readings, verify


def gold_is_numeric(answer: str, answer_type: str) -> bool:
    """Whether the gold is a number, so that an untagged response may be read by its last number."""
    if answer_type in ("integer", "float"):
        return True
    return answer_type in ("text", "expression") and bool(number_readings(answer))


def score_response(
    response: str,
    answer: str,
    answer_type: str,
    choices: list[str] | None = None,
    precision: int | None = None,
    data_source: str | None = None,
    format_weight: float = 0.1,
    fallback: str = "last_number",
    timeout_s: float = 3.0,
) -> dict[str, float]:
    """Score one response: ``{"reward", "accuracy", "format"}`` (each in [0, 1]).

    ``accuracy`` verifies the extracted answer (:func:`extract_answer` with ``fallback``) by
    ``answer_type`` (:func:`care_core.rewards.verifiers.verify`); ``format`` is 1 for a well-formed
    ``<think>…</think><answer>…</answer>`` response; ``format_weight`` is lam. A non-numeric gold
    (text, option, expression) is never read from the response's last number
    (:func:`gold_is_numeric`): ChartQA's "Yes" or "light blue" needs no tags to score.
    """
    if not 0.0 <= format_weight <= 1.0:
        raise ValueError(f"format_weight={format_weight} must be in [0, 1]")
    pred = extract_answer(response, fallback, numeric=gold_is_numeric(answer, answer_type))
    accuracy = verify(pred, answer, answer_type, choices, precision, data_source, timeout_s)
    fmt = format_reward(response)
    return {
        "reward": (1.0 - format_weight) * accuracy + format_weight * fmt,
        "accuracy": accuracy,
        "format": fmt,
    }
