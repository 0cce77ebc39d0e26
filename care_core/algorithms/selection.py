"""Positives, anchors and hard negatives (docs/method.md §1-3), batched and per group.

All functions are vectorised over groups; the ``select_*`` single-group helpers take plain tensors
for one group (the rollout stage uses them to aim RGR at the nearest hard negative). Ties are broken
towards the lowest column (= lowest ``sample_index``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from care_core.algorithms.types import GROUP_KIND, GROUP_KIND_NAMES

POSITIVE_RULES = ("accuracy", "reward")


def positive_mask(
    reward: torch.Tensor, accuracy: torch.Tensor, valid: torch.Tensor, rule: str = "accuracy"
) -> torch.Tensor:
    """Positives: ``accuracy == 1`` (paper, default) or ``reward > 0`` (reference-code option).

    Args: reward, accuracy, valid: [...] (same shape). Returns: bool [...] (False where not valid).
    """
    if rule == "accuracy":
        return valid & (accuracy >= 1.0)
    if rule == "reward":
        return valid & (reward > 0)
    raise ValueError(f"positive_rule must be one of {POSITIVE_RULES}, got {rule!r}")


def failure_mask(
    reward: torch.Tensor, accuracy: torch.Tensor, valid: torch.Tensor, rule: str = "accuracy"
) -> torch.Tensor:
    """Failure pool F: ``accuracy == 0`` (rule ``accuracy``) or ``reward <= 0`` (rule ``reward``).

    Under the accuracy rule a partially correct row (0 < accuracy < 1) is neither positive nor a
    failure. Returns bool [...] (False where not valid).
    """
    if rule == "accuracy":
        return valid & (accuracy <= 0.0)
    if rule == "reward":
        return valid & (reward <= 0)
    raise ValueError(f"positive_rule must be one of {POSITIVE_RULES}, got {rule!r}")


def group_kinds(pos: torch.Tensor, fail: torch.Tensor) -> torch.Tensor:
    """Group kind codes [B] from pos/fail masks [B, N]: ``all_wrong`` (no positive), ``all_correct``
    (a positive and no failure), else ``mixed``."""
    has_pos = pos.any(dim=1)
    has_fail = fail.any(dim=1)
    kind = torch.full(has_pos.shape, GROUP_KIND["mixed"], dtype=torch.long, device=pos.device)
    kind[has_pos & ~has_fail] = GROUP_KIND["all_correct"]
    kind[~has_pos] = GROUP_KIND["all_wrong"]
    return kind


def group_kind_names(
    rewards: Sequence[Sequence[float]], accuracies: Sequence[Sequence[float]], rule: str = "accuracy"
) -> list[str]:
    """Kind name (``GROUP_KIND_NAMES``) of each group given as ragged lists of its rows' rewards and
    accuracies, under the positive ``rule`` (the rollout stage labels its groups with it)."""
    if not rewards:
        return []
    n = max(len(r) for r in rewards)
    shape = (len(rewards), n)
    reward, accuracy = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    valid = torch.zeros(shape, dtype=torch.bool)
    for i, (r, a) in enumerate(zip(rewards, accuracies, strict=True)):
        reward[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
        accuracy[i, : len(a)] = torch.tensor(a, dtype=torch.float64)
        valid[i, : len(r)] = True
    kinds = group_kinds(
        positive_mask(reward, accuracy, valid, rule), failure_mask(reward, accuracy, valid, rule)
    )
    return [GROUP_KIND_NAMES[k] for k in kinds.tolist()]


def normalize_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dim in float64 ([..., D] -> [..., D]); zero vectors stay zero."""
    e = embeddings.to(torch.float64)
    return e / e.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def cosine_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine distances 1 - <h_i, h_j> / (|h_i| |h_j|): [B, N, D] -> [B, N, N].

    Computed from the Gram matrix in the input's precision (float32 / float64; half precision is
    upcast to float32), so no normalised copy of the embeddings is made. Zero vectors are at
    distance 1 from everything.
    """
    e = embeddings if embeddings.dtype in (torch.float32, torch.float64) else embeddings.float()
    gram = e @ e.transpose(-1, -2)
    norms = torch.diagonal(gram, dim1=-2, dim2=-1).clamp(min=0).sqrt().clamp(min=1e-12)
    return 1.0 - gram / (norms[..., :, None] * norms[..., None, :])


def select_anchor_batched(
    pos: torch.Tensor, think_len: torch.Tensor, answer_len: torch.Tensor
) -> torch.Tensor:
    """Shortest-Think anchor per group.

    Among positives: fewest think tokens, then fewest answer tokens, then the lowest column.
    Args: pos bool [B, N]; think_len, answer_len long [B, N]. Returns: long [B], -1 without a positive.
    """
    n = pos.shape[1]
    think = think_len.long().clamp(min=0)
    answer = answer_len.long().clamp(min=0)
    span = int(max(int(think.max()) if think.numel() else 0, int(answer.max()) if answer.numel() else 0)) + 1
    cols = torch.arange(n, device=pos.device).expand_as(think)
    key = (think * span + answer) * n + cols
    key = key.masked_fill(~pos, torch.iinfo(torch.long).max)
    anchor = key.argmin(dim=1)
    return torch.where(pos.any(dim=1), anchor, torch.full_like(anchor, -1))


def select_anchor(is_positive: torch.Tensor, think_len: torch.Tensor, answer_len: torch.Tensor) -> int:
    """Single-group anchor: ``is_positive`` bool [N], lengths [N] -> column index, or -1 if none."""
    return int(select_anchor_batched(is_positive[None], think_len[None], answer_len[None])[0])


def dist_rows(dist: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Row ``col[b]`` of each group's distance matrix: [B, N, N], [B] -> [B, N] (gather, no copy of dist)."""
    n = dist.shape[-1]
    return dist.gather(1, col.clamp(min=0).view(-1, 1, 1).expand(-1, 1, n)).squeeze(1)


def farthest_first(
    dist: torch.Tensor,
    pool: torch.Tensor,
    k: torch.Tensor,
    k_max: int,
    first: torch.Tensor | None = None,
    seed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Farthest-first picks inside ``pool``, vectorised over groups.

    Each pick maximises its minimum distance to the points already in the set. The set starts as
    ``{first}`` (``first`` is then the first pick) or as ``{seed}`` (``seed`` is not returned).

    Args:
        dist: [B, N, N] pairwise distances. pool: [B, N] bool candidates.
        k: [B] long, picks per group (capped by the pool size). k_max: width of the output.
        first / seed: [B] long columns (exactly one of them; -1 where the group has none).
    Returns:
        long [B, k_max] picked columns in pick order, padded with -1.
    """
    if (first is None) == (seed is None):
        raise ValueError("pass exactly one of first= or seed=")
    b, n = pool.shape
    cols = torch.arange(n, device=pool.device)[None, :]
    picks = torch.full((b, k_max), -1, dtype=torch.long, device=pool.device)
    avail = pool.clone()
    k = torch.minimum(k.long(), pool.sum(dim=1))
    start = seed if first is None else first
    min_d = dist_rows(dist, start)
    step0 = 0
    if first is not None:
        ok = (k > 0) & (first >= 0)
        if k_max > 0:
            picks[:, 0] = torch.where(ok, first, picks[:, 0])
        avail &= ~((cols == first[:, None]) & ok[:, None])
        step0 = 1
    for step in range(step0, k_max):
        score = min_d.masked_fill(~avail, float("-inf"))
        nxt = score.argmax(dim=1)  # first maximum -> lowest column on ties
        ok = (step < k) & avail.any(dim=1)
        picks[:, step] = torch.where(ok, nxt, picks[:, step])
        avail &= ~((cols == nxt[:, None]) & ok[:, None])
        min_d = torch.minimum(min_d, dist_rows(dist, nxt))
    return picks


def hard_negatives_from_distances(
    d_anchor: torch.Tensor, dist: torch.Tensor, failure: torch.Tensor, K: int, M: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """M-nearest failure pool, then farthest-first to K' = min(K, |pool|), starting at the nearest.

    Args:
        d_anchor: [B, N] distance of each row to the anchor. dist: [B, N, N] pairwise distances.
        failure: [B, N] bool failure pool F. K, M: ints >= 1.
    Returns:
        picks long [B, K] (farthest-first order, -1 padded), k_prime long [B].
    """
    if K < 1 or M < 1:
        raise ValueError(f"K and M must be >= 1, got K={K}, M={M}")
    b, n = failure.shape
    masked = d_anchor.masked_fill(~failure, float("inf"))
    order = torch.sort(masked, dim=1, stable=True).indices  # nearest first, ties -> lowest column
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(b, n))
    pool = failure & (rank < M)
    k_prime = torch.clamp(pool.sum(dim=1), max=K)
    first = torch.where(k_prime > 0, order[:, 0], torch.full_like(k_prime, -1))
    return farthest_first(dist, pool, k_prime, K, first=first), k_prime


def select_hard_negatives(
    embeddings: torch.Tensor, anchor_embedding: torch.Tensor, failure_mask: torch.Tensor, K: int, M: int
) -> torch.Tensor:
    """Hard negatives of one group (docs/method.md §3).

    Args:
        embeddings: [N, D] rollout embeddings (re-normalised here). anchor_embedding: [D].
        failure_mask: [N] bool failure pool. K: negatives wanted. M: nearest-failure pool size.
    Returns:
        long [K'] row indices in farthest-first order (first = nearest failure), K' = min(K, |pool|).
    """
    n = embeddings.shape[0]
    both = torch.cat([embeddings, anchor_embedding.to(embeddings.dtype)[None]], dim=0)
    full = cosine_distances(both[None])  # [1, N + 1, N + 1]; the anchor is the last row
    dist = full[:, :n, :n]
    d_anchor = full[:, n, :n]
    picks, k_prime = hard_negatives_from_distances(d_anchor, dist, failure_mask.bool()[None], K, M)
    return picks[0, : int(k_prime[0])]
