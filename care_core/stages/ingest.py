"""``care ingest``: read the recipe's sources, check, deduplicate, write one Parquet per split.

Outputs in ``out_dir``: ``train.parquet`` and ``test.parquet`` (always), ``sft.parquet`` (when a
source has role ``sft`` or ``both``) and ``manifest.json``. Rules:

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
* Inputs are only read, never written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from care_core.config import Recipe, SourceConfig, recipe_hash
from care_core.data.images import BadRow, checked_image
from care_core.data.sources import LoadSpec, describe_error, get_source
from care_core.schema import SchemaError, validate_example, write_examples

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


def run_ingest(recipe: Recipe, out_dir: str | Path) -> dict[str, Any]:
    """Ingest ``recipe.data.sources`` into ``out_dir``; returns the manifest (also written as JSON)."""
    out = Path(out_dir)
    data = recipe.data
    policy = data.bad_rows
    buckets: dict[str, list[tuple[dict[str, Any], str, str]]] = {s: [] for s in SPLITS}
    manifest: dict[str, Any] = {
        "recipe": recipe.name,
        "recipe_hash": recipe_hash(recipe),
        "bad_rows": policy,
        "dedup": data.dedup,
        "sources": [],
        "rejected": [],
        "duplicates": [],
    }
    for position, src in enumerate(data.sources):
        label = src.name if sum(s.name == src.name for s in data.sources) == 1 else f"{src.name}#{position}"
        entry: dict[str, Any] = {
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
        manifest["sources"].append(entry)
        if src.name == "synthetic":
            results = _synthetic_results(recipe, src)
            entry["read"] = len(results)
            for split, where, row, hashes in results:
                validate_example(row, where)
                entry["valid"] += 1
                for bucket in _destinations(split, src.role):
                    buckets[bucket].append((dict(row), label, problem_key(row["problem"], hashes)))
            continue
        source = get_source(src.name)
        spec = LoadSpec(src.hub_id, src.path, src.split, src.config_name, src.limit, src.image_root)
        logger.info("ingesting %s from %s", label, src.path or src.hub_id or source.hub_id)
        for result in source.iter_results(spec):
            entry["read"] += 1
            if result.error is not None:
                if policy == "error":
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
            row = result.row
            assert row is not None
            validate_example(row, result.ctx.where)
            entry["valid"] += 1
            for bucket in _destinations(result.ctx.split, src.role):
                buckets[bucket].append((dict(row), label, problem_key(row["problem"], result.image_hashes)))

    if data.val_fraction > 0:
        moved = [item for item in buckets["train"] if _in_validation(item[0]["id"], data.val_fraction)]
        buckets["train"] = [item for item in buckets["train"] if not _in_validation(item[0]["id"], data.val_fraction)]
        buckets["test"].extend(moved)
        manifest["moved_to_test"] = len(moved)

    by_label = {entry["source"]: entry for entry in manifest["sources"]}
    kept_rows: dict[str, list[dict[str, Any]]] = {}
    test_keys: dict[str, tuple[str, str]] = {}
    for split in ("test", "train", "sft"):
        seen: dict[str, tuple[str, str]] = {}
        ids: dict[str, str] = {}
        rows = []
        for row, label, key in buckets[split]:
            if data.dedup and (key in seen or (split == "train" and key in test_keys)):
                first_id, first_label = seen.get(key) or test_keys[key]
                reason = "duplicate" if key in seen else "in_test"
                manifest["duplicates"].append(
                    {"split": split, "source": label, "id": row["id"], "duplicate_of": first_id,
                     "duplicate_of_source": first_label, "reason": reason}
                )  # fmt: skip
                by_label[label]["duplicates"] += 1
                continue
            if row["id"] in ids:
                raise SchemaError(
                    f"{split}: id {row['id']!r} occurs in sources {ids[row['id']]} and {label} with different "
                    "content; give the sources distinct splits or remove one"
                )
            ids[row["id"]] = label
            seen[key] = (row["id"], label)
            rows.append(row)
            by_label[label]["kept"][split] = by_label[label]["kept"].get(split, 0) + 1
        kept_rows[split] = rows
        if split == "test":
            test_keys = dict(seen)

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    has_sft = any(src.role in ("sft", "both") for src in data.sources)
    for split in SPLITS:
        if split == "sft" and not has_sft:
            continue
        name = f"{split}.parquet"
        write_examples(kept_rows[split], out / name)
        files[split] = name
    manifest["files"] = files
    manifest["counts"] = {split: len(kept_rows[split]) for split in files}
    manifest["n_rejected"] = len(manifest["rejected"])
    manifest["n_duplicates"] = len(manifest["duplicates"])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    logger.info("ingest wrote %s to %s", manifest["counts"], out)
    return manifest


__all__ = ["BadRow", "problem_key", "run_ingest"]
