"""``care_sdpa``: transformers' ``sdpa`` attention with grouped-query attention kept grouped on CPU.

With a padding mask, transformers' ``sdpa`` path copies every key/value head ``num_heads /
num_kv_heads`` times before calling ``torch.nn.functional.scaled_dot_product_attention`` (its CUDA
kernels cannot take a mask together with ``enable_gqa``). On CPU that copy of the whole key/value
cache at every decoding step costs about a quarter of a rollout on the tiny models, and PyTorch's CPU
kernel takes the mask with ``enable_gqa=True``. ``care_sdpa`` does exactly that on CPU and hands
every other case (other devices, position biases, attention weights requested) to transformers'
own function unchanged. ``load_policy`` selects it wherever a recipe asks for ``sdpa``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAME = "care_sdpa"


def cpu_grouped_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention interface function registered as ``care_sdpa`` (same contract as ``sdpa``)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    q_len, kv_len = query.shape[2], key.shape[2]
    plain = (
        query.device.type != "cpu"
        or groups == 1
        or kwargs.get("position_bias") is not None
        or kwargs.get("output_attentions", False)
        or (attention_mask is None and q_len > 1 and kv_len != q_len)
    )
    if plain:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=bool(q_len > 1 and attention_mask is None and causal),
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register ``care_sdpa`` with transformers, attention and mask function (the mask is ``sdpa``'s:
    without one transformers builds no padding mask for a custom name); idempotent; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, cpu_grouped_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
