"""Round checkpoints of ``care train``: immutable round folders, a ``latest`` pointer, RNG states.

Layout under the run folder::

    latest                      text: "rounds/round_0002" (written atomically, last)
    rounds/round_0002/
        policy/                 HF model + processor; policy/trainer_state/optim.pt (AdamW, LR schedule)
        rollouts.parquet, advantages.parquet
        state.json              round, global step, paths, metrics, MLflow run id
        rng.pt                  python / numpy / torch RNG states at the end of the round
        manifest.json           SHA-256 and size of every other file (written last)

Crash safety (docs/reliability.md): a round is built in ``round_XXXX.tmp``, its manifest written and
everything flushed to disk, then renamed in. Rewriting an existing round moves the old folder to
``round_XXXX.prev`` first and deletes it only after the new one is in place and ``latest`` points at
it, so at every instant one complete copy exists. Resume follows ``latest`` (which must stay inside
``rounds/``), verifies the round against its manifest, and falls back, with a warning, to the newest
complete verified round at or before it when the round is missing or corrupt.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from care_core.errors import CareError
from care_core.fsio import fsync_dir, fsync_tree, sha256_file, write_text_atomic

logger = logging.getLogger(__name__)

LATEST = "latest"
ROUNDS = "rounds"
MANIFEST = "manifest.json"
PREV = ".prev"
_ROUND_RE = re.compile(r"^round_(\d{4,})(\.prev)?$")


class CheckpointError(CareError, RuntimeError):
    """A checkpoint that cannot be used safely; the message names the file and what to do."""

    default_hint = (
        "start the run again with --set train.resume=never (the run folder's checkpoints cannot be used)"
    )


def round_name(round_index: int) -> str:
    return f"round_{round_index:04d}"


def work_dir(run_dir: Path, round_index: int) -> Path:
    """Temporary folder a round is built in (renamed by ``commit_round``)."""
    return run_dir / ROUNDS / (round_name(round_index) + ".tmp")


def capture_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def write_manifest(round_dir: Path) -> dict[str, dict[str, Any]]:
    """Write ``manifest.json``: SHA-256 and size of every other file of the round."""
    files = {}
    for path in sorted(p for p in round_dir.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[str(path.relative_to(round_dir))] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    write_text_atomic(round_dir / MANIFEST, json.dumps({"files": files}, indent=1))
    return files


def verify_round(round_dir: Path) -> str | None:
    """None when ``round_dir`` is complete and matches its manifest, else what is wrong.

    A round without a manifest (written before manifests existed) passes when its state.json reads."""
    state = round_dir / "state.json"
    if not round_dir.is_dir():
        return f"{round_dir} does not exist"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as exc:
        return f"{state} is missing or unreadable ({exc})"
    manifest = round_dir / MANIFEST
    if not manifest.is_file():
        logger.warning("%s has no %s (written by an older version): not verified", round_dir, MANIFEST)
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        return f"{manifest} is unreadable ({exc})"
    for rel, meta in files.items():
        path = round_dir / rel
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
            return f"{path} does not match its checksum in {manifest}"
    return None


def commit_round(run_dir: Path, round_index: int, state: dict[str, Any]) -> Path:
    """Finish round ``round_index``: write state + RNG + manifest into its work folder, flush it,
    rename it to its final name and move the ``latest`` pointer to it. Returns the final folder."""
    src = work_dir(run_dir, round_index)
    (src / "state.json").write_text(json.dumps(state, indent=1, default=float))
    torch.save(capture_rng(), src / "rng.pt")
    write_manifest(src)
    fsync_tree(src)
    rounds = run_dir / ROUNDS
    dst = rounds / round_name(round_index)
    prev = rounds / (round_name(round_index) + PREV)
    if dst.exists():
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(dst, prev)  # the old copy stays complete until the new one is in place
    os.replace(src, dst)
    fsync_dir(rounds)
    write_text_atomic(run_dir / LATEST, f"{ROUNDS}/{round_name(round_index)}\n")
    shutil.rmtree(prev, ignore_errors=True)
    return dst


@dataclass
class ResumePoint:
    """Where a resumed run continues: the last finished round's folder and state."""

    round_dir: Path
    state: dict[str, Any]

    @property
    def round_index(self) -> int:
        return int(self.state["round"])

    @property
    def policy_dir(self) -> Path:
        return self.round_dir / "policy"


def _round_index(path: Path) -> int | None:
    match = _ROUND_RE.match(path.name)
    return int(match.group(1)) if match else None


def _pointer_target(run_dir: Path) -> Path | None:
    """The round folder ``latest`` names; refuses one outside ``run_dir/rounds``."""
    pointer = run_dir / LATEST
    if not pointer.is_file():
        return None
    text = pointer.read_text().strip()
    rounds = (run_dir / ROUNDS).resolve()
    target = (run_dir / text).resolve()
    if target.parent != rounds or _round_index(target) is None:
        raise CheckpointError(
            f"{pointer} holds {text!r}, which is not a round folder inside {rounds}; refusing to "
            "follow it (fix or delete the file, or set train.resume=never)"
        )
    return run_dir / ROUNDS / target.name


def _fallback(run_dir: Path, at_most: int | None, reason: str) -> Path | None:
    """The newest complete, verified round (final folders before ``.prev`` copies) at or before ``at_most``."""
    rounds = run_dir / ROUNDS
    candidates = (
        [p for p in rounds.iterdir() if p.is_dir() and _round_index(p) is not None] if rounds.is_dir() else []
    )
    candidates = [p for p in candidates if at_most is None or _round_index(p) <= at_most]
    candidates.sort(key=lambda p: (_round_index(p), not p.name.endswith(PREV)), reverse=True)
    for cand in candidates:
        problem = verify_round(cand)
        if problem is None:
            logger.warning(
                "checkpoint fallback: %s; resuming from the newest complete verified round %s", reason, cand
            )
            return cand
        logger.warning("checkpoint %s skipped: %s", cand, problem)
    return None


def _clean_stale(run_dir: Path) -> None:
    """Remove killed ``.tmp`` work folders and ``.prev`` copies whose new round is complete."""
    rounds = run_dir / ROUNDS
    if not rounds.is_dir():
        return
    for stale in rounds.glob("*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    for prev in rounds.glob("*" + PREV):
        final = prev.with_name(prev.name[: -len(PREV)])
        if verify_round(final) is None:
            shutil.rmtree(prev, ignore_errors=True)


def find_resume(run_dir: Path, resume: str) -> ResumePoint | None:
    """``auto``: the ``latest`` round of ``run_dir`` (None when there is none), verified against its
    manifest, else the newest complete verified round at or before it (with a warning); ``never``:
    None; anything else: that round folder, which must verify. Stale ``.tmp`` folders are removed."""
    if resume == "never":
        return None
    if resume == "auto":
        target = _pointer_target(run_dir)
        _clean_stale(run_dir)
        if target is None:
            round_dir = (
                _fallback(run_dir, None, f"{run_dir / LATEST} is missing")
                if (run_dir / ROUNDS).is_dir()
                else None
            )
            if round_dir is None:
                return None
        else:
            problem = verify_round(target)
            round_dir = target if problem is None else _fallback(run_dir, _round_index(target), problem)
            if round_dir is None:
                raise CheckpointError(
                    f"{run_dir}: {problem}, and no earlier round is complete and verified; "
                    "set train.resume=never to start over"
                )
    else:
        round_dir = Path(resume)
        if not (round_dir / "state.json").is_file():
            raise FileNotFoundError(
                f"train.resume={resume!r}: {round_dir / 'state.json'} does not exist "
                "(incomplete or missing checkpoint)"
            )
        problem = verify_round(round_dir)
        if problem is not None:
            raise CheckpointError(f"train.resume={resume!r}: {problem}")
    return ResumePoint(round_dir, json.loads((round_dir / "state.json").read_text()))


def load_rng(round_dir: Path) -> None:
    """Restore the RNG states saved with a round (no-op if absent)."""
    path = round_dir / "rng.pt"
    if path.is_file():
        restore_rng(torch.load(path, weights_only=False))
