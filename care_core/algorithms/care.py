"""CARE anchored-contrastive advantages (docs/method.md §2-6), vectorised over groups.

Per group (all tensors [B, N]; N rows = rollouts, then RGR rows):

* mixed group (a positive and a failure): anchor y+ = Shortest-Think positive; K' hard negatives
  from the M-nearest failure pool, farthest-first. An active RGR row (``replaces`` points at a
  chosen negative) takes that negative's place; the original then gets A = 0 (role ``none``).
* subgroup S = {anchor} + K' negatives: raw = (r - mean_S) / (std_S + eps), population std.
  anchor / successful RGR: A = raw; negative: A = -s |raw|; failed RGR: A = -s_refl |raw|.
  ``equalize``: every A in S times sqrt(K / K') when K' < K. Rows outside S: A = 0.
* all-correct groups: A = 0. All-wrong groups: rescue (see ``rescue.py``) or A = 0.

Choices where the spec leaves room (paper vs reference code noted):
* positives: ``accuracy == 1`` (paper, default) or ``reward > 0`` (reference code). Failure pool:
  ``accuracy == 0`` (paper) / ``reward <= 0``; partial-credit rows are neither and get A = 0.
* anchor length: a response without a think span counts its whole length as think tokens (the same
  convention as its embedding), so dropping ``<think>`` never makes the shortest anchor.
* farthest-first among hard negatives measures distance to the negatives already picked (not to
  the anchor). Rescue picks (``rescue.seeding``): ``authors`` (default, the reference code) takes
  the failure farthest from the pseudo-anchor t first, then measures distances to the picked
  pseudo-negatives only; ``pseudo_anchor`` counts t as picked throughout.
* an RGR row counts as a success under the positive rule; one that repairs a negative outside S
  (or sits in a non-mixed group) is unused: A = 0, role ``none``.
* ``rescue.normalize=False``: A = pseudo-reward exactly (no s scaling, no equalisation).

The parameters are the recipe's ``algorithm.care`` section itself (``CareConfig``); ``CareSpec``
is the registered ``care`` algorithm.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from care_core.algorithms.registry import AlgorithmSpec, json_float, register_algorithm
from care_core.algorithms.rescue import pseudo_rewards, select_pseudo_anchor, select_pseudo_negatives
from care_core.algorithms.selection import (
    cosine_distances,
    dist_rows,
    failure_mask,
    group_kinds,
    hard_negatives_from_distances,
    positive_mask,
    select_anchor_batched,
)
from care_core.algorithms.types import GROUP_KIND, ROLE, AdvantageResult, GroupBatch

if TYPE_CHECKING:
    from care_core.config import CareConfig, RegionConfig

log = logging.getLogger(__name__)


def _mask_from_picks(picks: torch.Tensor, n: int) -> torch.Tensor:
    """[B, K] columns (-1 padded) -> [B, N] bool membership."""
    count = torch.zeros(picks.shape[0], n, dtype=torch.long, device=picks.device)
    count.scatter_add_(1, picks.clamp(min=0), (picks >= 0).long())
    return count > 0


def _onehot(col: torch.Tensor, n: int) -> torch.Tensor:
    """[B] columns (-1: none) -> [B, N] bool."""
    return (torch.arange(n, device=col.device)[None, :] == col[:, None]) & (col[:, None] >= 0)


def subgroup_zscore(values: torch.Tensor, members: torch.Tensor, eps: float) -> torch.Tensor:
    """(v - mean_S) / (population std_S + eps) over the members of each row's subgroup.

    Args: values [B, N] float; members [B, N] bool. Returns [B, N] float64 (0 outside S).
    """
    w = members.to(torch.float64)
    v = values.to(torch.float64)
    n = w.sum(dim=1, keepdim=True).clamp(min=1)
    mu = (v * w).sum(dim=1, keepdim=True) / n
    sigma = ((((v - mu) * w) ** 2).sum(dim=1, keepdim=True) / n).sqrt()
    return (v - mu) / (sigma + eps) * w


def care_advantages(batch: GroupBatch, params: CareConfig) -> AdvantageResult:
    """CARE sequence advantages for a padded batch of groups (see module docstring).

    ``params``: the recipe's ``algorithm.care`` section. With ``params.rgr.enable`` false, RGR rows
    are ignored (A = 0) and the negatives keep their place.

    Returns ``AdvantageResult`` whose ``stats`` hold: ``k_prime`` [B], ``head`` [B] (anchor or
    pseudo-anchor column, -1), ``neg_distance`` [B] (mean cosine distance anchor->chosen negatives,
    NaN if none), ``rescued`` [B] bool, ``positive`` [B, N] bool (positive rule, RGR rows included),
    ``rgr_active`` [B, N] bool, ``replaced`` [B, N] bool, ``in_subgroup`` [B, N] bool.
    """
    if batch.embeddings is None:
        raise ValueError("CARE needs embeddings ([B, N, D]) to pick hard negatives")
    b, n = batch.reward.shape
    dev = batch.reward.device
    members = batch.valid & ~batch.is_rgr
    pos = positive_mask(batch.reward, batch.accuracy, members, params.positive_rule)
    fail = failure_mask(batch.reward, batch.accuracy, members, params.positive_rule)
    kind = group_kinds(pos, fail)
    mixed = kind == GROUP_KIND["mixed"]
    dist = cosine_distances(batch.embeddings)

    # Real anchor + hard negatives (mixed groups).
    anchor = select_anchor_batched(pos, batch.think_len, batch.answer_len)
    anchor = torch.where(mixed, anchor, torch.full_like(anchor, -1))
    d_anchor = dist_rows(dist, anchor)
    neg_picks, kp_neg = hard_negatives_from_distances(
        d_anchor, dist, fail & mixed[:, None], params.K, params.M
    )

    # All-negative rescue (all-wrong groups with >= 2 failures).
    rescue_ok = (kind == GROUP_KIND["all_wrong"]) & (fail.sum(dim=1) >= 2) & params.rescue.enable
    t = select_pseudo_anchor(batch.seq_logprob, fail & rescue_ok[:, None])
    res_picks, kp_res = select_pseudo_negatives(
        dist, fail & rescue_ok[:, None], t, params.K, params.rescue.seeding
    )

    head_col = torch.where(mixed, anchor, t)
    head = _onehot(head_col, n)
    chosen = _mask_from_picks(torch.where(mixed[:, None], neg_picks, res_picks), n)
    k_prime = torch.where(mixed, kp_neg, kp_res)

    # RGR rows take the place of the chosen negative they repair.
    pos_all = positive_mask(batch.reward, batch.accuracy, batch.valid, params.positive_rule)
    target = batch.replaces.clamp(min=0)
    rgr_active = (
        batch.is_rgr
        & batch.valid
        & (batch.replaces >= 0)
        & mixed[:, None]
        & chosen.gather(1, target)
        & params.rgr.enable
    )
    replaced_count = torch.zeros(b, n, dtype=torch.long, device=dev)
    replaced_count.scatter_add_(1, target, rgr_active.long())
    replaced = replaced_count > 0
    negatives = chosen & ~replaced
    in_s = head | negatives | rgr_active

    # Rewards of S (pseudo-rewards in rescued groups), z-score and per-role scaling.
    rescued = rescue_ok & ~mixed
    r_pseudo = pseudo_rewards(head, chosen, k_prime, params.rescue.delta)
    r_eff = torch.where(rescued[:, None], r_pseudo, batch.reward.to(torch.float64))
    raw = subgroup_zscore(r_eff, in_s, params.eps)
    rgr_ok = rgr_active & pos_all
    adv = torch.where(head | rgr_ok, raw, torch.zeros_like(raw))
    adv = torch.where(negatives, -params.s * raw.abs(), adv)
    adv = torch.where(rgr_active & ~rgr_ok, -params.reflection_scale * raw.abs(), adv)
    if params.equalize:
        factor = torch.where(
            (k_prime > 0) & (k_prime < params.K),
            torch.sqrt(params.K / k_prime.clamp(min=1).to(torch.float64)),
            torch.ones(b, dtype=torch.float64, device=dev),
        )
        adv = adv * factor[:, None]
    if not params.rescue.normalize:  # pseudo-rewards used directly: delta sets the step size
        adv = torch.where(rescued[:, None], r_pseudo, adv)
    adv = adv * in_s

    roles = torch.full((b, n), ROLE["none"], dtype=torch.long, device=dev)
    roles.masked_fill_(head & mixed[:, None], ROLE["anchor"])
    roles.masked_fill_(negatives & mixed[:, None], ROLE["negative"])
    roles.masked_fill_(head & rescued[:, None], ROLE["pseudo_anchor"])
    roles.masked_fill_(negatives & rescued[:, None], ROLE["pseudo_negative"])
    roles.masked_fill_(rgr_ok, ROLE["rgr_positive"])
    roles.masked_fill_(rgr_active & ~rgr_ok, ROLE["rgr_negative"])

    chosen_mixed = chosen & mixed[:, None]
    n_chosen = chosen_mixed.sum(dim=1)
    neg_distance = torch.where(
        n_chosen > 0,
        (d_anchor * chosen_mixed).sum(dim=1) / n_chosen.clamp(min=1),
        torch.full((b,), math.nan, dtype=torch.float64, device=dev),
    )
    stats = {
        "k_prime": k_prime,
        "head": head_col,
        "neg_distance": neg_distance,
        "rescued": rescued,
        "positive": pos_all,
        "rgr_active": rgr_active,
        "replaced": replaced,
        "in_subgroup": in_s,
    }
    return AdvantageResult(adv, roles, kind, stats)


@register_algorithm
class CareSpec(AlgorithmSpec):
    """CARE (docs/method.md §2-7): think-span embeddings, RGR rows, region-weighted token advantages."""

    name = "care"
    label = "CARE"
    needs_embeddings = True

    @property
    def uses_rgr(self) -> bool:
        return self.algorithm.care.rgr.enable

    @property
    def region(self) -> RegionConfig | None:
        return self.algorithm.care.region if self.algorithm.care.region.enable else None

    @property
    def positive_rule(self) -> str:
        return self.algorithm.care.positive_rule

    @property
    def logprob_norm(self) -> str:
        return self.algorithm.care.rescue.logprob_norm

    def advantages(self, batch: GroupBatch) -> AdvantageResult:
        return care_advantages(batch, self.algorithm.care)

    def diagnostics(self, batch: GroupBatch, result: AdvantageResult) -> dict[str, Any]:
        """docs/method.md §11: K', anchor vs mean think length, negative distance, rescue, RGR."""
        return care_diagnostics(batch, result, self.algorithm.care.rescue.normalize)


def care_diagnostics(
    batch: GroupBatch, res: AdvantageResult, rescue_normalize: bool = True
) -> dict[str, Any]:
    """JSON-safe CARE diagnostics of one batch (``res`` from ``care_advantages``)."""
    f = json_float
    st = res.stats
    kp = st["k_prime"]
    with_s = kp > 0
    mixed = res.group_kind == GROUP_KIND["mixed"]
    all_wrong = res.group_kind == GROUP_KIND["all_wrong"]
    head = st["head"]
    rows_b = torch.arange(batch.num_groups)
    anchor_think = batch.think_len[rows_b[mixed], head[mixed]].double()
    ro_mixed = batch.valid & ~batch.is_rgr & mixed[:, None]
    rgr_rows = batch.valid & batch.is_rgr
    n_rgr = int(rgr_rows.sum())
    rescued = int(st["rescued"].sum())
    if rescued and rescue_normalize:
        log.info("rescue.normalize=true: delta cancels in the z-score; %d rescued group(s) get real-anchor-sized advantages",
                 rescued)  # fmt: skip
    return {
        "k_prime_mean": f(kp[with_s].double().mean()) if with_s.any() else None,
        "k_prime_hist": {str(k): int((kp == k).sum()) for k in range(1, int(kp.max()) + 1)}
        if with_s.any()
        else {},
        "anchor_think_len_mean": f(anchor_think.mean()) if anchor_think.numel() else None,
        "mixed_think_len_mean": f(batch.think_len[ro_mixed].double().mean()) if ro_mixed.any() else None,
        "neg_cos_distance_mean": f(st["neg_distance"][mixed].nanmean()) if mixed.any() else None,
        "rescued_groups": rescued,
        "rescue_rate": f(st["rescued"].sum() / all_wrong.sum()) if all_wrong.any() else None,
        "rgr_attempts": n_rgr,
        "rgr_successes": int((rgr_rows & st["positive"]).sum()),
        "rgr_success_rate": f((rgr_rows & st["positive"]).sum() / n_rgr) if n_rgr else None,
        "rgr_used": int(st["rgr_active"].sum()),
        "rgr_unused": int((rgr_rows & ~st["rgr_active"]).sum()),
    }
