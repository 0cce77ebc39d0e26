"""Verifiable rewards: answer extraction, verifiers by answer type, benchmark scorers."""

from care_core.rewards.benchmarks import BENCHMARKS, get_benchmark_scorer, judge_item, score_benchmark
from care_core.rewards.extraction import (
    extract_answer,
    find_spans_text,
    find_spans_tokens,
    format_ok,
    format_reward,
    last_boxed,
)
from care_core.rewards.reward import score_response
from care_core.rewards.verifiers import choice_letter, normalize_text, number_readings, parse_number, verify

__all__ = [
    "BENCHMARKS",
    "choice_letter",
    "extract_answer",
    "find_spans_text",
    "find_spans_tokens",
    "format_ok",
    "format_reward",
    "get_benchmark_scorer",
    "judge_item",
    "last_boxed",
    "normalize_text",
    "number_readings",
    "parse_number",
    "score_benchmark",
    "score_response",
    "verify",
]
