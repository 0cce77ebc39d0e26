"""GRPO and Dr. GRPO sequence advantages (care_method.md §9).

``A_i = (r_i - mean(r)) / (std(r) + eps)`` over the rollouts of one prompt. ``std="unbiased"``
divides by n - 1 (``torch.std``, what EasyR1 and verl use; the project default); ``"population"``
divides by n. A group with a single rollout has std 0 under both conventions. Dr. GRPO drops the
std division. RGR rows are not GRPO members: they get A = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from care_core.algorithms.registry import register_advantage_estimator
from care_core.algorithms.selection import failure_mask, group_kinds, positive_mask
from care_core.algorithms.types import ROLE, AdvantageResult, GroupBatch


@dataclass
class GRPOParams:
    std: str | None = "unbiased"  # unbiased | population | None (Dr. GRPO: no std division)
    eps: float = 1e-6
    positive_rule: str = "accuracy"  # only used to label group kinds


def grpo_advantages(
    rewards: torch.Tensor, valid: torch.Tensor, std: str | None = "unbiased", eps: float = 1e-6
) -> torch.Tensor:
    """Group-normalised advantages.

    Args:
        rewards: [B, N] rewards. valid: [B, N] bool members (padding / RGR rows False).
        std: ``"unbiased"`` (n - 1), ``"population"`` (n) or ``None`` (no division, Dr. GRPO).
    Returns:
        [B, N] advantages, 0 where ``valid`` is False.
    """
    if std not in ("unbiased", "population", None):
        raise ValueError(f"std must be 'unbiased', 'population' or None, got {std!r}")
    w = valid.to(rewards.dtype)
    n = w.sum(dim=1, keepdim=True)
    mean = (rewards * w).sum(dim=1, keepdim=True) / n.clamp(min=1)
    centred = (rewards - mean) * w
    if std is None:
        return centred
    dof = n - 1 if std == "unbiased" else n
    var = (centred**2).sum(dim=1, keepdim=True) / dof.clamp(min=1)
    return centred / (var.sqrt() + eps)


def _estimate(batch: GroupBatch, params: GRPOParams, std: str | None) -> AdvantageResult:
    members = batch.valid & ~batch.is_rgr
    adv = grpo_advantages(batch.reward, members, std=std, eps=params.eps)
    pos = positive_mask(batch.reward, batch.accuracy, members, params.positive_rule)
    fail = failure_mask(batch.reward, batch.accuracy, members, params.positive_rule)
    roles = torch.full_like(batch.replaces, ROLE["none"])
    return AdvantageResult(adv, roles, group_kinds(pos, fail), {"members": members.sum(dim=1)})


@register_advantage_estimator("grpo")
def grpo_estimator(batch: GroupBatch, params: GRPOParams) -> AdvantageResult:
    """GRPO: std-normalised group advantages (``params.std`` picks the std convention)."""
    return _estimate(batch, params, params.std or "unbiased")


@register_advantage_estimator("dr_grpo")
def dr_grpo_estimator(batch: GroupBatch, params: GRPOParams) -> AdvantageResult:
    """Dr. GRPO: mean-centred rewards, no std division."""
    return _estimate(batch, params, None)
