"""Helpers for the reliability tests (imported as ``rel_helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(root: str | Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (to prove a folder was not touched)."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def update_rows(model_dir: str, advantages: list[float], group: str = "g0") -> list[dict]:
    """Advantage-stage rows (the model's own old log-probs) for short hand-made responses."""
    import torch

    from care_core.models import load_policy
    from care_core.models.forward import SequenceItem, pack, response_logprobs

    model, processor = load_policy(model_dir)
    tok = processor.tokenizer
    prompt = tok("<|im_start|>user\nHow many?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)[
        "input_ids"
    ]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    responses = [
        tok(f"<think>t{k}</think><answer>{k}</answer>", add_special_tokens=False)["input_ids"] + [end]
        for k in range(len(advantages))
    ]
    with torch.no_grad():
        lp = response_logprobs(model, pack([SequenceItem(prompt, r) for r in responses])).logprobs
    rows = []
    for k, (adv, resp) in enumerate(zip(advantages, responses, strict=True)):
        rows.append({
            "group_id": group, "sample_index": k, "source": "rollout", "replaces": -1, "prompt_ids": prompt,
            "response_ids": resp, "response_text": f"r{k}", "old_logprobs": lp[k, : len(resp)].tolist(),
            "loss_mask": [1] * len(resp), "think_span": [-1, -1], "answer_span": [-1, -1], "embedding": [1.0],
            "reward": float(adv > 0), "accuracy": float(adv > 0), "format": 1.0, "truncated": False,
            "advantage": float(adv), "role": "anchor" if adv > 0 else "negative", "group_kind": "mixed",
        })  # fmt: skip
    return rows
