"""MMMU: ``MMMU/MMMU``, split ``validation`` (900 items over 30 subject configs).

Native fields: ``id`` (``validation_<Subject>_<n>``), ``question`` (with ``<image N>`` marks),
``options`` (a Python-literal list as a string), ``explanation``, ``image_1`` … ``image_7``,
``img_type``, ``answer`` (a letter, or the open answer), ``topic_difficulty``, ``question_type``
(``multiple-choice``/``open``), ``subfield``. ``problem`` is the raw question (the prompt's option
layout is added at evaluation, ``care_core.evaluation.prompts``). With no ``config_name`` every subject is read (hub:
the 30 configs; local: every subject folder). Images are ordered by their first ``<image N>``
mark; when the marks cannot be matched one-to-one they become ``[image N]`` text and the images
go first.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from care_core.data.images import BadRow
from care_core.data.sources.base import RowContext, Source, infer_answer_type, row_id
from care_core.rewards.benchmarks import MMMU_DISCIPLINES

SUBJECTS = tuple(s for subjects in MMMU_DISCIPLINES.values() for s in subjects)
_MARK_RE = re.compile(r"<image (\d+)>")


def parse_options(value: Any) -> list[str]:
    """MMMU stores options as the string form of a Python list."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        raise BadRow("options", f"not a list literal: {str(value)[:80]!r}") from None
    if not isinstance(parsed, list):
        raise BadRow("options", "not a list")
    return [str(v) for v in parsed]


def place_images(text: str, record: dict[str, Any]) -> tuple[str, list[Any]]:
    """Replace ``<image N>`` marks by ``<image>`` and order the images to match (see module doc)."""
    available = {n: record.get(f"image_{n}") for n in range(1, 8) if record.get(f"image_{n}") is not None}
    marks = [int(m) for m in _MARK_RE.findall(text)]
    if marks and len(marks) == len(set(marks)) and set(marks) == set(available):
        return _MARK_RE.sub("<image>", text), [available[n] for n in marks]
    return _MARK_RE.sub(lambda m: f"[image {m.group(1)}]", text), [available[n] for n in sorted(available)]


def mmmu_row(source: Source, record: dict[str, Any], ctx: RowContext, subject: str | None) -> dict[str, Any]:
    options = parse_options(record.get("options"))
    answer = str(record.get("answer") or "").strip()
    multiple = record.get("question_type", "multiple-choice") == "multiple-choice" and options
    # the raw question: the benchmark's option layout is added by care_core.evaluation.prompts
    problem, images = place_images(str(record["question"]), record)
    if multiple:
        answer_type = "choice"
    else:
        answer_type, _ = infer_answer_type(answer)
        options = []
    meta = {
        "subject": subject,
        **{
            k: record.get(k)
            for k in ("subfield", "img_type", "topic_difficulty", "question_type")
            if k in record
        },
    }
    return {
        "id": row_id(source.name, record.get("id"), ctx),
        "images": images,
        "problem": problem,
        "answer": answer,
        "answer_type": answer_type,
        "choices": options,
        "meta": meta,
    }


def subject_from_id(native_id: str) -> str | None:
    parts = str(native_id).split("_")
    return "_".join(parts[1:-1]) if len(parts) > 2 else None


class MMMU(Source):
    name = "mmmu"
    hub_id = "MMMU/MMMU"
    default_split = "validation"
    required_columns = ("question", "options", "answer", "question_type")

    def hub_configs(self, config_name: str | None) -> list[str | None]:
        return [config_name] if config_name else list(SUBJECTS)

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        return mmmu_row(self, record, ctx, subject_from_id(record.get("id", "")) or ctx.config_name)
