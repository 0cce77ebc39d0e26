"""Recipe fingerprints of the artifacts ``care train`` caches in its run folder (docs/reliability.md).

Each cached artifact records the part of the recipe it was built from:

- ``data/`` (ingested or synthetic data): ``data.*`` and the synthetic image size;
- ``sft/`` (the cold-start checkpoint): the data part plus ``model.*`` (not ``cache_dir``),
  ``train.sft.*`` and ``train.seed``;
- each round checkpoint: the whole recipe except what cannot change a weight (names, tracking,
  storage, evaluation, Kubernetes, retraining, ``train.resume/output_dir/eval_every``,
  ``model.cache_dir``).

``check`` compares the stored fingerprint with the recipe's: a match is reused; a mismatch (or an
artifact without a fingerprint) is rebuilt under ``train.resume=never`` and refused otherwise with a
``StaleArtifactError`` naming the keys that differ, unless ``force`` (``care train --force``) accepts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from care_core.config import Recipe, flatten, recipe_to_dict
from care_core.errors import CareError
from care_core.fsio import write_text_atomic

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "care_fingerprint.json"
ROUND_EXCLUDED = (
    "name",
    "tracking.",
    "storage.",
    "eval.",
    "kubernetes.",
    "retrain.",
    "train.resume",
    "train.output_dir",
    "train.eval_every",
    "model.cache_dir",
)
_SFT_MODEL_EXCLUDED = ("model.cache_dir",)


class StaleArtifactError(CareError, ValueError):
    """A cached artifact built from a different recipe; the message names the folder and the keys."""

    default_hint = "rebuild with --set train.resume=never, or reuse it anyway with care train --force"


def _select(flat: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if any(k == p or k.startswith(p + ".") for p in prefixes)}


def _excluded(key: str, pattern: str) -> bool:
    """``pattern`` ending in ``.`` excludes a whole section, otherwise one exact key."""
    return key.startswith(pattern) if pattern.endswith(".") else key == pattern


def recipe_inputs(recipe: Recipe, kind: str) -> dict[str, Any]:
    """The flattened recipe keys artifact ``kind`` (``data`` | ``sft`` | ``round``) depends on."""
    flat = flatten(recipe_to_dict(recipe))
    if kind == "data":
        return {**_select(flat, ("data",)), "model.tiny.image_size": recipe.model.tiny.image_size}
    if kind == "sft":
        model = {k: v for k, v in _select(flat, ("model",)).items() if k not in _SFT_MODEL_EXCLUDED}
        return {**recipe_inputs(recipe, "data"), **model, **_select(flat, ("train.sft", "train.seed"))}
    if kind == "round":
        return {k: v for k, v in flat.items() if not any(_excluded(k, p) for p in ROUND_EXCLUDED)}
    raise ValueError(f"unknown artifact kind {kind!r}")


def fingerprint(inputs: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of the canonical JSON of ``inputs``."""
    blob = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def record(recipe: Recipe, kind: str) -> dict[str, Any]:
    """What an artifact stores: its kind, fingerprint and the recipe values behind it."""
    inputs = recipe_inputs(recipe, kind)
    return {
        "kind": kind,
        "fingerprint": fingerprint(inputs),
        "inputs": json.loads(json.dumps(inputs, default=str)),
    }


def write(folder: Path, recipe: Recipe, kind: str) -> None:
    """Store ``kind``'s fingerprint in ``folder`` (atomically)."""
    write_text_atomic(
        Path(folder) / FINGERPRINT_FILE, json.dumps(record(recipe, kind), indent=1, sort_keys=True)
    )


def read(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def differences(stored: dict[str, Any] | None, current: dict[str, Any], limit: int = 6) -> str:
    """``key: old -> new`` for the differing keys (or why nothing can be compared)."""
    if not stored or "inputs" not in stored:
        return "it has no recipe fingerprint (built by an older version or another tool)"
    old, new = stored["inputs"], current["inputs"]
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"the recipe changed ({shown}{more})" if keys else "its fingerprint differs"


def check(
    stored: dict[str, Any] | None, recipe: Recipe, kind: str, where: Path, resume: str, force: bool
) -> bool:
    """True to reuse the artifact at ``where``, False to rebuild it; raises ``StaleArtifactError``
    for a mismatch under ``train.resume`` other than ``never`` (unless ``force``)."""
    current = record(recipe, kind)
    if stored is not None and stored.get("fingerprint") == current["fingerprint"]:
        return True
    why = differences(stored, current)
    if resume == "never":
        logger.warning("rebuilding %s: %s", where, why)
        return False
    if force:
        logger.warning("reusing %s although %s (--force)", where, why)
        return True
    raise StaleArtifactError(
        f"{where} was built from a different recipe: {why}. Run with --set train.resume=never to rebuild it, "
        "or with --force to reuse it anyway"
    )
