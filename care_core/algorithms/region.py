"""Region-weighted token advantages (care_method.md §7).

Weights: 1 on the answer span, ``tau_pos`` on the think span of positives, 0 on the think span of
negatives, 0 outside the response mask. Without an answer span every response token outside the
think span counts as answer (the whole response when there is no think span either). With an
answer span, tokens in neither span (e.g. text between ``</think>`` and ``<answer>``) weigh 0.
Token advantage a_t = A * w_t / max(sum_u w_u, eps), so each sequence's token advantages sum to A.
With ``enable=False`` the sequence advantage is broadcast to every response token (GRPO style).
"""

from __future__ import annotations

import torch


def region_weights(
    response_mask: torch.Tensor,
    think_span: torch.Tensor,
    answer_span: torch.Tensor,
    is_positive: torch.Tensor,
    tau_pos: float,
) -> torch.Tensor:
    """Token weights w.

    Args:
        response_mask: [B, T] (bool or 0/1) response tokens that are trained on.
        think_span, answer_span: [B, 2] long [start, end) token indices, [-1, -1] when absent.
        is_positive: [B] bool (a positive sequence: anchor, successful RGR, pseudo-anchor, A > 0).
        tau_pos: think weight of positives.
    Returns:
        [B, T] float32 weights.
    """
    t = torch.arange(response_mask.shape[1], device=response_mask.device)[None, :]
    think_span = think_span.long()
    answer_span = answer_span.long()
    has_think = think_span[:, :1] >= 0
    has_answer = answer_span[:, :1] >= 0
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
) -> torch.Tensor:
    """Per-token advantages from sequence advantages.

    Args:
        seq_adv: [B] sequence advantages A. response_mask: [B, T].
        think_span, answer_span: [B, 2] long. is_positive: [B] bool.
        tau_pos: think weight of positives. enable: region weighting on (else broadcast A).
        eps: floor of the per-sequence weight sum.
    Returns:
        [B, T] float32 token advantages (0 outside ``response_mask``).
    """
    mask = response_mask.to(torch.float32)
    a = seq_adv.to(torch.float32)[:, None]
    if not enable:
        return a * mask
    w = region_weights(response_mask, think_span, answer_span, is_positive, tau_pos)
    return a * w / w.sum(dim=1, keepdim=True).clamp(min=eps)
