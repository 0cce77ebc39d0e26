"""Shared data types of the advantage estimators: a padded batch of groups and the result.

A *group* is every row sampled for one prompt (G rollouts plus any RGR rows). Groups are padded to
``N`` columns; ``valid`` marks real rows. Columns are ordered rollouts first (by ``sample_index``),
then RGR rows, so "lowest index" tie-breaks mean "lowest ``sample_index``".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ROLE_NAMES: tuple[str, ...] = (
    "anchor",
    "negative",
    "rgr_positive",
    "rgr_negative",
    "pseudo_anchor",
    "pseudo_negative",
    "none",
)
"""Role vocabulary (docs/interfaces.md §2); estimators return indices into this tuple."""
ROLE = {name: code for code, name in enumerate(ROLE_NAMES)}

GROUP_KIND_NAMES: tuple[str, ...] = ("mixed", "all_correct", "all_wrong")
"""Group-kind vocabulary (docs/interfaces.md §2)."""
GROUP_KIND = {name: code for code, name in enumerate(GROUP_KIND_NAMES)}


@dataclass
class GroupBatch:
    """B groups padded to N rows each (D: embedding size, float64 recommended for exact ties).

    Attributes:
        reward: [B, N] float, verifier reward r.
        accuracy: [B, N] float, verifier accuracy in [0, 1].
        valid: [B, N] bool, real (non-padding) rows.
        is_rgr: [B, N] bool, RGR rows (``source == 'rgr'``).
        replaces: [B, N] long, for RGR rows the *column* of the negative it repairs, else -1.
        think_len: [B, N] long, think-span length in tokens (anchor ranking).
        answer_len: [B, N] long, answer-span length in tokens (anchor tie-break).
        seq_logprob: [B, N] float, sequence log-prob under pi_old (rescue pseudo-anchor score).
        embeddings: [B, N, D] float or None (CARE needs it; GRPO does not).
    """

    reward: torch.Tensor
    accuracy: torch.Tensor
    valid: torch.Tensor
    is_rgr: torch.Tensor | None = None
    replaces: torch.Tensor | None = None
    think_len: torch.Tensor | None = None
    answer_len: torch.Tensor | None = None
    seq_logprob: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None

    def __post_init__(self) -> None:
        shape = self.reward.shape
        if self.reward.dim() != 2:
            raise ValueError(f"reward must be [B, N], got shape {tuple(shape)}")
        if self.is_rgr is None:
            self.is_rgr = torch.zeros(shape, dtype=torch.bool, device=self.reward.device)
        if self.replaces is None:
            self.replaces = torch.full(shape, -1, dtype=torch.long, device=self.reward.device)
        zeros = torch.zeros(shape, dtype=torch.long, device=self.reward.device)
        if self.think_len is None:
            self.think_len = zeros
        if self.answer_len is None:
            self.answer_len = zeros
        if self.seq_logprob is None:
            self.seq_logprob = torch.zeros(shape, dtype=self.reward.dtype, device=self.reward.device)
        for name in ("accuracy", "valid", "is_rgr", "replaces", "think_len", "answer_len", "seq_logprob"):
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"{name} has shape {tuple(getattr(self, name).shape)}, expected {tuple(shape)}"
                )
        if self.embeddings is not None and self.embeddings.shape[:2] != shape:
            raise ValueError(
                f"embeddings has shape {tuple(self.embeddings.shape)}, expected {tuple(shape)} + (D,)"
            )

    @property
    def num_groups(self) -> int:
        return int(self.reward.shape[0])


@dataclass
class AdvantageResult:
    """Estimator output.

    Attributes:
        advantages: [B, N] float, sequence advantage A (0 on padding).
        roles: [B, N] long, index into ``ROLE_NAMES``.
        group_kind: [B] long, index into ``GROUP_KIND_NAMES``.
        stats: per-group / per-row tensors for diagnostics (estimator specific), e.g.
            ``k_prime`` [B], ``neg_distance`` [B] (mean cosine distance of chosen negatives, NaN if none),
            ``anchor`` [B] (column, -1 if none), ``rescued`` [B] bool.
    """

    advantages: torch.Tensor
    roles: torch.Tensor
    group_kind: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
