"""Helpers for the training tests (imported as ``train_helpers``; a ``conftest`` import is ambiguous
once several test folders' conftest.py files are loaded)."""

from __future__ import annotations


def make_rows(processor, model, specs, group="g0"):
    """Advantage-annotated rollout rows for hand-made responses.

    ``specs``: list of (response_text, advantage, role). Old log-probs are the model's own.
    """
    import torch

    from care_core.models.forward import SequenceItem, pack, response_logprobs
    from care_core.rewards import find_spans_tokens

    tok = processor.tokenizer
    prompt = tok(
        "<|im_start|>user\nHow many red squares?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
    )["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    responses = [tok(text, add_special_tokens=False)["input_ids"] + [end] for text, _, _ in specs]
    with torch.no_grad():
        lp = response_logprobs(model, pack([SequenceItem(prompt, r) for r in responses])).logprobs
    rows = []
    for k, ((text, adv, role), resp) in enumerate(zip(specs, responses, strict=True)):
        think, answer = find_spans_tokens(resp, tok)
        rows.append(
            {
                "group_id": group if isinstance(group, str) else group[k],
                "sample_index": k,
                "source": "rollout",
                "replaces": -1,
                "prompt_ids": prompt,
                "response_ids": resp,
                "response_text": text,
                "old_logprobs": lp[k, : len(resp)].tolist(),
                "loss_mask": [1] * len(resp),
                "think_span": list(think),
                "answer_span": list(answer),
                "embedding": [0.0],
                "reward": float(adv > 0),
                "accuracy": float(adv > 0),
                "format": 1.0,
                "truncated": False,
                "advantage": float(adv),
                "role": role,
                "group_kind": "mixed",
            }
        )
    return rows, prompt, responses
