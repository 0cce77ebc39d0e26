"""Data lineage: a content fingerprint of the ingested sources (``fingerprint.json`` beside the manifest).

Per source: its local data files (name relative to the source path, size, sha256), the number of
valid rows it yielded and a sha256 over those rows' content (ids, texts, answers, image pixel hashes)
in order, so a generated or hub source is covered as well as a local one. The overall ``digest`` is a
sha256 over the per-source entries without their locations: the same data moved to another folder or
bucket keeps its digest, one changed row or file changes it. Scheduled retraining compares it with the
champion model version's (``care_core.tracking.registry``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from care_core.storage.s3 import sha256_file

FINGERPRINT_FILE = "fingerprint.json"
_LOCATION_KEYS = ("path", "hub_id")


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


class SourceDigest:
    """Accumulates one source's row count and content hash while ingest streams its rows."""

    def __init__(self, label: str, name: str, split: str, path: str | None, hub_id: str | None,
                 config_name: str | None = None) -> None:  # fmt: skip
        self.label, self.name, self.split = label, name, split
        self.path, self.hub_id, self.config_name = path, hub_id, config_name
        self.rows = 0
        self._hash = hashlib.sha256()

    def add(self, row: Mapping[str, Any], image_hashes: Sequence[str]) -> None:
        """Fold one valid row in (images by their pixel hashes, everything else by value)."""
        self.rows += 1
        content = {k: v for k, v in row.items() if k != "images"}
        self._hash.update(_canonical(content) + b"\x00" + "\x00".join(image_hashes).encode() + b"\n")

    def entry(self) -> dict[str, Any]:
        """The source's fingerprint entry (files listed when the source reads a local path)."""
        return {
            "source": self.label,
            "name": self.name,
            "split": self.split,
            "path": self.path,
            "hub_id": self.hub_id,
            "rows": self.rows,
            "content_sha256": self._hash.hexdigest(),
            "files": source_files(self.path, self.split, self.config_name),
        }


def source_files(path: str | None, split: str, config_name: str | None = None) -> list[dict[str, Any]]:
    """``[{name, size, sha256}]`` of the data files a local source reads (none for hub/generated ones)."""
    if not path or "://" in path:
        return []
    from care_core.data.sources.base import find_files

    root = Path(path)
    try:
        files = find_files(root, split, config_name)
    except FileNotFoundError:
        return []
    out = []
    for file in files:
        name = file.name if root.is_file() else str(file.relative_to(root))
        out.append({"name": name, "size": file.stat().st_size, "sha256": sha256_file(file)})
    return out


def fingerprint(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"digest", "rows", "sources"}`` from the per-source entries; the digest ignores locations."""
    located_free = [{k: v for k, v in e.items() if k not in _LOCATION_KEYS} for e in entries]
    return {
        "digest": hashlib.sha256(_canonical(located_free)).hexdigest(),
        "rows": sum(int(e["rows"]) for e in entries),
        "sources": [dict(e) for e in entries],
    }


def write_fingerprint(out_dir: str | Path, fp: Mapping[str, Any]) -> Path:
    path = Path(out_dir) / FINGERPRINT_FILE
    path.write_text(json.dumps(fp, indent=2, sort_keys=True))
    return path


def read_fingerprint(data_dir: str | Path) -> dict[str, Any]:
    """The fingerprint ingest wrote into ``data_dir``; a clear error when it is missing."""
    path = Path(data_dir) / FINGERPRINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no data fingerprint (written by `care ingest`); re-run ingest")
    return json.loads(path.read_text())


def fingerprint_markdown(fp: Mapping[str, Any]) -> str:
    """A Markdown table of the fingerprint (for the KFP UI and the MLflow run)."""
    lines = [
        f"**data fingerprint** `{fp['digest']}` ({fp['rows']} rows)", "",
        "| source | rows | content sha256 | files |", "|---|---:|---|---|",
    ]  # fmt: skip
    for e in fp["sources"]:
        files = ", ".join(f"{f['name']} ({f['size']} B, {f['sha256'][:12]})" for f in e["files"]) or "—"
        lines.append(f"| {e['source']} | {e['rows']} | `{e['content_sha256'][:16]}` | {files} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "FINGERPRINT_FILE",
    "SourceDigest",
    "fingerprint",
    "fingerprint_markdown",
    "read_fingerprint",
    "source_files",
    "write_fingerprint",
]
