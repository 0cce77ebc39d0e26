"""DAPO dynamic sampling (docs/method.md §9): keep only groups with mixed outcomes and refill.

``informative_groups`` flags groups whose accuracies are not all 0 and not all 1. ``fill_batch``
draws batches of groups from a caller's sampler until ``target`` informative groups are collected,
raising ``DynamicSamplingError`` (with the counts) after ``max_tries`` draws.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from care_core.errors import CareError

log = logging.getLogger(__name__)

T = TypeVar("T")


class DynamicSamplingError(CareError, RuntimeError):
    """The batch could not be filled with informative groups within the allowed draws."""

    default_hint = "raise algorithm.dynamic_sampling.max_tries or turn dynamic sampling off"


def informative_groups(accuracy: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Groups that are neither all-correct nor all-wrong.

    Args: accuracy [B, N] in [0, 1]; valid [B, N] bool. Returns bool [B].
    """
    return filter_groups(accuracy, valid)[0]


def filter_groups(accuracy: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, int]]:
    """Keep mask [B] plus counts ``kept``, ``dropped_all_correct``, ``dropped_all_wrong``."""
    all_correct = (~valid | (accuracy >= 1.0)).all(dim=1)
    all_wrong = (~valid | (accuracy <= 0.0)).all(dim=1) & ~all_correct
    keep = ~all_correct & ~all_wrong
    counts = {
        "kept": int(keep.sum()),
        "dropped_all_correct": int(all_correct.sum()),
        "dropped_all_wrong": int(all_wrong.sum()),
    }
    return keep, counts


def fill_batch(
    sample: Callable[[int], Sequence[T]],
    is_informative: Callable[[Sequence[T]], Sequence[bool]],
    target: int,
    max_tries: int,
) -> tuple[list[T], dict[str, int]]:
    """Draw groups until ``target`` informative ones are collected.

    Args:
        sample: ``sample(n)`` returns n freshly sampled groups (any type).
        is_informative: flags for a list of groups (e.g. built on ``filter_groups``).
        target: informative groups wanted. max_tries: at most this many calls to ``sample``.
    Returns:
        (exactly ``target`` groups, counts ``tries``, ``sampled``, ``dropped``).
    Raises:
        DynamicSamplingError: fewer than ``target`` informative groups after ``max_tries`` draws.
    """
    if target < 1 or max_tries < 1:
        raise ValueError(f"target and max_tries must be >= 1, got target={target}, max_tries={max_tries}")
    kept: list[T] = []
    sampled = 0
    for attempt in range(1, max_tries + 1):
        groups = list(sample(target - len(kept)))
        sampled += len(groups)
        flags = list(is_informative(groups))
        kept.extend(g for g, ok in zip(groups, flags, strict=True) if ok)
        log.info("dynamic sampling try %d: %d/%d informative groups", attempt, len(kept), target)
        if len(kept) >= target:
            return kept[:target], {"tries": attempt, "sampled": sampled, "dropped": sampled - len(kept)}
    raise DynamicSamplingError(
        f"dynamic sampling: only {len(kept)} of {target} groups were informative (not all-correct/all-wrong) "
        f"after {max_tries} tries ({sampled} groups sampled); raise algorithm.dynamic_sampling.max_tries "
        "or disable dynamic sampling"
    )
