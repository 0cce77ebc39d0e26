"""AdamW + learning-rate schedule of the RL update, and their on-disk state."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import get_scheduler

STATE_FILE = "optim.pt"


def steps_per_round(prompts_per_round: int, mini_batch_size: int, ppo_epochs: int) -> int:
    """Optimizer steps one update stage takes: ceil(prompts / mini-batch prompts) x epochs."""
    return max(1, math.ceil(prompts_per_round / max(1, mini_batch_size))) * max(1, ppo_epochs)


def build_optimizer(params: Any, optim_cfg: Any) -> torch.optim.Optimizer:
    """AdamW over trainable ``params`` (``optim.lr``, ``weight_decay``, ``betas``)."""
    return torch.optim.AdamW(
        [p for p in params if p.requires_grad],
        lr=optim_cfg.lr,
        weight_decay=optim_cfg.weight_decay,
        betas=tuple(optim_cfg.betas),
    )


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any, total_steps: int) -> Any:
    """``constant`` (with warmup), ``linear`` or ``cosine`` decay over ``total_steps``."""
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[optim_cfg.scheduler]
    return get_scheduler(
        name, optimizer, num_warmup_steps=optim_cfg.warmup_steps, num_training_steps=max(1, total_steps)
    )


def resolve_state_file(state_dir: str | Path | None) -> Path | None:
    """``state_dir`` may be a trainer-state folder or an update output folder holding ``trainer_state/``."""
    if state_dir is None:
        return None
    for cand in (Path(state_dir) / STATE_FILE, Path(state_dir) / "trainer_state" / STATE_FILE):
        if cand.is_file():
            return cand
    return None


def save_optim_state(path: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any, step: int) -> Path:
    """Write optimizer + scheduler state and the global optimizer-step counter atomically."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (STATE_FILE + ".tmp")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": int(step)}, tmp
    )
    tmp.replace(path / STATE_FILE)
    return path / STATE_FILE


def load_optim_state(file: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Restore optimizer + scheduler from ``file``; returns the saved global step."""
    state = torch.load(file, map_location="cpu", weights_only=False)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{file}: optimizer state does not match this model: {exc}") from None
    return int(state["step"])
