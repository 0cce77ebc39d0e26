"""``care ingest``: read the recipe's sources, check, deduplicate, write one Parquet per split.

Outputs in ``out_dir``: ``train.parquet`` and ``test.parquet`` (always), ``sft.parquet`` (when a
source has role ``sft`` or ``both``), ``manifest.json`` and ``fingerprint.json`` (the data lineage:
``care_core.data.fingerprint``). Rules:

* A source's native split goes to ``train`` when it is ``train``, else to ``test``; role ``sft``
  sends rows to ``sft`` instead, role ``both`` to both. ``synthetic`` yields its own ``train`` and
  ``test`` splits (``data.synthetic``); its ``limit`` applies to each.
* ``limit`` counts valid rows of a source (before deduplication).
* ``data.val_fraction`` > 0 moves that fraction of train rows (chosen by a hash of the id) to test.
* Bad rows (missing or undecodable image, empty answer, unknown answer type, ...) follow
  ``data.bad_rows``: ``error`` stops with a ``SchemaError`` naming file, row, id and field;
  ``skip`` drops them and lists each in ``manifest["rejected"]``.
* Deduplication (``data.dedup``) within each output split and across sources: the key is the
  normalised problem text (lower case, single spaces) plus the pixel hashes of the images; the
  first row wins, later ones are listed in ``manifest["duplicates"]``. Train rows equal to a test
  row are dropped from train too (reason ``in_test``).
* Inputs are only read, never written. Rows stream to disk in batches (only dedup keys stay in
  memory), so large sources (Vision-R1-cold: ~200K images) fit.
* Atomic: a failed run leaves ``out_dir`` as it was before (outputs are staged, then moved in).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from care_core.config import Recipe, SourceConfig, recipe_hash
from care_core.data.fingerprint import SourceDigest, fingerprint, write_fingerprint
from care_core.data.images import BadRow, checked_image
from care_core.data.sources import LoadSpec, describe_error, get_source
from care_core.schema import EXAMPLE_SCHEMA, SchemaError, validate_example

logger = logging.getLogger(__name__)

SPLITS = ("train", "test", "sft")


def problem_key(problem: str, image_hashes: list[str]) -> str:
    """Dedup key: normalised problem text + image pixel hashes."""
    text = " ".join(problem.lower().split())
    return hashlib.sha1((text + "\x00" + "\x00".join(image_hashes)).encode()).hexdigest()


def _destinations(split: str, role: str) -> list[str]:
    bucket = "train" if split == "train" else "test"
    if role == "sft":
        return ["sft"]
    if role == "both":
        return [bucket, "sft"]
    if role == "rl":
        return [bucket]
    raise SchemaError(f"data.sources: role {role!r} is not one of ['rl', 'sft', 'both']")


def _in_validation(row_id: str, fraction: float) -> bool:
    digest = int(hashlib.sha1(row_id.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def _synthetic_results(recipe: Recipe, src: SourceConfig) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(split, where, row, image hashes) for the generated suite."""
    from care_core.data.synthetic import generate_rows

    out = []
    for split in ("train", "test"):
        rows = generate_rows(recipe.data.synthetic, split, image_size=recipe.model.tiny.image_size)
        if src.limit is not None:
            rows = rows[: src.limit]
        for index, row in enumerate(rows):
            hashes = []
            for i, image in enumerate(row.get("images") or []):
                struct, digest = checked_image(image, f"images[{i}]")
                row["images"][i] = struct
                hashes.append(digest)
            out.append((split, f"synthetic:{split}: row {index}", row, hashes))
    return out


_PARTIAL_SCHEMA = EXAMPLE_SCHEMA.append(pa.field("_key", pa.string())).append(
    pa.field("_source", pa.string())
)
_BATCH = 256


class _SplitSink:
    """First-wins deduplicating writer of one split: rows go to a partial Parquet file in batches."""

    def __init__(self, split: str, path: Path, dedup: bool) -> None:
        self.split, self.path, self.dedup = split, path, dedup
        self.seen: dict[str, tuple[str, str]] = {}
        self.ids: dict[str, str] = {}
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None

    def offer(self, row: dict[str, Any], label: str, key: str) -> tuple[str, str] | None:
        """Keep ``row`` (None) or return ``(id, source)`` of the row it duplicates."""
        if self.dedup and key in self.seen:
            return self.seen[key]
        if row["id"] in self.ids:
            raise SchemaError(
                f"{self.split}: id {row['id']!r} occurs in sources {self.ids[row['id']]} and {label} with different "
                "content; give the sources distinct splits or remove one"
            )
        self.ids[row["id"]] = label
        self.seen.setdefault(key, (row["id"], label))
        self.buffer.append({**row, "_key": key, "_source": label})
        if len(self.buffer) >= _BATCH:
            self.flush()
        return None

    def flush(self) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, _PARTIAL_SCHEMA)
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=_PARTIAL_SCHEMA))
            self.buffer = []

    def finish(
        self, final: Path, drop_keys: dict[str, tuple[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        """Write the final file (rows whose key is in ``drop_keys`` left out); returns the dropped rows' info."""
        self.flush()
        assert self.writer is not None
        self.writer.close()
        dropped: list[dict[str, Any]] = []
        with pq.ParquetWriter(final, EXAMPLE_SCHEMA) as writer:
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH):
                table = pa.Table.from_batches([batch])
                if drop_keys:
                    keys = table.column("_key").to_pylist()
                    mask = [k not in drop_keys for k in keys]
                    for keep, key, row_id, label in zip(
                        mask,
                        keys,
                        table.column("id").to_pylist(),
                        table.column("_source").to_pylist(),
                        strict=True,
                    ):
                        if not keep:
                            dropped.append({"id": row_id, "source": label, "of": drop_keys[key]})
                    table = table.filter(pa.array(mask, type=pa.bool_()))
                writer.write_table(table.select(EXAMPLE_SCHEMA.names))
        self.path.unlink()
        return dropped

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.path.unlink(missing_ok=True)


def _source_entry(src: SourceConfig, label: str) -> dict[str, Any]:
    return {
        "source": label,
        "name": src.name,
        "role": src.role,
        "split": "train+test" if src.name == "synthetic" else src.split,
        "path": src.path,
        "hub_id": src.hub_id,
        "config_name": src.config_name,
        "limit": src.limit,
        "read": 0,
        "valid": 0,
        "rejected": 0,
        "duplicates": 0,
        "kept": {},
    }


def _rows_of(recipe: Recipe, src: SourceConfig, label: str, entry: dict[str, Any], manifest: dict[str, Any]):
    """(split, row, image hashes) of one source's valid rows; bad rows follow ``data.bad_rows``."""
    if src.name == "synthetic":
        for split, where, row, hashes in _synthetic_results(recipe, src):
            entry["read"] += 1
            validate_example(row, where)
            yield split, row, hashes
        return
    source = get_source(src.name)
    if source.default_role != src.role and source.default_role == "sft":
        logger.warning(
            "source %s is SFT data (cold-start chains of thought) but has role %r", label, src.role
        )
    spec = LoadSpec(src.hub_id, src.path, src.split, src.config_name, src.limit, src.image_root)
    logger.info("ingesting %s from %s", label, src.path or src.hub_id or source.hub_id)
    for result in source.iter_results(spec):
        entry["read"] += 1
        if result.error is not None:
            if recipe.data.bad_rows == "error":
                raise SchemaError(f"{describe_error(result)} [source {label}; data.bad_rows=error]")
            entry["rejected"] += 1
            manifest["rejected"].append(
                {
                    "source": label,
                    "file": result.ctx.file,
                    "row": result.ctx.index,
                    "id": result.native_id,
                    "field": result.error.field,
                    "reason": result.error.reason,
                }
            )
            continue
        assert result.row is not None
        validate_example(result.row, result.ctx.where)
        yield result.ctx.split, result.row, result.image_hashes


STAGING = ".ingest.tmp"
MANIFEST = "manifest.json"


def run_ingest(recipe: Recipe, out_dir: str | Path) -> dict[str, Any]:
    """Ingest ``recipe.data.sources`` into ``out_dir``; returns the manifest (also written as JSON).

    Everything is written to ``out_dir/.ingest.tmp`` first and moved in (``os.replace`` per file,
    ``manifest.json`` last) only when the whole ingest succeeded; outputs of an earlier ingest that
    this one does not produce (``sft.parquet``) are removed then. A failed ingest leaves ``out_dir``
    exactly as it was (a folder it created is removed again)."""
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        manifest = _ingest_into(recipe, staging)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty
        raise
    logger.info("ingest wrote %s to %s", manifest["counts"], out)
    return manifest


def _publish(staging: Path, out: Path) -> None:
    """Move every staged file into ``out`` (data files first, the manifest last); drop stale split files."""
    staged = sorted((p for p in staging.iterdir() if p.is_file()), key=lambda p: (p.name == MANIFEST, p.name))
    names = {p.name for p in staged}
    for path in staged:
        if path.name == MANIFEST:
            for split in SPLITS:  # an earlier ingest's split file this one does not write
                stale = out / f"{split}.parquet"
                if stale.name not in names:
                    stale.unlink(missing_ok=True)
        os.replace(path, out / path.name)
    staging.rmdir()


def _ingest_into(recipe: Recipe, out: Path) -> dict[str, Any]:
    """The ingest itself, writing every output into ``out`` (the staging folder)."""
    data = recipe.data
    for src in data.sources:
        _destinations("train", src.role)  # reject an unknown role before reading anything
    has_sft = any(src.role in ("sft", "both") for src in data.sources)
    splits = [s for s in SPLITS if s != "sft" or has_sft]
    sinks = {s: _SplitSink(s, out / f".{s}.partial.parquet", data.dedup) for s in splits}
    manifest: dict[str, Any] = {
        "recipe": recipe.name,
        "recipe_hash": recipe_hash(recipe),
        "bad_rows": data.bad_rows,
        "dedup": data.dedup,
        "sources": [],
        "rejected": [],
        "duplicates": [],
    }
    moved = 0
    digests: list[SourceDigest] = []  # data lineage (care_core.data.fingerprint)
    try:
        for position, src in enumerate(data.sources):
            label = (
                src.name if sum(s.name == src.name for s in data.sources) == 1 else f"{src.name}#{position}"
            )
            entry = _source_entry(src, label)
            manifest["sources"].append(entry)
            digests.append(
                SourceDigest(label, src.name, entry["split"], src.path, src.hub_id, src.config_name)
            )
            for split, row, hashes in _rows_of(recipe, src, label, entry, manifest):
                entry["valid"] += 1
                digests[-1].add(row, hashes)
                key = problem_key(row["problem"], hashes)
                for bucket in _destinations(split, src.role):
                    if (
                        bucket == "train"
                        and data.val_fraction > 0
                        and _in_validation(row["id"], data.val_fraction)
                    ):
                        bucket = "test"
                        moved += 1
                    first = sinks[bucket].offer(row, label, key)
                    if first is None:
                        entry["kept"][bucket] = entry["kept"].get(bucket, 0) + 1
                        continue
                    entry["duplicates"] += 1
                    manifest["duplicates"].append(
                        {"split": bucket, "source": label, "id": row["id"], "duplicate_of": first[0],
                         "duplicate_of_source": first[1], "reason": "duplicate"}
                    )  # fmt: skip
        by_label = {entry["source"]: entry for entry in manifest["sources"]}
        test_keys = sinks["test"].seen if data.dedup else None
        counts = {}
        for split in splits:
            dropped = sinks[split].finish(out / f"{split}.parquet", test_keys if split == "train" else None)
            for item in dropped:
                by_label[item["source"]]["duplicates"] += 1
                by_label[item["source"]]["kept"]["train"] -= 1
                manifest["duplicates"].append(
                    {"split": "train", "source": item["source"], "id": item["id"], "duplicate_of": item["of"][0],
                     "duplicate_of_source": item["of"][1], "reason": "in_test"}
                )  # fmt: skip
            counts[split] = pq.ParquetFile(out / f"{split}.parquet").metadata.num_rows
    except BaseException:
        for sink in sinks.values():
            sink.discard()
        raise
    for entry in manifest["sources"]:
        entry["kept"] = {k: v for k, v in entry["kept"].items() if v}
    if data.val_fraction > 0:
        manifest["moved_to_test"] = moved
    manifest["files"] = {split: f"{split}.parquet" for split in splits}
    manifest["counts"] = counts
    manifest["n_rejected"] = len(manifest["rejected"])
    manifest["n_duplicates"] = len(manifest["duplicates"])
    # flat numbers for experiment tracking (stage_metrics picks up "metrics")
    manifest["metrics"] = {**{f"rows_{split}": n for split, n in counts.items()},
                           "rejected": manifest["n_rejected"], "duplicates": manifest["n_duplicates"]}  # fmt: skip
    manifest["fingerprint"] = fingerprint([d.entry() for d in digests])
    write_fingerprint(out, manifest["fingerprint"])
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


__all__ = ["BadRow", "problem_key", "run_ingest"]
