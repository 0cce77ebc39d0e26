"""Rollout engine interface: one request per prompt in, ``n`` sampled responses per request out.

Every engine (``hf``, ``vllm``) returns the same :class:`Sample` objects, so the rollout stage
builds identical rollout rows whatever decoded them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class GenerationRequest:
    """One prompt to decode.

    ``prompt_ids``: the tokenized chat prompt with image placeholders already expanded (what the
    processor returns for one row, no padding). ``mm_inputs``: the processor's per-prompt
    vision tensors (``pixel_values`` [n_patches, d], ``image_grid_thw`` [n_images, 3]); empty for
    text-only prompts. ``images``: the PIL images (vLLM needs them raw). ``prefix_ids``: tokens
    forced after the prompt before sampling starts (RGR repair prefix); not part of the output.
    """

    prompt_ids: list[int]
    mm_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    images: list[Any] = field(default_factory=list)
    prefix_ids: list[int] = field(default_factory=list)


@dataclass
class SamplingSettings:
    """Decoding settings; ``n`` samples per request. ``logprob_temperature`` is the temperature the
    reported log-probs are computed at (the policy's training temperature, verl convention)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    logprob_temperature: float = 1.0
    seed: int | None = None


@dataclass
class Sample:
    """One generated response: ``response_ids`` without padding (EOS kept if emitted),
    ``logprobs`` [len(response_ids)] under the policy at ``logprob_temperature``,
    ``truncated`` when decoding stopped at ``max_new_tokens`` without EOS; ``hidden``
    [len(response_ids), H]: each response token's last-layer hidden state, when the engine kept
    them (the ``hf`` engine's prompt-sharing loop; CARE's embeddings then need no extra forward)."""

    response_ids: list[int]
    logprobs: list[float]
    truncated: bool
    hidden: torch.Tensor | None = None


class RolloutEngine(Protocol):
    """What the rollout stage needs from an engine."""

    def generate(self, requests: list[GenerationRequest], settings: SamplingSettings) -> list[list[Sample]]:
        """Return ``settings.n`` samples for each request, in request order."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load new policy weights (no-op for engines that decode with the policy module itself)."""
        ...
