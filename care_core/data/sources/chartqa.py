"""ChartQA (RL): ``HuggingFaceM4/ChartQA`` (splits ``train``/``val``/``test``) or ``lmms-lab/ChartQA`` (``test``).

Native fields, HuggingFaceM4: ``image``, ``query``, ``label`` (list of strings, first is the
answer), ``human_or_machine`` (0 human, 1 machine-generated). lmms-lab: ``type``
(``human_test``/``augmented_test``), ``question``, ``answer``, ``image``. Rows carry
``data_source="chartqa"`` so the verifier applies relaxed accuracy (5 % for numbers).
"""

from __future__ import annotations

from typing import Any

from care_core.data.images import BadRow
from care_core.data.sources.base import RowContext, Source, infer_answer_type, row_id

_ORIGIN = {0: "human", 1: "machine"}


class ChartQA(Source):
    name = "chartqa"
    hub_id = "HuggingFaceM4/ChartQA"
    default_split = "train"

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        if "label" in record:
            labels = record["label"]
            labels = labels if isinstance(labels, list) else [labels]
            if not labels:
                raise BadRow("label", "empty answer (no label)")
            answer, problem = str(labels[0]), record["query"]
            origin = _ORIGIN.get(record.get("human_or_machine"), record.get("human_or_machine"))
        else:
            answer, problem, origin = str(record.get("answer") or ""), record["question"], record.get("type")
        answer_type, _ = infer_answer_type(answer)
        if answer_type == "expression":
            answer_type = "text"
        return {
            "id": row_id(self.name, record.get("id"), ctx),
            "images": [record["image"]],
            "problem": problem,
            "answer": answer,
            "answer_type": answer_type,
            "choices": [],
            "meta": {"split": ctx.split, "origin": origin},
        }
