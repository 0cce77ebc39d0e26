"""MATH-Vision: ``MathLLMs/MathVision``, split ``test`` (3040) or ``testmini`` (304).

Native fields: ``id``, ``question`` (with ``<image1>`` marks), ``options`` (list, empty for
free-form), ``image`` (path), ``decoded_image`` (image), ``answer`` (a letter A-E or a value),
``solution``, ``level`` (1-5), ``subject``. ``problem`` is the raw question: MATH-V's prompt (its
instruction and the ``(A) …`` option lines) is built at evaluation (``care_core.evaluation.prompts``).
"""

from __future__ import annotations

import re
from typing import Any

from care_core.data.sources.base import RowContext, Source, infer_answer_type, row_id


class MathVision(Source):
    name = "mathvision"
    hub_id = "MathLLMs/MathVision"
    default_split = "test"
    required_columns = ("question", "answer", "options")

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        options = [str(o) for o in (record.get("options") or [])]
        question = re.sub(r"<image\d*>", "<image>", str(record["question"]))
        answer = str(record.get("answer") or "").strip()
        if options:
            answer_type, choices, problem = "choice", options, question
        else:
            answer_type, choices = infer_answer_type(answer)
            problem = question
        if question.count("<image>") != 1:
            problem = problem.replace("<image>", "")
        return {
            "id": row_id(self.name, record.get("id"), ctx),
            "images": [record.get("decoded_image") or record.get("image")],
            "problem": problem,
            "answer": answer,
            "answer_type": answer_type,
            "choices": choices,
            "meta": {"subject": record.get("subject"), "level": record.get("level")},
        }
