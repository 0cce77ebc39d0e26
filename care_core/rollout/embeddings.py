"""Think-span embeddings (docs/method.md §3) and teacher-forced log-probs of finished sequences.

One no-grad forward per micro-batch gives both: the policy's last-layer hidden states mean-pooled
over each response's think span (whole response if it has none), L2-normalised, and the per-token
log-probs of the response (used for RGR rows, whose trained sequence was never sampled as such).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from care_core.models.forward import SequenceItem, pack, response_logprobs, span_mean_embeddings


@torch.inference_mode()
def embed_and_score(
    model: torch.nn.Module,
    items: Sequence[SequenceItem],
    think_spans: Sequence[Sequence[int]],
    batch_size: int = 16,
    temperature: float = 1.0,
    pad_id: int = 0,
) -> tuple[list[list[float]], list[list[float]]]:
    """Return (embeddings [N][H], logprobs [N][len(response_i)]) for ``items``.

    ``think_spans``: per-item ``[start, end)`` response-token span, ``[-1, -1]`` when absent.
    """
    if len(items) != len(think_spans):
        raise ValueError(f"embed_and_score: {len(items)} items but {len(think_spans)} spans")
    device = next(model.parameters()).device
    embeddings: list[list[float]] = []
    logprobs: list[list[float]] = []
    for start in range(0, len(items), max(1, batch_size)):
        chunk = list(items[start : start + batch_size])
        batch = pack(chunk, device=device, pad_id=pad_id)
        out = response_logprobs(model, batch, temperature=temperature, return_hidden=True, with_entropy=False)
        emb = span_mean_embeddings(out.hidden, batch, think_spans[start : start + batch_size])
        embeddings.extend(emb.cpu().tolist())
        for row, item in enumerate(chunk):
            logprobs.append(out.logprobs[row, : len(item.response_ids)].cpu().tolist())
    return embeddings, logprobs
