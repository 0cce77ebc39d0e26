"""Vision-R1-cold (SFT): ``Osilly/Vision-R1-cold``, split ``train`` (JSON files, LLaVA/ShareGPT style).

Native records: ``conversations`` (``[{"from": "human", "value": "<image>…question"},
{"from": "gpt", "value": "<think>…</think>… answer"}]``; ``messages`` with ``role``/``content`` is
read too) and ``image`` (a path, or ``images``: a list). The images are not in the repo (they come
from LLaVA-CoT and Mulberry), so set the source's ``image_root`` to the folder holding them.
``solution`` is rebuilt as ``<think>reasoning</think><answer>final answer</answer>``.
"""

from __future__ import annotations

import re
from typing import Any

from care_core.data.images import BadRow
from care_core.data.sources.base import RowContext, Source, as_list, infer_answer_type, row_id
from care_core.rewards.extraction import extract_answer

_CONCLUSION_RE = re.compile(r"</?CONCLUSION>", re.IGNORECASE)


def _turns(record: dict[str, Any]) -> list[tuple[str, str]]:
    turns = record.get("conversations", record.get("messages"))
    if not isinstance(turns, list) or not turns:
        raise KeyError("conversations")
    out = []
    for turn in turns:
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        out.append(
            (
                "user"
                if role in ("human", "user")
                else "assistant"
                if role in ("gpt", "assistant")
                else role,
                text,
            )
        )
    return out


class VisionR1Cold(Source):
    name = "vision_r1_cold"
    hub_id = "Osilly/Vision-R1-cold"
    default_split = "train"
    default_role = "sft"

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        turns = _turns(record)
        question = next((t for r, t in turns if r == "user"), None)
        reply = next((t for r, t in reversed(turns) if r == "assistant"), None)
        if not question:
            raise BadRow("conversations", "no human turn")
        if not reply:
            raise BadRow("conversations", "no gpt turn")
        reply = _CONCLUSION_RE.sub("", reply)
        if "</think>" in reply:
            think = reply.split("</think>", 1)[0].replace("<think>", "").strip()
            final = reply.split("</think>", 1)[1]
        else:
            think, final = reply.strip(), reply
        answer = extract_answer(final, "last_line") or ""
        answer_type, choices = infer_answer_type(answer, question)
        return {
            "id": row_id(self.name, record.get("id"), ctx),
            "images": as_list(record.get("image", record.get("images"))),
            "problem": question,
            "answer": answer,
            "answer_type": answer_type,
            "choices": choices,
            "solution": f"<think>{think}</think><answer>{answer}</answer>",
            "meta": {"split": ctx.split},
        }
