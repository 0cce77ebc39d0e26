"""MLflow tracking (``Tracker``), learning-curve plots and the GRPO-vs-CARE comparison report."""

from care_core.tracking.tracker import (
    TAG_ALGORITHM,
    TAG_GIT_COMMIT,
    TAG_KFP_RUN,
    TAG_RECIPE,
    TAG_RECIPE_HASH,
    Tracker,
    TrackingError,
    flatten_metrics,
    git_commit,
)

__all__ = [
    "TAG_ALGORITHM",
    "TAG_GIT_COMMIT",
    "TAG_KFP_RUN",
    "TAG_RECIPE",
    "TAG_RECIPE_HASH",
    "Tracker",
    "TrackingError",
    "flatten_metrics",
    "git_commit",
]
