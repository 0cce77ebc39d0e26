"""Names shared by the stages, the KFP components, the pipeline and the TrainJob launcher.

A leaf module: it imports nothing, so any layer may import it (docs/architecture.md).
"""

from __future__ import annotations

STAGES = ("ingest", "sft", "rollout", "advantage", "update", "evaluate")
"""Pipeline stages in data order; each is ``care_core.stages.<stage>.run_<stage>``."""

ROUND_STAGES = ("rollout", "advantage", "update")
"""The stages of one RL round (never cached by KFP: each round samples anew)."""

S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3")
"""Keys of the Kubernetes Secret ``kubernetes.s3_secret``, exposed to every pod as env variables."""

MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
"""Keys of the optional Secret ``kubernetes.mlflow_secret``."""
