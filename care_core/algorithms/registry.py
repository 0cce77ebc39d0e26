"""Registry of advantage estimators by name (like verl's ``register_adv_est``).

An estimator is ``fn(batch: GroupBatch, params) -> AdvantageResult`` where ``params`` is that
estimator's small dataclass (``GRPOParams``, ``CareParams``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from care_core.algorithms.types import AdvantageResult, GroupBatch

AdvantageEstimator = Callable[[GroupBatch, Any], AdvantageResult]

_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_advantage_estimator(name: str) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Decorator registering ``fn`` under ``name``; registering a taken name raises ``ValueError``."""

    def decorator(fn: AdvantageEstimator) -> AdvantageEstimator:
        if name in _ESTIMATORS:
            raise ValueError(f"advantage estimator {name!r} is already registered (by {_ESTIMATORS[name].__qualname__})")
        _ESTIMATORS[name] = fn
        return fn

    return decorator


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """Look up an estimator; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {sorted(_ESTIMATORS)}") from None


def list_advantage_estimators() -> list[str]:
    return sorted(_ESTIMATORS)
