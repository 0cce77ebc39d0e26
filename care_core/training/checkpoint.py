"""Round checkpoints of ``care train``: immutable round folders, a ``latest`` pointer, RNG states.

Layout under the run folder::

    latest                      text: "rounds/round_0002" (written atomically, last)
    rounds/round_0002/
        policy/                 HF model + processor; policy/trainer_state/optim.pt (AdamW, LR schedule)
        rollouts.parquet, advantages.parquet
        state.json              round, global step, paths, metrics, MLflow run id
        rng.pt                  python / numpy / torch RNG states at the end of the round

A round is built in ``round_XXXX.tmp`` and renamed when complete, so a killed run leaves at most
a ``.tmp`` folder, which resume deletes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"
ROUNDS = "rounds"


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def commit_round(run_dir: Path, round_index: int, state: dict[str, Any]) -> Path:
    """Finish round ``round_index``: write state + RNG into its work folder, rename it to its final
    name and move the ``latest`` pointer to it. Returns the final folder."""
    src = work_dir(run_dir, round_index)
    (src / "state.json").write_text(json.dumps(state, indent=1, default=float))
    torch.save(capture_rng(), src / "rng.pt")
    dst = run_dir / ROUNDS / round_name(round_index)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)
    _atomic_write(run_dir / LATEST, f"{ROUNDS}/{round_name(round_index)}\n")
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


def find_resume(run_dir: Path, resume: str) -> ResumePoint | None:
    """``auto``: the ``latest`` round of ``run_dir`` (None when there is none); ``never``: None;
    anything else: that round folder. Stale ``.tmp`` round folders are removed."""
    if resume == "never":
        return None
    rounds = run_dir / ROUNDS
    if rounds.is_dir():
        for stale in rounds.glob("*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    if resume == "auto":
        pointer = run_dir / LATEST
        if not pointer.is_file():
            return None
        round_dir = run_dir / pointer.read_text().strip()
    else:
        round_dir = Path(resume)
    state_file = round_dir / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"train.resume={resume!r}: {state_file} does not exist (incomplete or missing checkpoint)")
    return ResumePoint(round_dir, json.loads(state_file.read_text()))


def load_rng(round_dir: Path) -> None:
    """Restore the RNG states saved with a round (no-op if absent)."""
    path = round_dir / "rng.pt"
    if path.is_file():
        restore_rng(torch.load(path, weights_only=False))
