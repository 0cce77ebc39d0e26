"""Builders for small CARE test groups (shared by tests/algorithms)."""

from __future__ import annotations

import torch

from care_core.algorithms import GroupBatch


def one_group(
    reward: list[float],
    accuracy: list[float] | None = None,
    think: list[int] | None = None,
    answer: list[int] | None = None,
    emb: list[list[float]] | torch.Tensor | None = None,
    logprob: list[float] | None = None,
    is_rgr: list[bool] | None = None,
    replaces: list[int] | None = None,
    seed: int = 0,
) -> GroupBatch:
    """A GroupBatch with B = 1 (lists of length N). Default accuracy: reward >= 0.9 -> 1 else 0."""
    n = len(reward)
    r = torch.tensor([reward], dtype=torch.float64)
    acc = torch.tensor(
        [accuracy if accuracy is not None else [1.0 if x >= 0.9 else 0.0 for x in reward]],
        dtype=torch.float64,
    )
    if emb is None:
        emb = torch.randn(1, n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    else:
        emb = torch.as_tensor(emb, dtype=torch.float64)[None]
    return GroupBatch(
        reward=r,
        accuracy=acc,
        valid=torch.ones(1, n, dtype=torch.bool),
        is_rgr=torch.tensor([is_rgr or [False] * n]),
        replaces=torch.tensor([replaces or [-1] * n]),
        think_len=torch.tensor([think or list(range(10, 10 + n))]),
        answer_len=torch.tensor([answer or [5] * n]),
        seq_logprob=torch.tensor([logprob or [0.0] * n], dtype=torch.float64),
        embeddings=emb,
    )
