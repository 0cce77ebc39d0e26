"""Cold-start SFT stage: supervised fine-tuning on the rows' ``solution`` with transformers' Trainer.

``run_sft(recipe, data_dir, out_dir, model_path=None)`` trains on ``data_dir/sft.parquet`` when it
exists, else on the rows of ``data_dir/train.parquet`` that carry a ``solution``. Each example is
the chat prompt (images included) plus the solution as the assistant turn; the loss covers the
assistant tokens only (``care_core.data.prompting.encode_sft_examples`` builds the labels). The
result is an HF model folder (model + processor) at ``out_dir``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from care_core.config import Recipe
from care_core.errors import MissingInput
from care_core.schema import SchemaError, read_examples

logger = logging.getLogger(__name__)


class _Rows(torch.utils.data.Dataset):
    """Example rows as a map-style dataset (the collator does the encoding)."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def sft_rows(data_dir: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """Rows with a non-empty ``solution`` from ``sft.parquet`` (preferred) or ``train.parquet``."""
    data_dir = Path(data_dir)
    path = data_dir / "sft.parquet"
    if not path.is_file():
        path = data_dir / "train.parquet"
    if not path.is_file():
        raise MissingInput(
            "data folder has neither sft.parquet nor train.parquet",
            str(data_dir),
            hint="give the folder `care ingest --out DIR` wrote",
        )
    rows = [r for r in read_examples(path).to_pylist() if (r.get("solution") or "").strip()]
    if not rows:
        raise SchemaError(f"{path}: no row has a non-empty field 'solution' to fine-tune on")
    return rows, path


def run_sft(
    recipe: Recipe, data_dir: str | Path, out_dir: str | Path, model_path: str | None = None
) -> dict[str, Any]:
    """Fine-tune ``model_path`` (default: the recipe's model) on the solutions; save to ``out_dir``."""
    start = time.perf_counter()
    rows, source = sft_rows(
        data_dir
    )  # inputs first: a bad data folder fails before the heavy imports and the model
    from care_core.models.loading import check_model_path

    if model_path:
        check_model_path(model_path, "--model")
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from care_core.data.prompting import encode_sft_examples
    from care_core.models import load_policy, resolve_model_path
    from care_core.stages.update import configure_trainable

    cfg = recipe.train.sft
    out_dir = Path(out_dir)
    model_path = model_path or resolve_model_path(recipe.model)
    model, processor = load_policy(
        model_path,
        dtype=recipe.model.dtype,
        attn_implementation=recipe.model.attn_implementation,
        cache_dir=recipe.model.cache_dir,
        writable=True,
    )
    configure_trainable(model, recipe)

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        enc = encode_sft_examples(processor, batch, recipe.data, cfg.max_length)
        return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}

    losses: list[float] = []
    lrs: list[float] = []

    class _Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
            if logs and "learning_rate" in logs:
                lrs.append(float(logs["learning_rate"]))

    args = TrainingArguments(
        output_dir=str(out_dir / "_trainer"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_steps,
        weight_decay=0.0,
        logging_steps=max(1, min(10, cfg.max_steps // 5)) if cfg.max_steps > 0 else 10,
        save_strategy="no",
        report_to=[],
        seed=recipe.train.seed,
        data_seed=recipe.train.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=recipe.model.dtype == "bfloat16",
        disable_tqdm=False,
    )
    model.train()
    trainer = Trainer(
        model=model, args=args, train_dataset=_Rows(rows), data_collator=collate, callbacks=[_Losses()]
    )
    result = trainer.train()
    model.eval()
    from care_core.models.loading import save_policy

    save_policy(model, processor, out_dir)  # atomic: out_dir appears complete or not at all
    metrics = {
        "sft/train_loss": float(result.training_loss),
        "sft/first_logged_loss": losses[0] if losses else math.nan,
        "sft/last_logged_loss": losses[-1] if losses else math.nan,
        "sft/first_logged_lr": lrs[0] if lrs else math.nan,
        "sft/steps": float(result.global_step),
        "sft/examples": float(len(rows)),
        "sft/runtime_s": time.perf_counter() - start,
        "sft/source": str(source),
    }
    logger.info(
        "SFT: %d steps on %d examples from %s, loss %.4f",
        result.global_step,
        len(rows),
        source,
        result.training_loss,
    )
    return metrics
