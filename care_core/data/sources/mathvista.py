"""MathVista: ``AI4Math/MathVista``, split ``testmini`` (1000 items; ``test`` has no public answers).

Native fields: ``pid``, ``question``, ``image`` (path), ``decoded_image`` (image), ``choices``
(list or null), ``unit``, ``precision`` (decimals, float or null), ``answer``, ``question_type``
(``multi_choice``/``free_form``), ``answer_type`` (``integer``/``float``/``text``/``list``),
``metadata`` (``task``, ``skills``, ``category``, ``source``, ``context``, ``grade``, ``language``, ...)
and ``query`` (the benchmark's prompt with hint and options, used as ``problem``).
Multiple choice rows store the letter of the answer among ``choices``.
"""

from __future__ import annotations

from typing import Any

from care_core.data.images import BadRow
from care_core.data.sources.base import RowContext, Source, render_choices, row_id
from care_core.rewards.verifiers import LETTERS

_TYPES = {"integer": "integer", "float": "float", "text": "text", "list": "text"}


class MathVista(Source):
    name = "mathvista"
    hub_id = "AI4Math/MathVista"
    default_split = "testmini"
    required_columns = ("question", "answer", "question_type", "answer_type")

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        choices = [str(c) for c in (record.get("choices") or [])]
        answer = str(record.get("answer") if record.get("answer") is not None else "")
        question_type = record.get("question_type", "multi_choice" if choices else "free_form")
        native_type = record.get("answer_type") or "text"
        if question_type == "multi_choice":
            if answer not in choices:
                raise BadRow(
                    "answer", f"multiple-choice answer {answer!r} is not among the choices {choices}"
                )
            row_answer, answer_type = LETTERS[choices.index(answer)], "choice"
        else:
            if native_type not in _TYPES:
                raise BadRow("answer_type", f"unknown answer type {native_type!r}")
            row_answer, answer_type, choices = answer, _TYPES[native_type], []
        image = record.get("decoded_image") or record.get("image")
        problem = record.get("query") or (
            render_choices(record["question"], choices) if choices else record["question"]
        )
        metadata = record.get("metadata") or {}
        meta = {
            "pid": record.get("pid"),
            "question_type": question_type,
            "native_answer_type": native_type,
            "precision": record.get("precision"),
            "unit": record.get("unit"),
            "answer_text": answer,
            **{
                k: metadata.get(k)
                for k in ("task", "skills", "category", "source", "context", "grade", "language")
            },
        }
        return {
            "id": row_id(self.name, record.get("pid"), ctx),
            "images": [image],
            "problem": problem,
            "answer": row_answer,
            "answer_type": answer_type,
            "choices": choices,
            "meta": meta,
        }
