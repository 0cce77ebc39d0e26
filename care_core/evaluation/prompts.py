"""Benchmark prompt formats: the row's problem as the benchmark presents it to the model.

All benchmarks use the recipe's system prompt (think, then ``<answer>``) through
``care_core.data.prompting.build_messages``; what differs is the question text:

* multiple-choice items whose problem does not already list the options get them appended as
  ``A. …`` lines plus "Answer with the option's letter from the given choices directly." (MMMU /
  MMMU-Pro standard / MathVerse / MATH-Vision style);
* ``mmmu_pro_vision``: the question and options are inside the image; an empty problem becomes
  MMMU-Pro's vision instruction;
* MMMU's ``<image n>`` placeholders stay in the text (the images follow in order).
"""

from __future__ import annotations

import re
from typing import Any

from care_core.data.sources.base import parse_inline_choices

LETTERS = "ABCDEFGHIJ"
CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
VISION_INSTRUCTION = (
    "Identify the problem and solve it. Think step by step before answering. "
    "Answer with the option's letter from the options in the image."
)
_LISTED_RE = re.compile(r"(^|\n)\s*\(?A[.):]\s")


def options_block(choices: list[str]) -> str:
    """``A. first\\nB. second …`` (at most ten options, A-J)."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} options: at most {len(LETTERS)} letters are supported")
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


def benchmark_problem(name: str, row: dict[str, Any]) -> str:
    """The question text of ``row`` in benchmark ``name``'s prompt format."""
    problem = str(row.get("problem") or "").strip()
    choices = [str(c) for c in (row.get("choices") or [])]
    if name == "mmmu_pro_vision" and not problem:
        return VISION_INSTRUCTION
    if name == "synthetic" or row.get("answer_type") != "choice" or not choices:
        return problem
    if _LISTED_RE.search(problem) or parse_inline_choices(problem):
        return problem
    return f"{problem}\nOptions:\n{options_block(choices)}\n{CHOICE_INSTRUCTION}"


def benchmark_row(name: str, row: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` whose ``problem`` is in the benchmark's prompt format."""
    return {**row, "problem": benchmark_problem(name, row)}
