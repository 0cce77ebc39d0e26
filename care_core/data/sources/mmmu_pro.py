"""MMMU-Pro: ``MMMU/MMMU_Pro``, split ``test``; configs ``standard (10 options)`` and ``vision``.

Standard fields: ``id``, ``question``, ``options`` (list literal string, up to 10), ``explanation``,
``image_1`` … ``image_7``, ``img_type``, ``answer`` (letter), ``topic_difficulty``, ``subject``.
Vision fields: ``id``, ``image`` (a screenshot holding question and options), ``options``,
``answer``, ``subject``; ``problem`` is a fixed instruction since the question is in the image.
"""

from __future__ import annotations

from typing import Any

from care_core.data.sources.base import RowContext, Source, row_id
from care_core.data.sources.mmmu import mmmu_row, parse_options

VISION_PROMPT = (
    "<image>\nThe image shows a multiple-choice question with its options. Read it, solve it, "
    "and answer with the letter of the correct option."
)


class MMMUProStandard(Source):
    name = "mmmu_pro_standard"
    hub_id = "MMMU/MMMU_Pro"
    default_split = "test"
    default_config = "standard (10 options)"

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        return mmmu_row(self, {**record, "question_type": "multiple-choice"}, ctx, record.get("subject"))


class MMMUProVision(Source):
    name = "mmmu_pro_vision"
    hub_id = "MMMU/MMMU_Pro"
    default_split = "test"
    default_config = "vision"

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
