"""GRPO and Dr. GRPO sequence advantages (docs/method.md §9).

``A_i = (r_i - mean(r)) / (std(r) + eps)`` over the rollouts of one prompt. ``std="unbiased"``
divides by n - 1 (``torch.std``, what EasyR1 and verl use; the project default); ``"population"``
divides by n. A group with a single rollout has std 0 under both conventions. Dr. GRPO drops the
std division. RGR rows are not GRPO members: they get A = 0. The parameters are the recipe's
``algorithm.grpo`` section; group kinds are labelled with the accuracy rule (all accuracies 1:
all-correct, all 0: all-wrong), the same rule DAPO dynamic sampling filters on.
"""

from __future__ import annotations

import torch

from care_core.algorithms.registry import AlgorithmSpec, register_algorithm
from care_core.algorithms.selection import failure_mask, group_kinds, positive_mask
from care_core.algorithms.types import ROLE, AdvantageResult, GroupBatch


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


def group_advantages(
    batch: GroupBatch, std: str | None, eps: float, positive_rule: str = "accuracy"
) -> AdvantageResult:
    """GRPO-style ``AdvantageResult`` of a batch: rollouts are members, RGR rows and padding get 0."""
    members = batch.valid & ~batch.is_rgr
    adv = grpo_advantages(batch.reward, members, std=std, eps=eps)
    pos = positive_mask(batch.reward, batch.accuracy, members, positive_rule)
    fail = failure_mask(batch.reward, batch.accuracy, members, positive_rule)
    roles = torch.full_like(batch.replaces, ROLE["none"])
    return AdvantageResult(adv, roles, group_kinds(pos, fail), {"members": members.sum(dim=1)})


@register_algorithm
class GRPOSpec(AlgorithmSpec):
    """GRPO: std-normalised group advantages (``algorithm.grpo.std`` picks the convention)."""

    name = "grpo"
    label = "GRPO"

    def advantages(self, batch: GroupBatch) -> AdvantageResult:
        return group_advantages(batch, self.algorithm.grpo.std, self.algorithm.grpo.eps, self.positive_rule)


@register_algorithm
class DrGRPOSpec(AlgorithmSpec):
    """Dr. GRPO: mean-centred rewards, no std division."""

    name = "dr_grpo"
    label = "Dr.GRPO"

    def advantages(self, batch: GroupBatch) -> AdvantageResult:
        return group_advantages(batch, None, self.algorithm.grpo.eps, self.positive_rule)
