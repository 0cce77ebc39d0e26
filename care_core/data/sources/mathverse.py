"""MathVerse: ``AI4Math/MathVerse``, config ``testmini``, split ``testmini`` (5 versions x 788 = 3940).

Native fields: ``sample_index``, ``problem_index``, ``problem_version`` (Text Dominant, Text Lite,
Vision Intensive, Vision Dominant, Vision Only), ``question`` (options inline as ``A:…``),
``image``, ``answer`` (a letter for multi-choice), ``question_type`` (``multi-choice``/``free-form``),
``metadata`` (``split``, ``source``, ``subject``, ``subfield``), ``query_wo``, ``query_cot``,
``question_for_eval``. ``problem`` is the published prompt ``query_cot`` (else ``query_wo``, else
``question``); multi-choice options are parsed from the question text (Vision Only: from
``question_for_eval``) and kept for scoring only: the prompt never lists them again.
"""

from __future__ import annotations

from typing import Any

from care_core.data.images import BadRow
from care_core.data.sources.base import RowContext, Source, infer_answer_type, parse_inline_choices, row_id


class MathVerse(Source):
    name = "mathverse"
    hub_id = "AI4Math/MathVerse"
    default_split = "testmini"
    default_config = "testmini"

    def local_config(self, config_name: str | None) -> str | None:
        return config_name  # the published files are not under a folder named after the config

    required_columns = ("question", "answer", "question_type", "problem_version")

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        question = str(record.get("question") or "")
        problem = next(
            (str(record[k]) for k in ("query_cot", "query_wo") if str(record.get(k) or "").strip()), question
        )
        answer = str(record.get("answer") or "").strip()
        if record.get("question_type") == "multi-choice":
            choices = parse_inline_choices(question) or parse_inline_choices(
                str(record.get("question_for_eval") or record.get("query_wo") or "")
            )
            if not choices:
                raise BadRow("question", "multi-choice item whose options cannot be parsed")
            answer_type = "choice"
        else:
            answer_type, choices = infer_answer_type(answer)
        metadata = record.get("metadata") or {}
        meta = {
            "problem_index": record.get("problem_index"),
            "problem_version": record.get("problem_version"),
            "question_type": record.get("question_type"),
            **{k: metadata.get(k) for k in ("subject", "subfield", "source")},
        }
        return {
            "id": row_id(self.name, record.get("sample_index"), ctx),
            "images": [record.get("image")],
            "problem": problem,
            "answer": answer,
            "answer_type": answer_type,
            "choices": choices,
            "meta": meta,
        }
