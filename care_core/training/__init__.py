"""RL update machinery: the PPO loop, AdamW/schedule, checkpoints,
and the DeepSpeed ZeRO runner."""

from care_core.training.checkpoint import ResumePoint, commit_round, find_resume
from care_core.training.optim import build_optimizer, build_scheduler, steps_per_round
from care_core.training.ppo import PlainBackend, PPOSettings, TrainRow, train_on_rows

__all__ = [
    "PPOSettings",
    "PlainBackend",
    "ResumePoint",
    "TrainRow",
    "build_optimizer",
    "build_scheduler",
    "commit_round",
    "find_resume",
    "steps_per_round",
    "train_on_rows",
]
