"""Geometry3K (RL): ``hiyouga/geometry3k``, splits ``train`` (2101) / ``validation`` (300) / ``test`` (601).

Native fields: ``images`` (list of images), ``problem`` (with ``<image>``), ``answer`` (the value,
e.g. ``3\\sqrt{3}``), ``id``, ``choices`` (four values), ``ground_truth`` (the letter of
``answer`` among ``choices``). The problem text does not list the options, so rows are free-form:
``answer`` is the value (integer/float/expression); ``choices`` and ``ground_truth`` go to ``meta``.
"""

from __future__ import annotations

from typing import Any

from care_core.data.sources.base import RowContext, Source, as_list, infer_answer_type, row_id


class Geometry3K(Source):
    name = "geometry3k"
    hub_id = "hiyouga/geometry3k"
    default_split = "train"
    required_columns = ("images", "problem", "answer")

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        answer = str(record.get("answer") or "").strip()
        answer_type, _ = infer_answer_type(answer)
        native_id = record.get("id")
        return {
            "id": row_id(self.name, f"{ctx.split}-{native_id}" if native_id is not None else None, ctx),
            "images": as_list(record["images"]),
            "problem": record["problem"],
            "answer": answer,
            "answer_type": answer_type,
            "choices": [],
            "meta": {
                "split": ctx.split,
                "options": list(record.get("choices") or []),
                "ground_truth": record.get("ground_truth"),
            },
        }
