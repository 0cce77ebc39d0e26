"""All-negative rescue (docs/method.md §5): pseudo-anchor, pseudo-negatives, pseudo-rewards.

In a group with no positive, the failure with the highest sequence log-prob under pi_old becomes a
pseudo-anchor t; K' = min(K, |F| - 1) pseudo-negatives are picked farthest-first from the other
failures. The first pick is the failure farthest from t; then, with ``seeding="authors"`` (default,
as the reference code does), each next pick maximises its minimum distance to the pseudo-negatives
already picked (t no longer counts); with ``seeding="pseudo_anchor"`` t stays in the picked set, so
distances to t keep counting. Pseudo-rewards are
r'(t) = +delta, r'(j) = -delta / K'. With z-scoring (``normalize=True``, reference) delta cancels:
the advantages equal those of a real anchor with binary rewards (A+ = sqrt(K'), A- = -s/sqrt(K')).
"""

from __future__ import annotations

import torch

from care_core.algorithms.selection import dist_rows, farthest_first

SEEDINGS = ("authors", "pseudo_anchor")


def sequence_logprob(token_logprobs: torch.Tensor, lengths: torch.Tensor, norm: str = "sum") -> torch.Tensor:
    """Per-sequence log-prob from a flat ragged token array.

    Args:
        token_logprobs: [L] float, all sequences' token log-probs concatenated.
        lengths: [R] long, tokens per sequence (sum == L).
        norm: ``"sum"`` (default) or ``"mean"`` (length-normalised; empty sequences give 0).
    Returns:
        [R] float64.
    """
    if norm not in ("sum", "mean"):
        raise ValueError(f"logprob_norm must be 'sum' or 'mean', got {norm!r}")
    lengths = lengths.long()
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
    total = torch.zeros(lengths.numel(), dtype=torch.float64, device=lengths.device)
    total.index_add_(0, owner, token_logprobs.to(torch.float64))
    if norm == "mean":
        total = total / lengths.clamp(min=1).to(torch.float64)
    return total


def select_pseudo_anchor(seq_logprob: torch.Tensor, failure: torch.Tensor) -> torch.Tensor:
    """Failure with the highest sequence log-prob: [B, N], [B, N] bool -> long [B] (-1 if no failure).
    Ties go to the lowest column."""
    score = seq_logprob.to(torch.float64).masked_fill(~failure, float("-inf"))
    t = score.argmax(dim=1)
    return torch.where(failure.any(dim=1), t, torch.full_like(t, -1))


def select_pseudo_negatives(
    dist: torch.Tensor, failure: torch.Tensor, pseudo_anchor: torch.Tensor, K: int, seeding: str = "authors"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-first pseudo-negatives over F minus {t} (see the module docstring for ``seeding``).

    Args: dist [B, N, N]; failure [B, N] bool; pseudo_anchor [B] long (-1: none); K >= 1;
        seeding: ``authors`` | ``pseudo_anchor``.
    Returns: picks long [B, K] (-1 padded), k_prime long [B] = min(K, |F| - 1) (0 without t).
    """
    if seeding not in SEEDINGS:
        raise ValueError(f"rescue seeding must be one of {list(SEEDINGS)}, got {seeding!r}")
    cols = torch.arange(failure.shape[1], device=failure.device)[None, :]
    has = pseudo_anchor >= 0
    pool = failure & has[:, None] & (cols != pseudo_anchor[:, None])
    k_prime = torch.clamp(pool.sum(dim=1), max=K)
    if seeding == "pseudo_anchor":
        return farthest_first(dist, pool, k_prime, K, seed=pseudo_anchor), k_prime
    d_t = dist_rows(dist, pseudo_anchor).to(torch.float64).masked_fill(~pool, float("-inf"))
    first = torch.where(
        pool.any(dim=1), d_t.argmax(dim=1), torch.full_like(pseudo_anchor, -1)
    )  # ties: lowest column
    return farthest_first(dist, pool, k_prime, K, first=first), k_prime


def pseudo_rewards(
    head: torch.Tensor, chosen: torch.Tensor, k_prime: torch.Tensor, delta: float
) -> torch.Tensor:
    """r' = +delta on the pseudo-anchor, -delta / K' on the pseudo-negatives, 0 elsewhere.

    Args: head, chosen: [B, N] bool; k_prime: [B] long. Returns: [B, N] float64.
    """
    neg = -delta / k_prime.clamp(min=1).to(torch.float64)
    out = torch.zeros(head.shape, dtype=torch.float64, device=head.device)
    out = torch.where(chosen, neg[:, None].expand_as(out), out)
    return torch.where(head, torch.full_like(out, delta), out)
