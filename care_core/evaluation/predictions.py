"""Append-only JSONL prediction log: one line per scored item, flushed per batch, resumable.

A killed evaluation leaves at most one partial (unterminated) last line; :meth:`PredictionLog.load`
drops it (and truncates the file back to the last complete line) so a restart re-decodes only
that item and the ones never reached.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class PredictionLog:
    """``path``: ``<out_dir>/<benchmark>/predictions.jsonl``. Records must hold a string ``id``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}

    def load(self) -> dict[str, dict[str, Any]]:
        """Read complete records (id -> record); repair a torn last line left by a kill."""
        self.records = {}
        if not self.path.is_file():
            return self.records
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]  # everything up to the last newline
        if len(complete) < len(raw):
            logger.warning("%s: dropping an unterminated last line (interrupted write)", self.path)
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete))
        for line_no, line in enumerate(complete.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: line {line_no} is not valid JSON: {exc}") from None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise ValueError(f"{self.path}: line {line_no}: field 'id' missing or not a string")
            self.records[record["id"]] = record
        return self.records

    def done_ids(self) -> set[str]:
        return set(self.records)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records and fsync, so they survive a kill right after this call."""
        records = list(records)
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        blob = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.records[record["id"]] = record

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the given records (by id) and rewrite the whole file atomically (temp file + rename)."""
        for record in records:
            self.records[record["id"]] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(
                "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in self.records.values())
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
