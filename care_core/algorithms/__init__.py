"""CARE / GRPO algorithm core: pure torch functions, no I/O (docs/method.md §1-9).

Importing this package registers the ``grpo``, ``dr_grpo`` and ``care`` algorithm specs
(``registry.AlgorithmSpec``); ``algorithm_spec(recipe.algorithm)`` returns the one a recipe names.
"""

from care_core.algorithms.care import CareSpec, care_advantages, care_diagnostics, subgroup_zscore
from care_core.algorithms.dynamic_sampling import (
    DynamicSamplingError,
    fill_batch,
    filter_groups,
    informative_groups,
)
from care_core.algorithms.grpo import DrGRPOSpec, GRPOSpec, group_advantages, grpo_advantages
from care_core.algorithms.losses import (
    AGG_MODES,
    KL_KINDS,
    aggregate_loss,
    kl_penalty,
    ppo_clip_loss,
    ppo_clip_token_loss,
)
from care_core.algorithms.region import (
    region_token_advantages,
    region_weights,
    think_weighted,
    token_advantages,
)
from care_core.algorithms.registry import (
    ALGORITHMS,
    AlgorithmSpec,
    algorithm_label,
    algorithm_spec,
    get_algorithm,
    list_algorithms,
    register_algorithm,
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
    group_kind_names,
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
    "ALGORITHMS",
    "GROUP_KIND",
    "GROUP_KIND_NAMES",
    "KL_KINDS",
    "ROLE",
    "ROLE_NAMES",
    "AdvantageResult",
    "AlgorithmSpec",
    "CareSpec",
    "DrGRPOSpec",
    "DynamicSamplingError",
    "GRPOSpec",
    "GroupBatch",
    "aggregate_loss",
    "algorithm_label",
    "algorithm_spec",
    "care_advantages",
    "care_diagnostics",
    "cosine_distances",
    "failure_mask",
    "farthest_first",
    "fill_batch",
    "filter_groups",
    "get_algorithm",
    "group_advantages",
    "group_kind_names",
    "group_kinds",
    "grpo_advantages",
    "hard_negatives_from_distances",
    "informative_groups",
    "kl_penalty",
    "list_algorithms",
    "normalize_embeddings",
    "positive_mask",
    "ppo_clip_loss",
    "ppo_clip_token_loss",
    "pseudo_rewards",
    "region_token_advantages",
    "region_weights",
    "register_algorithm",
    "select_anchor",
    "select_anchor_batched",
    "select_hard_negatives",
    "select_pseudo_anchor",
    "select_pseudo_negatives",
    "sequence_logprob",
    "subgroup_zscore",
    "think_weighted",
    "token_advantages",
]
