"""Policy loss pieces (docs/method.md §8): PPO clipped surrogate, KL estimators, aggregation.

All inputs are [B, T] token tensors (B sequences, T padded response length) with a 0/1 ``mask``.
"""

from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_KINDS = ("k1", "k2", "k3")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    keep = mask.bool()
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum() / keep.sum().clamp(
        min=1
    )


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    agg: str = "token-mean",
    denom: float | None = None,
    norm_len: int | None = None,
) -> torch.Tensor:
    """Reduce a [B, T] token loss to a scalar.

    * ``token-mean``: sum(loss * mask) / sum(mask) over the whole batch.
    * ``seq-mean-token-mean``: mean over sequences (with >= 1 token) of each sequence's token mean.
    * ``seq-mean-token-sum-norm``: mean over sequences of token sums / ``norm_len`` (a constant,
      default T; Dr. GRPO's length-unbiased form).

    ``denom`` replaces the divisor of the outer mean (tokens for ``token-mean``, sequences
    otherwise), so micro-batch losses add up to the loss of the global batch under gradient
    accumulation.
    """
    keep = mask.bool()
    masked = torch.where(keep, loss_mat, torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device))
    mask = keep.to(loss_mat.dtype)
    if agg == "token-mean":
        total = masked.sum()
        return total / (denom if denom is not None else mask.sum().clamp(min=1))
    tokens = mask.sum(dim=1)
    has = (tokens > 0).to(loss_mat.dtype)
    if agg == "seq-mean-token-mean":
        seq = masked.sum(dim=1) / tokens.clamp(min=1)
    elif agg == "seq-mean-token-sum-norm":
        seq = masked.sum(dim=1) / float(norm_len if norm_len is not None else loss_mat.shape[1])
    else:
        raise ValueError(f"unknown loss aggregation {agg!r}; known: {list(AGG_MODES)}")
    return (seq * has).sum() / (denom if denom is not None else has.sum().clamp(min=1))


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate, [B, T] -> [B, T].

    * ``k1``: logp - ref.  * ``k2``: (logp - ref)^2 / 2.
    * ``k3`` (low-variance): exp(ref - logp) - (ref - logp) - 1 >= 0, with the log difference clamped
      to [-20, 20] and the result to [-10, 10] (computed with expm1 for accuracy near 0).
    """
    if kind == "k1":
        return logp - ref_logp
    if kind == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if kind == "k3":
        x = (ref_logp - logp).clamp(-20.0, 20.0)
        return (torch.expm1(x) - x).clamp(-10.0, 10.0)
    raise ValueError(f"unknown KL estimator {kind!r}; known: {list(KL_KINDS)}")


def ppo_clip_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    token_adv: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.3,
    dual_clip: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate (see ``ppo_clip_loss``), all [B, T].

    Returns: (loss_t, ratio, clip_active (clipped term larger), dual_active (dual cap applied)).
    """
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    unclipped = -token_adv * ratio
    clipped = -token_adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(unclipped, clipped)
    # The clipped term wins exactly when the ratio is outside the trust region on the advantage's side.
    # Decided from signs and the ratio, not by comparing the two products, which underflow to equal
    # values for tiny (subnormal) advantages.
    clip_active = ((token_adv < 0) & (ratio < 1.0 - eps_low)) | ((token_adv > 0) & (ratio > 1.0 + eps_high))
    if dual_clip is None:
        return loss, ratio, clip_active, torch.zeros_like(clip_active)
    cap = -token_adv * dual_clip
    dual = (token_adv < 0) & (loss > cap)
    return torch.where(token_adv < 0, torch.minimum(loss, cap), loss), ratio, clip_active, dual


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    token_adv: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.3,
    dual_clip: float | None = 3.0,
    agg: str = "token-mean",
    denom: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate with asymmetric and dual clipping.

    r_t = exp(clamp(logp - old_logp, -20, 20));
    loss_t = max(-a_t r_t, -a_t clip(r_t, 1 - eps_low, 1 + eps_high));
    for a_t < 0 and ``dual_clip`` = c: loss_t = min(loss_t, -a_t c).

    Args:
        logp, old_logp, token_adv, mask: [B, T]. ``denom``: see ``aggregate_loss``.
    Returns:
        (scalar loss, metrics) with metrics ``clipfrac_low`` / ``clipfrac_high`` (share of masked
        tokens whose clipped term was the active one, below / above the trust region),
        ``clipfrac_dual``, ``ratio_mean`` / ``ratio_max`` / ``ratio_min``, ``approx_kl_old``
        (mean of old_logp - logp) and ``pg_loss``.
    """
    loss, ratio, clip_active, dual = ppo_clip_token_loss(
        logp, old_logp, token_adv, eps_low, eps_high, dual_clip
    )
    m = mask.to(loss.dtype)
    total = aggregate_loss(loss, mask, agg, denom=denom)
    with torch.no_grad():
        mb = m.bool()
        r = ratio.detach()
        metrics = {
            "clipfrac_low": float(_masked_mean((clip_active & (r < 1.0)).to(m.dtype), m)),
            "clipfrac_high": float(_masked_mean((clip_active & (r > 1.0)).to(m.dtype), m)),
            "clipfrac_dual": float(_masked_mean(dual.to(m.dtype), m)),
            "ratio_mean": float(_masked_mean(r, m)),
            "ratio_max": float(r[mb].max()) if mb.any() else 1.0,
            "ratio_min": float(r[mb].min()) if mb.any() else 1.0,
            "approx_kl_old": float(_masked_mean((old_logp - logp).detach(), m)),
            "pg_loss": float(total.detach()),
        }
    return total, metrics
