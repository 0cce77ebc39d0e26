"""MMMU-Pro: ``MMMU/MMMU_Pro``, split ``test``; configs ``standard (10 options)`` and ``vision``.

Standard fields: ``id``, ``question``, ``options`` (list literal string, up to 10), ``explanation``,
``image_1`` … ``image_7``, ``img_type``, ``answer`` (letter), ``topic_difficulty``, ``subject``.
Vision fields: ``id``, ``image`` (a screenshot holding question and options), ``options``,
``answer``, ``subject``; ``problem`` is MMMU-Pro's vision instruction since the question is in the
image (``choices`` are kept for scoring only). Standard rows keep the raw question.
"""

from __future__ import annotations

from typing import Any

from care_core.data.sources.base import RowContext, Source, row_id
from care_core.data.sources.mmmu import mmmu_row, parse_options

# MMMU-Pro's own chain-of-thought instruction for the vision setting (mmmu-pro/prompts.yaml): the
# question and its options are only in the screenshot, so no option text goes into the prompt
VISION_PROMPT = (
    "Write out the multiple-choice question in the image and then solve it. The last line of your "
    "response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one "
    "of options. Think step by step before answering."
)


class MMMUProStandard(Source):
    name = "mmmu_pro_standard"
    hub_id = "MMMU/MMMU_Pro"
    default_split = "test"
    default_config = "standard (10 options)"
    required_columns = ("question", "options", "answer")

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        return mmmu_row(self, {**record, "question_type": "multiple-choice"}, ctx, record.get("subject"))


class MMMUProVision(Source):
    name = "mmmu_pro_vision"
    hub_id = "MMMU/MMMU_Pro"
    default_split = "test"
    default_config = "vision"
    required_columns = ("image", "options", "answer")

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        return {
            "id": row_id(self.name, record.get("id"), ctx),
            "images": [record.get("image")],
            "problem": VISION_PROMPT,
            "answer": str(record.get("answer") or "").strip(),
            "answer_type": "choice",
            "choices": parse_options(record.get("options")),
            "meta": {"subject": record.get("subject")},
        }
