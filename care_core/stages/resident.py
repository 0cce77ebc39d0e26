"""``care train``'s round runner: the policy, reference, optimizer and engine stay in memory.

The pipeline runs every round as three containers that hand files to each other (rollouts,
advantages, a checkpoint), so each loads the policy and re-reads its inputs. ``care train`` runs
the same three steps on objects it keeps for the whole run (docs/method.md §14):

- the policy module, its AdamW state and LR schedule, and the frozen reference policy (KL on);
- the rollout engine: the ``hf`` engine decodes with the policy module itself; a ``vllm`` engine is
  built once and receives the policy's weights after every update (``sync_weights``), as verl's
  rollout sharding manager and TRL's colocate mode do;
- every prompt encoded once (token ids and vision tensors), reused by rollout and update;
- rollouts go to the advantage step and the update as in-memory rows (one Arrow table), never
  through Parquet; CARE's think-span embeddings come from the decoder's hidden states.

The steps are the stage functions' own (``collect_rollouts``, ``compute_advantages``,
``prepare_rows`` + ``train_on_rows``), so a round computes what the pipeline computes. Only a
committed round writes anything (``save``): the policy, its optimizer state and the round's
advantage table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from care_core.algorithms import algorithm_spec
from care_core.config import Recipe
from care_core.rollout import make_engine
from care_core.schema import ROLLOUT_SCHEMA, conform, read_examples
from care_core.stages.advantage import compute_advantages
from care_core.stages.rollout import (
    HIDDEN,
    RoundContext,
    RowBuilder,
    check_rollout_inputs,
    collect_rollouts,
    rollout_rows,
)
from care_core.stages.update import (
    TRAINER_STATE,
    configure_trainable,
    load_reference,
    prepare_rows,
    save_model,
    total_optimizer_steps,
    update_metrics,
)
from care_core.training.optim import (
    build_optimizer,
    build_scheduler,
    load_optim_state,
    resolve_state_file,
    save_optim_state,
)
from care_core.training.ppo import PlainBackend, rows_from_records, settings_from_recipe, train_on_rows

ADVANTAGES_FILE = "advantages.parquet"


class ResidentRun:
    """Everything ``care train`` keeps between rounds; ``run_round`` does one RL round."""

    def __init__(
        self,
        recipe: Recipe,
        data_dir: Path,
        policy_path: str,
        reference_path: str,
        state_dir: str | None,
        global_step: int = 0,
    ):
        from care_core.models import load_policy

        self.recipe = recipe
        self.spec = algorithm_spec(recipe.algorithm)
        self.train_path = Path(data_dir) / "train.parquet"
        self.examples = read_examples(self.train_path).to_pylist()
        check_rollout_inputs(recipe, policy_path, self.train_path, len(self.examples))
        self.model, self.processor = load_policy(
            policy_path,
            dtype=recipe.model.dtype,
            attn_implementation=recipe.model.attn_implementation,
            cache_dir=recipe.model.cache_dir,
            writable=True,
        )
        configure_trainable(self.model, recipe)
        self.pad_id = int(self.processor.tokenizer.pad_token_id or 0)
        self.settings = settings_from_recipe(recipe, self.pad_id)
        self.reference: torch.nn.Module | str = reference_path
        if self.settings.kl is not None:
            self.reference = load_reference(recipe, reference_path, self.model)
        self.optimizer = build_optimizer(self.model.parameters(), recipe.optim)
        self.scheduler = build_scheduler(self.optimizer, recipe.optim, total_optimizer_steps(recipe))
        state_file = resolve_state_file(state_dir)
        self.global_step = (
            load_optim_state(state_file, self.optimizer, self.scheduler) if state_file else global_step
        )
        self.backend = PlainBackend(self.model, self.optimizer, self.scheduler, recipe.optim.grad_clip)
        self.engine = make_engine(
            recipe.rollout.engine,
            self.model,
            self.processor,
            policy_path,
            recipe.rollout,
            recipe.model.dtype,
            recipe.train.seed,
            with_hidden=self.spec.needs_embeddings,
        )
        self.builder = RowBuilder(self.processor, recipe)
        self.requests: dict[int, Any] = {}
        self.last_table: pa.Table | None = None

    def run_round(self, round_index: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Rollout -> advantage -> update of round ``round_index``; returns the three steps' metrics
        (named as the stage functions name them)."""
        self.model.eval()
        ctx = RoundContext(self.recipe, self.spec, self.model, self.processor, self.engine, self.builder, self.examples,
                       self.train_path, round_index, self.pad_id, request_cache=self.requests)  # fmt: skip
        groups, rgr_rows, m_roll = collect_rollouts(ctx)
        rows = rollout_rows(groups, rgr_rows)
        where = f"round {round_index} rollouts"
        t0 = time.perf_counter()
        table = conform(pa.Table.from_pylist([{k: v for k, v in r.items() if k != HIDDEN} for r in rows]),
                        ROLLOUT_SCHEMA, where)  # fmt: skip
        table, m_adv = compute_advantages(table, self.recipe, where=where)
        m_adv["metrics"]["perf/advantage_stage_s"] = time.perf_counter() - t0
        self.last_table = table

        t1 = time.perf_counter()
        train_rows = rows_from_records(table.drop_columns(["images", "embedding"]).to_pylist(), where)
        vision = {rows_[0]["group_id"]: request.mm_inputs for _, request, rows_ in groups}
        prep = prepare_rows(self.recipe, self.model, train_rows, lambda row: vision[row.group_id], self.reference,
                            self.pad_id)  # fmt: skip
        t2 = time.perf_counter()
        history, n_steps = train_on_rows(
            self.backend,
            train_rows,
            lambda row: vision[row.group_id],
            self.settings,
            start_step=self.global_step,
        )
        self.global_step += n_steps
        train_s = time.perf_counter() - t2
        self.engine.sync_weights(self.model)  # vLLM: push the new weights; hf: the same module
        m_upd = update_metrics(history, prep, train_s, train_rows, self.global_step, backend="plain")
        m_upd["perf/update_stage_s"] = time.perf_counter() - t1
        return m_roll, m_adv, m_upd

    def save(self, out_dir: Path) -> None:
        """Write the policy (+ processor), its optimizer state and the last round's advantage table."""
        save_model(self.model, self.processor, out_dir)
        save_optim_state(out_dir / TRAINER_STATE, self.optimizer, self.scheduler, self.global_step)
        if self.last_table is not None:
            pq.write_table(self.last_table, out_dir.parent / ADVANTAGES_FILE)

    def close(self) -> None:
        """Release the engine (a vLLM engine holds its KV cache until closed)."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()
