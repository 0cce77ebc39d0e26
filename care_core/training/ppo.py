"""PPO policy update over advantage-annotated rollout rows, for any execution backend.

The loop is the same for plain PyTorch and DeepSpeed: groups are shuffled (seeded by the global
optimizer step) and cut into mini-batches of ``mini_batch_size`` prompts, each mini-batch into
micro-batches of ``micro_batch_size`` sequences. Every micro-batch loss is normalised by the whole
mini-batch (``denom``), so accumulated gradients equal the mini-batch gradient exactly. With W
data-parallel ranks, rank r takes micro-batches r, r+W, ...; ranks with fewer run a zero-weighted
extra micro-batch so all ranks do the same number of backward passes; losses are multiplied by
W because the backend averages gradients over ranks.

Guards (docs/reliability.md): a non-finite advantage or old log-prob is a ``SchemaError``-style
``ValueError`` naming the file and row; a non-finite loss or gradient norm raises
:class:`NonFiniteUpdateError` before the optimizer step (the plain backend checks the gradient norm
before stepping; under DeepSpeed the engine reports it after its step). The update stage then
stops without writing anything, so a bad step never reaches a saved model.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from care_core.algorithms.losses import aggregate_loss, kl_penalty, ppo_clip_loss
from care_core.algorithms.region import region_token_advantages
from care_core.algorithms.registry import algorithm_spec
from care_core.config import KLConfig, RegionConfig, policy_temperature
from care_core.errors import CareError
from care_core.models.forward import ForwardOutput, SequenceItem, pack, response_logprobs
from care_core.models.shared_prefix import shared_prefix_logprobs, supports_shared_prefix


class NonFiniteUpdateError(CareError, FloatingPointError):
    """A loss or gradient norm that is NaN/inf: the update stops before the optimizer applies it."""

    default_hint = "the rollouts or a model hold NaN/inf values, or the learning rate is too high: check the named step and groups"


@dataclass
class TrainRow:
    """One trained sequence (a rollout row after the advantage stage)."""

    group_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: list[float]
    loss_mask: list[int]
    think_span: list[int]
    answer_span: list[int]
    advantage: float
    role: str = "none"
    ref_logprobs: list[float] | None = None


@dataclass
class PPOSettings:
    """Loss and batching settings of one update (from the recipe, see ``settings_from_recipe``)."""

    eps_low: float = 0.2
    eps_high: float = 0.3
    dual_clip: float | None = 3.0
    agg: str = "token-mean"
    kl: KLConfig | None = field(default_factory=KLConfig)  # the recipe's ``loss.kl``; None: no KL term
    temperature: float = 1.0
    region: RegionConfig | None = field(default_factory=RegionConfig)  # None: broadcast A (GRPO)
    mini_batch_size: int = 8
    micro_batch_size: int = 4
    ppo_epochs: int = 1
    grad_clip: float = 1.0
    seed: int = 0
    pad_id: int = 0
    shared_prefix: bool = (
        True  # ``train.shared_prefix``: each prompt once per micro-batch (docs/method.md §14)
    )
    extra: dict[str, Any] = field(default_factory=dict)


def settings_from_recipe(recipe: Any, pad_id: int = 0) -> PPOSettings:
    """Map recipe keys to ``PPOSettings``; the algorithm's spec says whether regions are weighted
    (CARE's ``algorithm.care.region``) or the sequence advantage is broadcast (GRPO)."""
    return PPOSettings(
        eps_low=recipe.loss.eps_low,
        eps_high=recipe.loss.eps_high,
        dual_clip=recipe.loss.dual_clip,
        agg=recipe.loss.agg,
        kl=recipe.loss.kl if recipe.loss.kl.enable and recipe.loss.kl.beta > 0 else None,
        temperature=policy_temperature(recipe),
        region=algorithm_spec(recipe.algorithm).region,
        mini_batch_size=recipe.train.mini_batch_size,
        micro_batch_size=recipe.train.micro_batch_size,
        ppo_epochs=recipe.train.ppo_epochs,
        grad_clip=recipe.optim.grad_clip,
        seed=recipe.train.seed,
        pad_id=pad_id,
        shared_prefix=recipe.train.shared_prefix,
    )


class Backend(Protocol):
    """What the loop needs from an execution backend (plain torch or a DeepSpeed engine)."""

    rank: int
    world_size: int

    @property
    def module(self) -> torch.nn.Module: ...

    def forward_module(self) -> Callable[..., Any]: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> float: ...

    def lr(self) -> float: ...

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor: ...


class PlainBackend:
    """Single-process PyTorch: AdamW, grad-norm clipping, LR scheduler."""

    rank = 0
    world_size = 1

    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, grad_clip: float
    ):
        self._model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_clip = grad_clip

    @property
    def module(self) -> torch.nn.Module:
        return self._model

    def forward_module(self) -> Callable[..., Any]:
        return self._model

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        params = [p for p in self._model.parameters() if p.requires_grad]
        clip = self.grad_clip if self.grad_clip and self.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not math.isfinite(float(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteUpdateError(f"gradient norm is {float(norm)}; the optimizer step was not taken")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values


def rows_from_records(records: Sequence[dict[str, Any]], where: str) -> list[TrainRow]:
    """Build ``TrainRow`` objects from advantage-stage rows; errors name the file and row."""
    rows = []
    for i, r in enumerate(records):
        if r.get("advantage") is None:
            raise ValueError(f"{where} row {i}: field 'advantage' is missing (run the advantage stage first)")
        if not math.isfinite(float(r["advantage"])):
            raise ValueError(
                f"{where} row {i} (group_id={r.get('group_id')!r}): field 'advantage' is {r['advantage']}; "
                "a non-finite advantage would turn every weight NaN"
            )
        if not all(math.isfinite(float(x)) for x in r["old_logprobs"]):
            raise ValueError(
                f"{where} row {i} (group_id={r.get('group_id')!r}): field 'old_logprobs' holds NaN or infinite values"
            )
        n = len(r["response_ids"])
        for key in ("old_logprobs", "loss_mask"):
            if len(r[key]) != n:
                raise ValueError(
                    f"{where} row {i}: field {key!r} has {len(r[key])} values for {n} response tokens"
                )
        rows.append(
            TrainRow(
                group_id=str(r["group_id"]),
                prompt_ids=list(r["prompt_ids"]),
                response_ids=list(r["response_ids"]),
                old_logprobs=[float(x) for x in r["old_logprobs"]],
                loss_mask=[int(x) for x in r["loss_mask"]],
                think_span=list(r["think_span"] or [-1, -1]),
                answer_span=list(r["answer_span"] or [-1, -1]),
                advantage=float(r["advantage"]),
                role=str(r.get("role") or "none"),
            )
        )
    return rows


def plan_mini_batches(
    rows: Sequence[TrainRow], mini_batch_size: int, seed: int, step: int
) -> list[list[int]]:
    """Row indices per mini-batch: groups (prompts) shuffled by (seed, step), ``mini_batch_size``
    groups each; rows keep their order inside a group."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for i, row in enumerate(rows):
        groups.setdefault(row.group_id, []).append(i)
    keys = list(groups)
    order = np.random.default_rng([seed, step, 17]).permutation(len(keys))
    keys = [keys[i] for i in order]
    size = max(1, mini_batch_size)
    return [[i for k in keys[s : s + size] for i in groups[k]] for s in range(0, len(keys), size)]


def _pad_to(values: Sequence[Sequence[float]], width: int, dtype=torch.float32) -> torch.Tensor:
    out = torch.zeros((len(values), width), dtype=dtype)
    for row, v in enumerate(values):
        if len(v):
            out[row, : len(v)] = torch.tensor(list(v), dtype=dtype)
    return out


def forward_items(
    forward: Callable[..., Any],
    items: Sequence[SequenceItem],
    temperature: float,
    with_entropy: bool,
    pad_id: int,
    share: bool,
) -> ForwardOutput:
    """Response log-probs (and entropy) of ``items``: each shared prompt once when ``share``
    (``care_core.models.shared_prefix``), else every sequence whole."""
    if share:
        return shared_prefix_logprobs(forward, items, temperature, with_entropy=with_entropy, pad_id=pad_id)
    device = next(forward.parameters()).device if isinstance(forward, torch.nn.Module) else "cpu"
    batch = pack(items, device=device, pad_id=pad_id)
    return response_logprobs(forward, batch, temperature=temperature, with_entropy=with_entropy)


@torch.no_grad()
def sequence_logprobs(
    model: torch.nn.Module,
    rows: Sequence[TrainRow],
    mm_for: Callable[[TrainRow], dict[str, torch.Tensor]],
    micro_batch_size: int,
    temperature: float,
    pad_id: int = 0,
    shared_prefix: bool = True,
) -> list[list[float]]:
    """Teacher-forced per-token log-probs of every row's response (no grad)."""
    share = shared_prefix and supports_shared_prefix(model)
    out: list[list[float]] = []
    for s in range(0, len(rows), max(1, micro_batch_size)):
        chunk = rows[s : s + micro_batch_size]
        items = [SequenceItem(r.prompt_ids, r.response_ids, mm_for(r)) for r in chunk]
        lp = forward_items(model, items, temperature, False, pad_id, share).logprobs
        out.extend(lp[i, : len(r.response_ids)].cpu().tolist() for i, r in enumerate(chunk))
    return out


def _denominator(rows: Sequence[TrainRow], agg: str) -> float:
    if agg == "token-mean":
        return float(max(1, sum(sum(r.loss_mask) for r in rows)))
    return float(max(1, sum(1 for r in rows if sum(r.loss_mask) > 0)))


def micro_loss(
    forward: Callable[..., Any],
    rows: Sequence[TrainRow],
    mm_for: Callable[[TrainRow], dict[str, torch.Tensor]],
    cfg: PPOSettings,
    width: int,
    denom: float,
    device: torch.device,
    share: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one micro-batch (already divided by the mini-batch ``denom``) and its sums for metrics.
    ``share``: run each shared prompt once (``forward`` must then be the plain module)."""
    items = [SequenceItem(r.prompt_ids, r.response_ids, mm_for(r)) for r in rows]
    out = forward_items(forward, items, cfg.temperature, True, cfg.pad_id, share)
    pad = width - out.logprobs.shape[1]
    logp = F.pad(out.logprobs, (0, pad))
    entropy = F.pad(out.entropy, (0, pad)).detach()
    mask = _pad_to([r.loss_mask for r in rows], width).to(device)
    old = _pad_to([r.old_logprobs for r in rows], width).to(device)
    adv = region_token_advantages(
        torch.tensor([r.advantage for r in rows], dtype=torch.float32),
        mask.cpu(),
        torch.tensor([r.think_span for r in rows], dtype=torch.long),
        torch.tensor([r.answer_span for r in rows], dtype=torch.long),
        [r.role for r in rows],
        cfg.region,
    ).to(device)
    pg, m = ppo_clip_loss(
        logp, old, adv, mask, cfg.eps_low, cfg.eps_high, cfg.dual_clip, cfg.agg, denom=denom
    )
    loss = pg
    n_tok = float(mask.sum())
    sums = {
        "pg_loss": float(pg.detach()),
        "tokens": n_tok,
        "seqs": float(len(rows)),
        "clipfrac_low": m["clipfrac_low"] * n_tok,
        "clipfrac_high": m["clipfrac_high"] * n_tok,
        "clipfrac_dual": m["clipfrac_dual"] * n_tok,
        "ratio": m["ratio_mean"] * n_tok,
        "approx_kl_old": m["approx_kl_old"] * n_tok,
        "entropy": float((entropy * mask).sum()),
    }
    if cfg.kl is not None:
        ref = _pad_to([r.ref_logprobs or [] for r in rows], width).to(device)
        kl = kl_penalty(logp, ref, cfg.kl.type)
        kl_loss = aggregate_loss(kl, mask, cfg.agg, denom=denom)
        loss = loss + cfg.kl.beta * kl_loss
        sums["kl_loss"] = float(kl_loss.detach())
        sums["kl"] = float((kl.detach() * mask).sum())
    sums["loss"] = float(loss.detach())
    return loss, sums


def rank_schedule(
    micros: Sequence[Any], has_images: Sequence[bool], rank: int, world: int
) -> list[tuple[Any, bool]]:
    """This rank's micro-batches as ``(micro, real)``; ``real=False`` marks a zero-weighted filler.

    With one rank: every micro-batch in order. With W ranks the micro-batches are dealt out in
    rounds of W, image micro-batches first, then text-only ones, and each round is padded with
    fillers of its own kind: at every micro step all ranks run the same kind of forward/backward
    (same modules, same parameters with gradients, same order), which ZeRO-2/3 gradient
    reductions and ZeRO-3 parameter traces require. Every real micro-batch runs exactly once.
    """
    if world == 1:
        return [(m, True) for m in micros]
    out: list[tuple[Any, bool]] = []
    for kind in (True, False):
        same = [m for m, h in zip(micros, has_images, strict=True) if h == kind]
        for start in range(0, len(same), world):
            chunk = same[start : start + world]
            out.append((chunk[rank], True) if rank < len(chunk) else (chunk[0], False))
    return out


def train_on_rows(
    backend: Backend,
    rows: list[TrainRow],
    mm_for: Callable[[TrainRow], dict[str, torch.Tensor]],
    cfg: PPOSettings,
    start_step: int = 0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[list[dict[str, float]], int]:
    """Run ``ppo_epochs`` over ``rows``; one optimizer step per mini-batch.

    Returns (per-step metrics, number of optimizer steps taken). Rows must carry ``ref_logprobs``
    when the KL term is on.
    """
    device = next(backend.module.parameters()).device
    width = max(1, max(len(r.response_ids) for r in rows))
    history: list[dict[str, float]] = []
    step = start_step
    forward = backend.forward_module()
    backend.module.train()
    share = cfg.shared_prefix and isinstance(backend, PlainBackend) and supports_shared_prefix(backend.module)
    for _epoch in range(max(1, cfg.ppo_epochs)):
        for mini in plan_mini_batches(rows, cfg.mini_batch_size, cfg.seed, step):
            t0 = time.perf_counter()
            mini_rows = [rows[i] for i in mini]
            denom = _denominator(mini_rows, cfg.agg)
            micros = [
                mini_rows[s : s + cfg.micro_batch_size]
                for s in range(0, len(mini_rows), max(1, cfg.micro_batch_size))
            ]
            totals: dict[str, float] = {}
            for micro, real in rank_schedule(
                micros, [any(mm_for(r) for r in m) for m in micros], backend.rank, backend.world_size
            ):
                loss, sums = micro_loss(forward, micro, mm_for, cfg, width, denom, device, share)
                scale = float(backend.world_size) if real else 0.0
                backend.backward(loss * scale)
                if real:
                    for key, value in sums.items():
                        totals[key] = totals.get(key, 0.0) + value
            keys = sorted(
                {
                    "pg_loss",
                    "tokens",
                    "seqs",
                    "clipfrac_low",
                    "clipfrac_high",
                    "clipfrac_dual",
                    "ratio",
                    "approx_kl_old",
                    "entropy",
                    "kl_loss",
                    "kl",
                    "loss",
                }
            )
            reduced = backend.all_reduce_sum(
                torch.tensor([totals.get(k, 0.0) for k in keys], dtype=torch.float64)
            )
            t = dict(zip(keys, reduced.tolist(), strict=True))
            where = f"optimizer step {step + 1} (mini-batch groups {sorted({r.group_id for r in mini_rows})})"
            for key in ("loss", "pg_loss", "kl_loss"):
                if not math.isfinite(t[key]):
                    raise NonFiniteUpdateError(
                        f"{where}: {key} is {t[key]}; the update stopped before the optimizer step"
                    )
            try:
                grad_norm = backend.step()
            except NonFiniteUpdateError as exc:
                raise NonFiniteUpdateError(f"{where}: {exc}") from None
            step += 1
            n_tok = max(1.0, t["tokens"])
            metrics = {
                "actor/loss": t["loss"],
                "actor/pg_loss": t["pg_loss"],
                "actor/pg_clipfrac_low": t["clipfrac_low"] / n_tok,
                "actor/pg_clipfrac_high": t["clipfrac_high"] / n_tok,
                "actor/pg_clipfrac_dual": t["clipfrac_dual"] / n_tok,
                "actor/ppo_ratio_mean": t["ratio"] / n_tok,
                "actor/ppo_kl": t["approx_kl_old"] / n_tok,
                "actor/entropy": t["entropy"] / n_tok,
                "actor/kl": t["kl"] / n_tok if cfg.kl is not None else 0.0,
                "actor/kl_loss": t["kl_loss"] if cfg.kl is not None else 0.0,
                "actor/grad_norm": grad_norm,
                "actor/lr": backend.lr(),
                "actor/tokens": t["tokens"],
                "actor/sequences": t["seqs"],
                "perf/update_step_s": time.perf_counter() - t0,
            }
            metrics["perf/update_tokens_per_s"] = t["tokens"] / metrics["perf/update_step_s"]
            history.append(metrics)
            if on_step is not None:
                on_step(step, metrics)
    backend.module.eval()
    return history, step - start_step


def summarize(history: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the steps (``actor/loss_first`` keeps the first step's loss)."""
    if not history:
        return {}
    out = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
    out["actor/loss_first"] = history[0]["actor/loss"]
    out["actor/steps"] = float(len(history))
    return out
