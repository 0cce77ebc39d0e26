"""Update stage: one PPO pass of the policy over a round's advantage-annotated rollouts.

``run_update(recipe, model_path, rollouts_path, out_dir, reference_path=None, state_dir=None)``
loads the policy from ``model_path`` and the frozen reference from ``reference_path`` (default:
``model_path``), (re)computes old log-probs when ``train.recompute_old_logprobs`` is set,
computes reference log-probs, trains (``care_core.training.ppo``) and writes the updated HF model
(+ processor) to ``out_dir`` and the optimizer/scheduler state to ``out_dir/trainer_state``.
``state_dir`` (a previous ``trainer_state`` folder, or a previous update output folder) is read to
continue AdamW moments and the LR schedule across rounds; it is never modified, so every round's
output is an immutable checkpoint.

Safety (docs/reliability.md): the rollouts are read and checked (empty file, non-finite
advantage/reward/log-prob: a named error) before any model is loaded; a non-finite loss or gradient
norm stops the update before the optimizer step (``NonFiniteUpdateError``); the stage chooses to
STOP, never to skip a step. ``out_dir`` may not be, or contain, the input model, the reference or
the state folder. Everything is built in a private sibling folder and renamed to ``out_dir`` when
complete, so a failed or killed update leaves ``out_dir`` as it was.

``train.distributed.backend: deepspeed`` runs the same loop under DeepSpeed ZeRO in
``procs_per_node`` processes launched by torchrun/deepspeed (``care_core.training.deepspeed_runner``);
this module is the worker entry point (``python -m care_core.stages.update --worker SPEC``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from care_core.config import Recipe, build_recipe, recipe_to_dict
from care_core.schema import ROLLOUT_SCHEMA, SchemaError, conform, read_parquet
from care_core.training.optim import (
    build_optimizer,
    build_scheduler,
    load_optim_state,
    resolve_state_file,
    save_optim_state,
    steps_per_round,
)
from care_core.training.ppo import (
    PlainBackend,
    TrainRow,
    rows_from_records,
    sequence_logprobs,
    settings_from_recipe,
    summarize,
    train_on_rows,
)

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state"


def total_optimizer_steps(recipe: Recipe) -> int:
    """Optimizer steps of the whole run (sets the LR schedule length)."""
    t = recipe.train
    return max(1, t.rounds) * steps_per_round(t.prompts_per_round, t.mini_batch_size, t.ppo_epochs)


def read_update_rows(rollouts_path: str | Path) -> tuple[list[TrainRow], dict[str, list[dict[str, Any]]]]:
    """Advantage-stage rows -> (``TrainRow`` list, images per ``group_id``)."""
    table = conform(read_parquet(rollouts_path), ROLLOUT_SCHEMA, str(rollouts_path))
    for col in ("advantage", "role"):
        if col not in table.column_names:
            raise SchemaError(
                f"{rollouts_path}: missing column {col!r}; run the advantage stage on the rollouts first"
            )
    if table.num_rows == 0:
        raise SchemaError(f"{rollouts_path}: no rollout rows to train on")
    if "reward" in table.column_names:
        for i, value in enumerate(table.column("reward").to_pylist()):
            if value is not None and not math.isfinite(value):
                raise SchemaError(f"{rollouts_path} row {i}: field 'reward' is {value} (NaN or infinite)")
    records = table.to_pylist()
    images: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("images"):
            images.setdefault(str(r["group_id"]), r["images"])
    return rows_from_records(records, str(rollouts_path)), images


def make_mm_lookup(
    processor: Any, images: dict[str, list[dict[str, Any]]], data_cfg: Any, where: str
) -> Callable[[TrainRow], dict[str, torch.Tensor]]:
    """Vision tensors per group, re-made from the images stored with the rollouts (decoded and
    resized exactly as the prompt encoder does; cached), checked against the number of image
    placeholders in each row's prompt."""
    from care_core.data.prompting import decode_images

    cache: dict[str, dict[str, torch.Tensor]] = {}
    image_token = getattr(processor, "image_token_id", None)
    merge = getattr(processor.image_processor, "merge_size", 1) ** 2

    def lookup(row: TrainRow) -> dict[str, torch.Tensor]:
        if row.group_id not in cache:
            structs = images.get(row.group_id) or []
            if structs:
                pils = decode_images({"id": row.group_id, "images": structs}, data_cfg.image_max_pixels)
                out = processor.image_processor(images=pils, return_tensors="pt")
                cache[row.group_id] = {
                    "pixel_values": out["pixel_values"],
                    "image_grid_thw": out["image_grid_thw"],
                }
            else:
                cache[row.group_id] = {}
        mm = cache[row.group_id]
        if image_token is not None:
            expected = int(mm["image_grid_thw"].prod(dim=-1).sum()) // merge if mm else 0
            found = sum(1 for t in row.prompt_ids if t == image_token)
            if found != expected:
                raise SchemaError(
                    f"{where}: group {row.group_id}: prompt has {found} image tokens but its stored images give {expected}"
                )
        return mm

    return lookup


def prepare_rows(
    recipe: Recipe,
    model: torch.nn.Module,
    rows: list[TrainRow],
    mm_for: Callable,
    reference: str | torch.nn.Module,
    pad_id: int,
) -> dict[str, float]:
    """Recompute old log-probs (optional) and attach reference log-probs; returns timing info.

    ``reference``: the frozen reference policy, loaded (``care train`` keeps it in memory) or a path."""
    cfg = settings_from_recipe(recipe, pad_id)
    t0 = time.perf_counter()
    if recipe.train.recompute_old_logprobs:
        for row, lp in zip(
            rows,
            sequence_logprobs(
                model, rows, mm_for, cfg.micro_batch_size, cfg.temperature, pad_id, cfg.shared_prefix
            ),
            strict=True,
        ):
            row.old_logprobs = lp
    if cfg.kl is not None:
        ref = (
            reference
            if isinstance(reference, torch.nn.Module)
            else load_reference(recipe, str(reference), model)
        )
        for row, lp in zip(
            rows,
            sequence_logprobs(
                ref, rows, mm_for, cfg.micro_batch_size, cfg.temperature, pad_id, cfg.shared_prefix
            ),
            strict=True,
        ):
            row.ref_logprobs = lp
        del ref
    return {"perf/ref_logprob_s": time.perf_counter() - t0}


def load_reference(recipe: Recipe, reference_path: str, like: torch.nn.Module) -> torch.nn.Module:
    """The frozen reference policy from ``reference_path``, on ``like``'s device, without gradients.

    Only the model is loaded (no processor); when ``like`` (the policy) was loaded from a folder with
    the same ``config.json``, its parsed config is reused rather than parsed again."""
    import copy

    from care_core.models.loading import load_model, same_config

    source = str(getattr(like, "name_or_path", "") or "")
    config = copy.deepcopy(like.config) if source and same_config(source, reference_path) else None
    ref = load_model(
        reference_path,
        dtype=recipe.model.dtype,
        attn_implementation=recipe.model.attn_implementation,
        cache_dir=recipe.model.cache_dir,
        config=config,
    )
    ref.to(next(like.parameters()).device)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def configure_trainable(model: torch.nn.Module, recipe: Recipe) -> None:
    """Freeze the vision tower (``model.freeze_vision``) and turn on gradient checkpointing."""
    if recipe.model.freeze_vision:
        visual = getattr(model, "visual", None) or getattr(getattr(model, "model", None), "visual", None)
        if visual is None:
            raise ValueError(
                f"model.freeze_vision: {type(model).__name__} has no vision tower attribute 'visual'"
            )
        visual.requires_grad_(False)
    if recipe.model.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False


def save_model(model: torch.nn.Module, processor: Any, out_dir: Path, state_dict: dict | None = None) -> None:
    """Write into the update's private staging folder (published as a whole by ``run_update``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, state_dict=state_dict)
    processor.save_pretrained(out_dir)


@dataclass
class PreparedUpdate:
    """A loaded policy with its checked rows, ready for ``train_on_rows``."""

    model: torch.nn.Module
    processor: Any
    pad_id: int
    rows: list[TrainRow]
    mm_for: Callable[[TrainRow], dict[str, torch.Tensor]]
    prep: dict[str, float]


def load_and_prepare(
    recipe: Recipe, model_path: str, rollouts_path: str, reference_path: str
) -> PreparedUpdate:
    """The one load path of both backends: read + check the rows (before loading any model), seed,
    load the policy, attach old/reference log-probs, freeze/checkpoint as configured."""
    from care_core.models import load_policy

    rows, images = read_update_rows(rollouts_path)
    torch.manual_seed(recipe.train.seed)
    model, processor = load_policy(
        model_path,
        dtype=recipe.model.dtype,
        attn_implementation=recipe.model.attn_implementation,
        cache_dir=recipe.model.cache_dir,
        writable=True,
    )
    pad_id = int(processor.tokenizer.pad_token_id or 0)
    mm_for = make_mm_lookup(processor, images, recipe.data, str(rollouts_path))
    prep = prepare_rows(recipe, model, rows, mm_for, reference_path, pad_id)
    configure_trainable(model, recipe)
    return PreparedUpdate(model, processor, pad_id, rows, mm_for, prep)


def _plain_update(
    recipe: Recipe,
    model_path: str,
    rollouts_path: str,
    out_dir: Path,
    reference_path: str,
    state_dir: str | None,
) -> dict[str, Any]:
    p = load_and_prepare(recipe, model_path, rollouts_path, reference_path)
    optimizer = build_optimizer(p.model.parameters(), recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.optim, total_optimizer_steps(recipe))
    state_file = resolve_state_file(state_dir)
    start_step = load_optim_state(state_file, optimizer, scheduler) if state_file else 0
    backend = PlainBackend(p.model, optimizer, scheduler, recipe.optim.grad_clip)
    cfg = settings_from_recipe(recipe, p.pad_id)
    t0 = time.perf_counter()
    history, n_steps = train_on_rows(backend, p.rows, p.mm_for, cfg, start_step=start_step)
    train_s = time.perf_counter() - t0
    save_model(p.model, p.processor, out_dir)
    save_optim_state(out_dir / TRAINER_STATE, optimizer, scheduler, start_step + n_steps)
    return update_metrics(history, p.prep, train_s, p.rows, start_step + n_steps, backend="plain")


def check_output_dir(out_dir: Path, inputs: dict[str, str | Path | None]) -> None:
    """Refuse an ``out_dir`` that is, or contains, one of the (local) input folders/files."""
    out = out_dir.resolve()
    for flag, value in inputs.items():
        if not value or not Path(value).exists():
            continue  # a hub id or tiny:// id
        src = Path(value).resolve()
        if src == out or out in src.parents:
            raise ValueError(
                f"--out {out_dir} would overwrite the input {flag} {value}; "
                "the update never modifies its inputs: choose a new output folder"
            )


def update_metrics(
    history: list[dict[str, float]],
    prep: dict[str, float],
    train_s: float,
    rows: list[TrainRow],
    global_step: int,
    backend: str,
) -> dict[str, Any]:
    out: dict[str, Any] = summarize(history)
    out.update(prep)
    tokens = sum(h["actor/tokens"] for h in history)
    out.update(
        {
            "perf/update_s": train_s,
            "perf/update_tokens_per_s": tokens / train_s if train_s > 0 else math.nan,
            "update/rows": float(len(rows)),
            "update/global_step": float(global_step),
            "update/backend": backend,
            "history": history,
        }
    )
    return out


def run_update(
    recipe: Recipe,
    model_path: str | None,
    rollouts_path: str | Path,
    out_dir: str | Path,
    reference_path: str | None = None,
    state_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train the policy on one round's rollouts; write the new policy and optimizer state to ``out_dir``.

    ``model_path`` None: the recipe's base model; ``reference_path`` None: the starting policy."""
    from care_core.fsio import publish_dir, staging_dir

    out_dir = Path(out_dir)
    if not model_path:
        from care_core.models import resolve_model_path

        model_path = resolve_model_path(recipe.model)
    reference_path = str(reference_path or model_path)
    check_output_dir(
        out_dir,
        {
            "--model": model_path,
            "--reference": reference_path,
            "--state": state_dir,
            "--rollouts": rollouts_path,
        },
    )
    if not Path(rollouts_path).is_file():
        raise FileNotFoundError(f"--rollouts {rollouts_path}: no such file")
    from care_core.models.loading import check_model_path

    check_model_path(model_path, "--model")  # a missing local folder is named here, not looked up on the hub
    check_model_path(reference_path, "--reference")
    start = time.perf_counter()
    staging = staging_dir(out_dir)
    try:
        if recipe.train.distributed.backend == "deepspeed":
            from care_core.training.deepspeed_runner import launch

            spec = {
                "recipe": recipe_to_dict(recipe),
                "model_path": str(model_path),
                "rollouts_path": str(rollouts_path),
                "out_dir": str(staging),
                "reference_path": reference_path,
                "state_dir": str(state_dir) if state_dir else None,
            }
            metrics = launch(spec, recipe.train.distributed, module="care_core.stages.update")
        else:
            metrics = _plain_update(
                recipe,
                str(model_path),
                str(rollouts_path),
                staging,
                reference_path,
                str(state_dir) if state_dir else None,
            )
        metrics["perf/update_stage_s"] = time.perf_counter() - start
        (staging / TRAINER_STATE).mkdir(parents=True, exist_ok=True)
        (staging / TRAINER_STATE / "metrics.json").write_text(json.dumps(metrics, default=float, indent=1))
        publish_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics


# --------------------------------------------------------------------------- DeepSpeed worker
def _deepspeed_worker(spec_path: str) -> None:
    """One rank of a DeepSpeed ZeRO update (started by torchrun/deepspeed)."""
    import torch.distributed as dist

    from care_core.training.deepspeed_runner import DeepSpeedBackend, init_distributed

    spec = json.loads(Path(spec_path).read_text())
    recipe = build_recipe(spec["recipe"], origin=spec_path)
    out_dir = Path(spec["out_dir"])
    rank, world = init_distributed()
    p = load_and_prepare(recipe, spec["model_path"], spec["rollouts_path"], spec["reference_path"])
    backend = DeepSpeedBackend(p.model, recipe, total_optimizer_steps(recipe))
    start_step = backend.load_state(resolve_state_dir_for_ds(spec["state_dir"]))
    cfg = settings_from_recipe(recipe, p.pad_id)
    t0 = time.perf_counter()
    history, n_steps = train_on_rows(backend, p.rows, p.mm_for, cfg, start_step=start_step)
    train_s = time.perf_counter() - t0
    state_dict = backend.full_state_dict()
    if rank == 0:
        save_model(backend.module, p.processor, out_dir, state_dict=state_dict)
    backend.save_state(out_dir / TRAINER_STATE, start_step + n_steps)
    if rank == 0:
        metrics = update_metrics(
            history,
            p.prep,
            train_s,
            p.rows,
            start_step + n_steps,
            backend=f"deepspeed-zero{recipe.train.distributed.zero_stage}",
        )
        metrics["update/world_size"] = float(world)
        (out_dir / TRAINER_STATE / "worker_metrics.json").write_text(json.dumps(metrics, default=float))
    dist.barrier()
    dist.destroy_process_group()


def resolve_state_dir_for_ds(state_dir: str | None) -> Path | None:
    """A DeepSpeed state folder: ``state_dir`` itself or its ``trainer_state`` child (if it holds one)."""
    if not state_dir:
        return None
    for cand in (Path(state_dir), Path(state_dir) / TRAINER_STATE):
        if (cand / "deepspeed").is_dir():
            return cand
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DeepSpeed update worker (internal; use `care update`)")
    parser.add_argument("--worker", required=True, help="JSON spec written by run_update")
    parser.add_argument(
        "--local_rank", "--local-rank", type=int, default=None, help="set by the deepspeed launcher"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _deepspeed_worker(args.worker)


if __name__ == "__main__":
    main()
