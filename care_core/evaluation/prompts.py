"""Benchmark prompt formats: the row's problem as the benchmark's own evaluation presents it.

All benchmarks keep the recipe's system prompt (think, then ``<answer>``) through
``care_core.data.prompting.build_messages``; the user turn is the benchmark's published prompt:

* ``mathvista``: the dataset's ``query`` (hint, question and options, as MathVista's
  ``build_query`` writes them); the adapter stores it as ``problem``.
* ``mathverse``: the dataset's ``query_cot`` (else ``query_wo``, else ``question``), stored by the
  adapter. Options are never appended: the text versions list them inside the question, and
  Vision-Only keeps them only in the image.
* ``mathvision``: MATH-V's chain-of-thought prompt: ``Please solve the problem step by step and put
  your answer in one "\\boxed{}". …`` then the question and its ``(A) …`` option lines (none when
  the options are just the letters A-E, i.e. drawn in the image).
* ``mmmu``: MMMU's format: ``{question}\\n\\n(A) x\\n(B) y\\n\\nAnswer with the option's letter from
  the given choices directly.``; open questions: ``{question}\\n\\nAnswer the question using a single
  word or phrase.``
* ``mmmu_pro_standard``: MMMU-Pro's chain-of-thought format: ``{question}\\nA. x\\nB. y\\n`` plus its
  standard instruction.
* ``mmmu_pro_vision``: the screenshot plus MMMU-Pro's vision instruction only (the question and
  options stay inside the image; no option text is sent).

Images go where the question's ``<image>`` marks are (else first). Any other benchmark name gets
the generic format: the options appended as ``A. …`` lines when the problem does not list them.
"""

from __future__ import annotations

import re
from typing import Any

from care_core.data.sources.base import parse_inline_choices
from care_core.data.sources.mmmu_pro import VISION_PROMPT

LETTERS = "ABCDEFGHIJ"
CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
MMMU_PRO_STANDARD_INSTRUCTION = (
    "Answer the preceding multiple choice question. The last line of your response should be of the "
    "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. Think step by "
    "step before answering."
)
VISION_INSTRUCTION = VISION_PROMPT  # mmmu-pro/prompts.yaml, cot.vision
MATHVISION_INSTRUCTION = (
    'Please solve the problem step by step and put your answer in one "\\boxed{}". If it is a multiple '
    'choice question, only one letter is allowed in the "\\boxed{}".'
)
_LISTED_RE = re.compile(r"(^|\n)\s*\(?A[.):]\s")


def options_block(choices: list[str], style: str = "dot") -> str:
    """``A. first\\nB. second …`` (``style="paren"``: ``(A) first``); at most ten options, A-J."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} options: at most {len(LETTERS)} letters are supported")
    if style == "paren":
        return "\n".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


def _lists_options(problem: str) -> bool:
    return bool(_LISTED_RE.search(problem) or parse_inline_choices(problem))


def benchmark_problem(name: str, row: dict[str, Any]) -> str:
    """The question text of ``row`` in benchmark ``name``'s prompt format (module rules)."""
    problem = str(row.get("problem") or "").strip()
    choices = [str(c) for c in (row.get("choices") or [])]
    is_choice = row.get("answer_type") == "choice" and bool(choices)
    if name == "mmmu_pro_vision":
        return VISION_INSTRUCTION
    if name in ("synthetic", "mathvista", "mathverse"):
        return problem
    if name == "mathvision":
        listed = is_choice and "".join(choices) != LETTERS[: len(choices)] and not _lists_options(problem)
        options = options_block(choices, "paren") + "\n" if listed else ""
        return f"{MATHVISION_INSTRUCTION}\n{problem}\n{options}".rstrip("\n")
    if name == "mmmu":
        if not is_choice:
            return f"{problem}\n\n{OPEN_INSTRUCTION}"
        listed = problem if _lists_options(problem) else f"{problem}\n\n{options_block(choices, 'paren')}"
        return f"{listed}\n\n{CHOICE_INSTRUCTION}"
    if name == "mmmu_pro_standard":
        listed = problem if _lists_options(problem) else f"{problem}\n{options_block(choices)}"
        return f"{listed}\n{MMMU_PRO_STANDARD_INSTRUCTION}"
    if not is_choice or _lists_options(problem):
        return problem
    return f"{problem}\nOptions:\n{options_block(choices)}\n{CHOICE_INSTRUCTION}"


def benchmark_row(name: str, row: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` whose ``problem`` is in the benchmark's prompt format."""
    return {**row, "problem": benchmark_problem(name, row)}
