"""One spec per algorithm, registered by name (the way ``care_core.data.sources`` maps names to
adapter classes).

An ``AlgorithmSpec`` subclass is built from the recipe's ``algorithm`` section and holds:

* its parameters: the recipe section itself (``self.algorithm.care``, ``self.algorithm.grpo``,
  or the free-form ``algorithm.params`` for estimators registered outside this package), never a
  renamed copy;
* what the pipeline must do for it: ``needs_embeddings`` (think-span embeddings in the rollout),
  ``uses_rgr`` (RGR rows), ``region`` / ``uses_region_weights`` (token weighting in the update);
* its advantages (``advantages(batch)``) and its diagnostics (``diagnostics(batch, result)``).

Stages ask the spec (``algorithm_spec(recipe.algorithm)``) and never compare algorithm names, so a
new estimator is one module with a ``@register_algorithm`` class (see tests/algorithms/test_spec.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from care_core.algorithms.types import AdvantageResult, GroupBatch

if TYPE_CHECKING:  # the recipe dataclasses (type hints only)
    from care_core.config import AlgorithmConfig, RegionConfig


class AlgorithmSpec:
    """Base class of a registered algorithm; subclasses set ``name`` and override ``advantages``."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # display name in reports (defaults to ``name``)
    needs_embeddings: ClassVar[bool] = False

    def __init__(self, algorithm: AlgorithmConfig) -> None:
        self.algorithm = algorithm

    @property
    def uses_rgr(self) -> bool:
        """The rollout stage adds Reflection-Guided Resampling rows."""
        return False

    @property
    def region(self) -> RegionConfig | None:
        """Region-weighting settings for the update, or None: the sequence advantage is broadcast."""
        return None

    @property
    def uses_region_weights(self) -> bool:
        return self.region is not None

    @property
    def positive_rule(self) -> str:
        """Which rows count as successes when labelling group kinds (``selection.POSITIVE_RULES``)."""
        return "accuracy"

    @property
    def logprob_norm(self) -> str:
        """How a row's sequence log-prob is formed from its token log-probs (``sum`` | ``mean``)."""
        return "sum"

    def advantages(self, batch: GroupBatch) -> AdvantageResult:
        raise NotImplementedError(f"algorithm {self.name!r} does not compute advantages")

    def diagnostics(self, batch: GroupBatch, result: AdvantageResult) -> dict[str, Any]:
        """Estimator-specific diagnostics (JSON-safe) added to the advantage stage's common ones."""
        return {}


ALGORITHMS: dict[str, type[AlgorithmSpec]] = {}


def register_algorithm(cls: type[AlgorithmSpec]) -> type[AlgorithmSpec]:
    """Class decorator: register ``cls`` under ``cls.name``; a taken or empty name raises ``ValueError``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in ALGORITHMS:
        raise ValueError(
            f"algorithm {cls.name!r} is already registered (by {ALGORITHMS[cls.name].__qualname__})"
        )
    ALGORITHMS[cls.name] = cls
    return cls


def get_algorithm(name: str) -> type[AlgorithmSpec]:
    """The spec class for ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}") from None


def algorithm_spec(algorithm: AlgorithmConfig) -> AlgorithmSpec:
    """The spec of the recipe's ``algorithm`` section (``algorithm.name`` picks the class)."""
    return get_algorithm(algorithm.name)(algorithm)


def list_algorithms() -> list[str]:
    return sorted(ALGORITHMS)


def algorithm_label(name: str) -> str:
    """Display name of a registered algorithm (the name itself when unknown or unlabelled)."""
    cls = ALGORITHMS.get(name)
    return (cls.label or cls.name) if cls else name


def json_float(x: float | torch.Tensor) -> float | None:
    """JSON-safe float for diagnostics (NaN / inf -> None)."""
    v = float(x)
    return v if math.isfinite(v) else None
