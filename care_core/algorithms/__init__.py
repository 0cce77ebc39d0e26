"""CARE / GRPO algorithm core: pure torch functions, no I/O (care_method.md §1-9).

Importing this package registers the ``grpo``, ``dr_grpo`` and ``care`` advantage estimators.
"""

from care_core.algorithms.care import CareParams, care_advantages, subgroup_zscore
from care_core.algorithms.dynamic_sampling import (
    DynamicSamplingError,
    fill_batch,
    filter_groups,
    informative_groups,
)
from care_core.algorithms.grpo import GRPOParams, grpo_advantages
from care_core.algorithms.losses import (
    AGG_MODES,
    KL_KINDS,
    aggregate_loss,
    kl_penalty,
    ppo_clip_loss,
    ppo_clip_token_loss,
)
from care_core.algorithms.region import region_weights, token_advantages
from care_core.algorithms.registry import (
    get_advantage_estimator,
    list_advantage_estimators,
    register_advantage_estimator,
)
from care_core.algorithms.rescue import (
    pseudo_rewards,
    select_pseudo_anchor,
    select_pseudo_negatives,
    sequence_logprob,
)
from care_core.algorithms.selection import (
    cosine_distances,
    failure_mask,
    farthest_first,
    group_kinds,
    hard_negatives_from_distances,
    normalize_embeddings,
    positive_mask,
    select_anchor,
    select_anchor_batched,
    select_hard_negatives,
)
from care_core.algorithms.types import (
    GROUP_KIND,
    GROUP_KIND_NAMES,
    ROLE,
    ROLE_NAMES,
    AdvantageResult,
    GroupBatch,
)

__all__ = [
    "AGG_MODES",
    "GROUP_KIND",
    "GROUP_KIND_NAMES",
    "KL_KINDS",
    "ROLE",
    "ROLE_NAMES",
    "AdvantageResult",
    "CareParams",
    "DynamicSamplingError",
    "GRPOParams",
    "GroupBatch",
    "aggregate_loss",
    "care_advantages",
    "cosine_distances",
    "failure_mask",
    "farthest_first",
    "fill_batch",
    "filter_groups",
    "get_advantage_estimator",
    "grpo_advantages",
    "group_kinds",
    "hard_negatives_from_distances",
    "informative_groups",
    "kl_penalty",
    "list_advantage_estimators",
    "normalize_embeddings",
    "positive_mask",
    "ppo_clip_loss",
    "ppo_clip_token_loss",
    "pseudo_rewards",
    "region_weights",
    "register_advantage_estimator",
    "select_anchor",
    "select_anchor_batched",
    "select_hard_negatives",
    "select_pseudo_anchor",
    "select_pseudo_negatives",
    "sequence_logprob",
    "subgroup_zscore",
    "token_advantages",
]
