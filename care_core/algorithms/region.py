"""Region-weighted token advantages (docs/method.md §7).

Weights: 1 on the answer span, ``tau_pos`` on the think span of positives, 0 on the think span of
negatives, 0 outside the response mask. With an answer span, tokens in neither span (the tags when
spans hold the content only, text between ``</think>`` and ``<answer>``) weigh 0. Without an answer
span (an empty one counts as none), ``no_answer`` decides: ``whole`` (default, the authors' code)
weighs every response token 1, think included; ``outside_think`` keeps the think weight on the think
span and weighs the rest 1. Token advantage a_t = A * w_t / max(sum_u w_u, eps), so each sequence's
token advantages sum to A. With ``enable=False`` the sequence advantage is broadcast to every
response token (GRPO style).

Which sequences get the think weight (``think_weighted``): the anchor and successful RGR rows, and
a row with role ``none`` and A > 0; the rescue pseudo-anchor only with ``pseudo_anchor_think``
(default off: it is not a true positive, so its think span weighs 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from care_core.config import RegionConfig

NO_ANSWER_RULES = ("whole", "outside_think")
THINK_ROLES = ("anchor", "rgr_positive")


def think_weighted(
    roles: Sequence[str], seq_adv: Sequence[float], pseudo_anchor_think: bool = False
) -> torch.Tensor:
    """[B] bool: the sequences whose think span gets ``tau_pos`` (see the module docstring)."""
    roles_on = THINK_ROLES + (("pseudo_anchor",) if pseudo_anchor_think else ())
    return torch.tensor(
        [r in roles_on or (r == "none" and float(a) > 0) for r, a in zip(roles, seq_adv, strict=True)],
        dtype=torch.bool,
    )


def region_weights(
    response_mask: torch.Tensor,
    think_span: torch.Tensor,
    answer_span: torch.Tensor,
    is_positive: torch.Tensor,
    tau_pos: float,
    no_answer: str = "whole",
) -> torch.Tensor:
    """Token weights w.

    Args:
        response_mask: [B, T] (bool or 0/1) response tokens that are trained on.
        think_span, answer_span: [B, 2] long [start, end) token indices, [-1, -1] when absent.
        is_positive: [B] bool (a positive sequence: anchor, successful RGR, pseudo-anchor, A > 0).
        tau_pos: think weight of positives. no_answer: ``whole`` | ``outside_think``.
    Returns:
        [B, T] float32 weights.
    """
    if no_answer not in NO_ANSWER_RULES:
        raise ValueError(f"no_answer must be one of {list(NO_ANSWER_RULES)}, got {no_answer!r}")
    t = torch.arange(response_mask.shape[1], device=response_mask.device)[None, :]
    think_span = think_span.long()
    answer_span = answer_span.long()
    has_answer = (answer_span[:, :1] >= 0) & (answer_span[:, 1:] > answer_span[:, :1])
    has_think = (think_span[:, :1] >= 0) & (has_answer | (no_answer == "outside_think"))
    in_think = has_think & (t >= think_span[:, :1]) & (t < think_span[:, 1:])
    in_answer = torch.where(has_answer, (t >= answer_span[:, :1]) & (t < answer_span[:, 1:]), ~in_think)
    think_w = torch.where(is_positive.bool(), float(tau_pos), 0.0).to(torch.float32)[:, None]
    w = torch.where(in_answer, 1.0, torch.where(in_think, think_w, 0.0))
    return w * response_mask.to(torch.float32)


def token_advantages(
    seq_adv: torch.Tensor,
    response_mask: torch.Tensor,
    think_span: torch.Tensor,
    answer_span: torch.Tensor,
    is_positive: torch.Tensor,
    tau_pos: float = 0.005,
    enable: bool = True,
    eps: float = 1e-8,
    no_answer: str = "whole",
) -> torch.Tensor:
    """Per-token advantages from sequence advantages.

    Args:
        seq_adv: [B] sequence advantages A. response_mask: [B, T].
        think_span, answer_span: [B, 2] long. is_positive: [B] bool.
        tau_pos: think weight of positives. enable: region weighting on (else broadcast A).
        eps: floor of the per-sequence weight sum. no_answer: see ``region_weights``.
    Returns:
        [B, T] float32 token advantages (0 outside ``response_mask``).
    """
    mask = response_mask.to(torch.float32)
    a = seq_adv.to(torch.float32)[:, None]
    if not enable:
        return a * mask
    w = region_weights(response_mask, think_span, answer_span, is_positive, tau_pos, no_answer)
    return a * w / w.sum(dim=1, keepdim=True).clamp(min=eps)


def region_token_advantages(
    seq_adv: torch.Tensor,
    response_mask: torch.Tensor,
    think_span: torch.Tensor,
    answer_span: torch.Tensor,
    roles: Sequence[str],
    region: RegionConfig | None,
) -> torch.Tensor:
    """Token advantages under the recipe's ``algorithm.care.region`` section (``None``: broadcast A).

    Args: seq_adv [B]; response_mask [B, T]; think_span, answer_span [B, 2]; roles: B role names.
    """
    if region is None:
        return token_advantages(seq_adv, response_mask, think_span, answer_span, torch.zeros(len(roles), dtype=torch.bool),
                                enable=False)  # fmt: skip
    positive = think_weighted(roles, seq_adv.tolist(), region.pseudo_anchor_think)
    return token_advantages(seq_adv, response_mask, think_span, answer_span, positive, tau_pos=region.tau_pos,
                            enable=True, no_answer=region.no_answer)  # fmt: skip
