"""Policy loading, teacher-forced forward passes (``forward``) and the tiny offline Qwen-VL builder."""

from care_core.models.loading import load_policy, load_processor, resolve_model_path
from care_core.models.tiny_vlm import PRESETS, TinySpec, build_tiny_vlm, ensure_tiny_vlm

__all__ = [
    "PRESETS",
    "TinySpec",
    "build_tiny_vlm",
    "ensure_tiny_vlm",
    "load_policy",
    "load_processor",
    "resolve_model_path",
]
