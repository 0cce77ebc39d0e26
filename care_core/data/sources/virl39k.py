"""ViRL39K (RL): ``TIGER-Lab/ViRL39K``, split ``train`` (one file, ``39Krelease.parquet``).

Native fields: ``question`` (with ``<image>`` marks), ``answer`` (always ``\\boxed{…}``),
``image`` (list of paths relative to the repo, images shipped as ``images.zip``; unzip next to the
Parquet), ``category``, ``source``, ``qid``, ``PassRate_32BTrained``, ``PassRate_7BTrained``.
Re-uploads with ``problem`` / ``images`` (image structs) are read too.
"""

from __future__ import annotations

from typing import Any

from care_core.data.sources.base import RowContext, Source, as_list, infer_answer_type, row_id, unbox

PASS_RATE_KEYS = ("PassRate_32BTrained", "PassRate_7BTrained")


class ViRL39K(Source):
    name = "virl39k"
    hub_id = "TIGER-Lab/ViRL39K"
    default_split = "train"

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        problem = record.get("question", record.get("problem"))
        if problem is None:
            raise KeyError("question")
        answer = unbox(str(record.get("answer") or ""))
        answer_type, choices = infer_answer_type(answer, problem)
        images = as_list(record.get("image", record.get("images")))
        meta = {"category": record.get("category"), "source": record.get("source"), "split": ctx.split}
        meta.update({k: record[k] for k in PASS_RATE_KEYS if k in record})
        return {
            "id": row_id(self.name, record.get("qid", record.get("id")), ctx),
            "images": images,
            "problem": problem,
            "answer": answer,
            "answer_type": answer_type,
            "choices": choices,
            "meta": meta,
        }
