"""A toy estimator registered from outside ``care_core`` (tests/algorithms/test_spec.py uses it).

It is the whole of what a new algorithm needs: one ``AlgorithmSpec`` subclass. Its parameter comes
from the recipe's free-form ``algorithm.params`` (``scale``); it needs no embeddings, adds no RGR
rows, weighs only the answer span (``RegionConfig(tau_pos=0)``), and reports one diagnostic.
"""

from __future__ import annotations

from typing import Any

import torch

from care_core.algorithms import (
    AdvantageResult,
    AlgorithmSpec,
    GroupBatch,
    group_advantages,
    register_algorithm,
)
from care_core.config import RegionConfig


@register_algorithm
class ToySpec(AlgorithmSpec):
    """A = scale * (accuracy - group mean accuracy) over the rollouts; RGR rows and padding get 0."""

    name = "toy_centred_accuracy"
    label = "Toy"

    @property
    def scale(self) -> float:
        return float(self.algorithm.params.get("scale", 1.0))

    @property
    def region(self) -> RegionConfig | None:
        return RegionConfig(tau_pos=0.0)

    def advantages(self, batch: GroupBatch) -> AdvantageResult:
        res = group_advantages(batch, None, 0.0)
        members = (batch.valid & ~batch.is_rgr).to(torch.float64)
        mean = (batch.accuracy * members).sum(dim=1, keepdim=True) / members.sum(dim=1, keepdim=True).clamp(
            min=1
        )
        res.advantages = self.scale * (batch.accuracy - mean) * members
        return res

    def diagnostics(self, batch: GroupBatch, result: AdvantageResult) -> dict[str, Any]:
        return {"toy_scale": self.scale, "toy_adv_sum": float(result.advantages.sum())}
