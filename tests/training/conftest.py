"""Fixtures: the offline micro Qwen2.5-VL policy and a few synthetic example rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from care_core.config import build_recipe


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Local folder of the tiny://micro model (built once per session into a shared cache)."""
    from care_core.models import resolve_model_path

    recipe = build_recipe({"model": {"path": "tiny://micro", "cache_dir": str(Path(tmp_path_factory.getbasetemp()) / "care_models")}})
    return resolve_model_path(recipe.model)


@pytest.fixture(scope="session")
def micro_policy(micro_dir: str):
    from care_core.models import load_policy

    return load_policy(micro_dir)


@pytest.fixture(scope="session")
def recipe():
    return build_recipe({"data": {"synthetic": {"n_train": 16, "n_test": 4}}})


@pytest.fixture(scope="session")
def examples(recipe):
    from care_core.data.synthetic import generate_rows

    return generate_rows(recipe.data.synthetic, "train")[:4]


def make_rows(processor, model, specs, group="g0"):
    """Advantage-annotated rollout rows for hand-made responses.

    ``specs``: list of (response_text, advantage, role). Old log-probs are the model's own.
    """
    import torch

    from care_core.models.forward import SequenceItem, pack, response_logprobs
    from care_core.rewards import find_spans_tokens

    tok = processor.tokenizer
    prompt = tok("<|im_start|>user\nHow many red squares?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    responses = [tok(text, add_special_tokens=False)["input_ids"] + [end] for text, _, _ in specs]
    with torch.no_grad():
        lp = response_logprobs(model, pack([SequenceItem(prompt, r) for r in responses])).logprobs
    rows = []
    for k, ((text, adv, role), resp) in enumerate(zip(specs, responses, strict=True)):
        think, answer = find_spans_tokens(resp, tok)
        rows.append({
            "group_id": group if isinstance(group, str) else group[k], "sample_index": k, "source": "rollout", "replaces": -1,
            "prompt_ids": prompt, "response_ids": resp, "response_text": text, "old_logprobs": lp[k, : len(resp)].tolist(),
            "loss_mask": [1] * len(resp), "think_span": list(think), "answer_span": list(answer), "embedding": [0.0],
            "reward": float(adv > 0), "accuracy": float(adv > 0), "format": 1.0, "truncated": False,
            "advantage": float(adv), "role": role, "group_kind": "mixed",
        })
    return rows, prompt, responses
