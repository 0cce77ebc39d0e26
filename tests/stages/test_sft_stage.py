"""Cold-start SFT with transformers' Trainer on the micro model: assistant-token NLL goes down."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from care_core.config import build_recipe
from care_core.schema import SchemaError, write_examples


def _assistant_nll(model_dir: str, processor_rows, recipe) -> float:
    """Independent check: mean NLL of the solution tokens given the prompt (labels != -100)."""
    from care_core.data.prompting import encode_sft_examples
    from care_core.models import load_policy

    model, processor = load_policy(model_dir)
    batch = encode_sft_examples(processor, processor_rows, recipe.data, recipe.train.sft.max_length)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    mask = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return float(nll[mask].mean())


def test_sft_lowers_assistant_nll(tmp_path, tmp_path_factory):
    from care_core.data.synthetic import generate_rows, write_synthetic
    from care_core.models import load_policy, resolve_model_path
    from care_core.stages.sft import run_sft

    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    recipe = build_recipe(
        {
            "model": {"path": "tiny://micro", "cache_dir": cache},
            "data": {"synthetic": {"n_train": 16, "n_test": 2}},
            "train": {"sft": {"max_steps": 12, "batch_size": 4, "lr": 3e-3, "max_length": 256}},
        }
    )
    write_synthetic(recipe.data.synthetic, tmp_path / "data", image_size=recipe.model.tiny.image_size)
    base = resolve_model_path(recipe.model)
    rows = generate_rows(recipe.data.synthetic, "train")[:8]
    before = _assistant_nll(base, rows, recipe)
    metrics = run_sft(recipe, tmp_path / "data", tmp_path / "sft")
    after = _assistant_nll(str(tmp_path / "sft"), rows, recipe)
    assert metrics["sft/steps"] == 12 and metrics["sft/examples"] == 16
    assert after < before - 0.5, (before, after)
    assert metrics["sft/last_logged_loss"] < metrics["sft/first_logged_loss"]
    model, processor = load_policy(str(tmp_path / "sft"))  # HF folder with a processor that handles images
    assert processor.image_processor is not None


def test_sft_needs_solutions(tmp_path):
    from care_core.stages.sft import sft_rows

    write_examples(
        [
            {
                "id": "a",
                "data_source": "x",
                "images": [],
                "problem": "1+1?",
                "answer": "2",
                "answer_type": "integer",
                "choices": [],
                "solution": "",
                "meta": "{}",
            }
        ],
        tmp_path / "train.parquet",
    )
    with pytest.raises(SchemaError, match="solution"):
        sft_rows(tmp_path)


@pytest.mark.parametrize("warmup", [0, 12])
def test_sft_warmup_steps_shape_the_learning_rate(tmp_path, tmp_path_factory, warmup):
    """train.sft.warmup_steps reaches the Trainer: linear warm-up from 0, else linear decay from lr."""
    from care_core.data.synthetic import write_synthetic
    from care_core.stages.sft import run_sft

    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    lr, steps = 1e-3, 6
    recipe = build_recipe(
        {
            "model": {"path": "tiny://micro", "cache_dir": cache},
            "data": {"synthetic": {"n_train": 8, "n_test": 2}},
            "train": {
                "sft": {
                    "max_steps": steps,
                    "batch_size": 2,
                    "lr": lr,
                    "max_length": 256,
                    "warmup_steps": warmup,
                }
            },
        }
    )
    write_synthetic(recipe.data.synthetic, tmp_path / "data", image_size=recipe.model.tiny.image_size)
    metrics = run_sft(recipe, tmp_path / "data", tmp_path / "sft")
    # logging_steps = max(1, steps // 5) = 1: the first log reports the LR the first step used,
    # 0 at the start of a linear warm-up, the full lr at the start of a linear decay.
    expected = 0.0 if warmup else lr
    assert metrics["sft/first_logged_lr"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
