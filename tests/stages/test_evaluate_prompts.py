"""The exact prompt text of one item per benchmark (issue 12 item 3), from the native fixtures.

Each expected string is the benchmark's published prompt format for that item: MathVista's
``query``, MathVerse's ``query_cot``/``query_wo``, MATH-V's boxed-answer instruction with ``(A)``
lines, MMMU's ``(A)`` layout plus its instruction, MMMU-Pro's ``A.`` layout plus its CoT
instruction, and for MMMU-Pro vision and MathVerse Vision-Only no option text at all.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from care_core.config import build_recipe
from care_core.data.prompting import build_messages
from care_core.data.sources import load_source_rows
from care_core.evaluation.prompts import benchmark_problem, benchmark_row

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
PRO_INSTRUCTION = (
    "Answer the preceding multiple choice question. The last line of your response should be of "
    "the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. "
    "Think step by step before answering."
)
VISION = (
    "Write out the multiple-choice question in the image and then solve it. The last line of your response "
    "should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. "
    "Think step by step before answering."
)
BOXED = (
    'Please solve the problem step by step and put your answer in one "\\boxed{}". If it is a multiple '
    'choice question, only one letter is allowed in the "\\boxed{}".'
)

EXPECTED = {
    ("mathvista", "mathvista", "mathvista/1"):
        "Hint: answer with the option's letter.\nQuestion: Which angle is largest?\nChoices:\n"
        "(A) 30°\n(B) 45°\n(C) 90°\n(D) 120°",
    ("mathverse", "mathverse", "mathverse/1"):
        "Please answer.\nQuestion: As shown in the figure, find angle ABC.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°",
    ("mathverse", "mathverse", "mathverse/2"): "Please answer the question shown in the image.",  # Vision Only
    ("mathvision", "mathvision", "mathvision/1"):
        BOXED + "\n<image>Which figure completes the pattern?\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n(E) 5",
    ("mmmu", "mmmu", "mmmu/validation_Accounting_1"):
        "<image> What is the net income?\n\n(A) $10\n(B) $20\n(C) $30\n(D) $40\n\n"
        "Answer with the option's letter from the given choices directly.",
    ("mmmu", "mmmu", "mmmu/validation_Art_Theory_2"):
        "<image> In what year was this painted?\n\nAnswer the question using a single word or phrase.",
    ("mmmu_pro_standard", "mmmu_pro", "mmmu_pro_standard/test_Accounting_1"):
        "<image> Which account is debited?\nA. Cash\nB. Revenue\nC. Inventory\nD. Equity\nE. Payables\n"
        "F. Receivables\nG. Wages\nH. Rent\nI. Tax\nJ. Interest\n" + PRO_INSTRUCTION,
    ("mmmu_pro_vision", "mmmu_pro", "mmmu_pro_vision/test_Accounting_1"): VISION,
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def source_fixtures() -> None:
    if not (FIXTURES / "mmmu_pro").is_dir():  # generated files (deterministic)
        subprocess.run([sys.executable, str(FIXTURES.parent / "make_source_fixtures.py")], check=True)


def _row(name: str, folder: str, row_id: str) -> dict:
    return next(r for r in load_source_rows(name, path=str(FIXTURES / folder)) if r["id"] == row_id)


@pytest.mark.parametrize(("name", "folder", "row_id"), list(EXPECTED), ids=[k[2] for k in EXPECTED])
def test_exact_prompt_text(name: str, folder: str, row_id: str) -> None:
    assert benchmark_problem(name, _row(name, folder, row_id)) == EXPECTED[(name, folder, row_id)]


@pytest.mark.parametrize(
    ("name", "row_id"),
    [("mmmu_pro_vision", "mmmu_pro_vision/test_Accounting_1"), ("mathverse", "mathverse/2")],
)
def test_vision_settings_send_the_image_and_no_option_text(name: str, row_id: str) -> None:
    """Issue 12 cause 10: MMMU-Pro vision and MathVerse Vision-Only keep the options in the image."""
    row = _row(name, "mmmu_pro" if name.startswith("mmmu") else "mathverse", row_id)
    assert row["choices"]  # kept for scoring
    messages = build_messages(benchmark_row(name, row), build_recipe({}).data)
    user = messages[-1]["content"]
    assert [part["type"] for part in user] == ["image", "text"]  # the screenshot, then the instruction
    text = user[0 if user[0]["type"] == "text" else 1]["text"]
    assert not any(option in text for option in row["choices"])
    assert "A." not in text and "(A)" not in text and "A:" not in text
