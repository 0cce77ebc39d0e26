"""Advantage stage: rollout Parquet in -> rollout Parquet out with ``advantage``, ``role``, ``group_kind``.

Asks the recipe's algorithm spec (``algorithm_spec(recipe.algorithm)``) what it needs, groups the
rows by ``group_id``, validates them (errors name file, group, sample and column), runs the spec's
estimator on one padded batch of groups and writes every input column plus the three new ones
(input row order kept). The input file is never modified. Returns what it saw (rows, groups, group
kinds) and, under ``metrics``, the diagnostics of docs/method.md §11 that need no model, named in the
project's metric vocabulary (docs/interfaces.md §5): ``advantages/*``, ``roles/<role>``,
``<algorithm>/<diagnostic>`` (the spec's own, e.g. ``care/k_prime_mean``) and ``perf/advantage_s``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from care_core.algorithms import (
    GROUP_KIND,
    GROUP_KIND_NAMES,
    ROLE,
    ROLE_NAMES,
    AdvantageResult,
    AlgorithmSpec,
    GroupBatch,
    algorithm_spec,
    filter_groups,
    sequence_logprob,
)
from care_core.algorithms.registry import json_float as _f
from care_core.config import Recipe
from care_core.schema import ADVANTAGE_COLUMNS, SchemaError, read_rollouts, write_rollouts

log = logging.getLogger(__name__)

SOURCES = ("rollout", "rgr")


@dataclass
class _Rows:
    """Flat per-row arrays of one rollout table (R rows)."""

    group_id: np.ndarray  # [R] object (str)
    sample_index: np.ndarray  # [R] int64
    is_rgr: np.ndarray  # [R] bool
    replaces: np.ndarray  # [R] int64
    reward: np.ndarray  # [R] float64
    accuracy: np.ndarray  # [R] float64
    fmt: np.ndarray  # [R] float64
    resp_len: np.ndarray  # [R] int64
    think: np.ndarray  # [R, 2] int64
    answer: np.ndarray  # [R, 2] int64
    logprobs: np.ndarray  # [sum resp_len] float32
    embedding: np.ndarray | None  # [R, D] float32 (zeros for RGR rows), or None


def _list_parts(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(lengths [R], flat values) of a list column; nulls count as empty lists."""
    col = table.column(name).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    return lengths, values


class _Checker:
    """Builds error messages naming file, group, sample and column."""

    def __init__(self, where: str, group_id: np.ndarray, sample_index: np.ndarray):
        self.where, self.group_id, self.sample_index = where, group_id, sample_index

    def fail_if(self, bad: np.ndarray, column: str, problem: str) -> None:
        if not bad.any():
            return
        rows = np.flatnonzero(bad)
        i = int(rows[0])
        more = f" ({len(rows) - 1} more row(s) like it)" if len(rows) > 1 else ""
        raise SchemaError(
            f"{self.where}: row {i} (group_id={self.group_id[i]!r}, sample_index={self.sample_index[i]}): "
            f"column {column!r} {problem}{more}"
        )


def _read_rows(table: pa.Table, where: str, need_embeddings: bool) -> _Rows:
    """Extract and validate the columns the estimators need."""
    for name in ("group_id", "sample_index", "source", "replaces", "reward", "accuracy"):
        nulls = table.column(name).null_count
        if nulls:
            first = int(np.flatnonzero(table.column(name).is_null().to_numpy(zero_copy_only=False))[0])
            raise SchemaError(f"{where}: row {first}: column {name!r} is null ({nulls} null value(s))")
    group_id = np.asarray(table.column("group_id").to_pylist(), dtype=object)
    sample_index = table.column("sample_index").to_numpy().astype(np.int64)
    check = _Checker(where, group_id, sample_index)
    source = np.asarray(table.column("source").to_pylist(), dtype=object)
    check.fail_if(~np.isin(source, SOURCES), "source", f"must be one of {list(SOURCES)}")
    is_rgr = source == "rgr"
    replaces = table.column("replaces").to_numpy().astype(np.int64)
    reward = table.column("reward").to_numpy().astype(np.float64)
    accuracy = table.column("accuracy").to_numpy().astype(np.float64)
    fmt = pc.fill_null(table.column("format"), 0.0).to_numpy().astype(np.float64)
    check.fail_if(~np.isfinite(reward), "reward", "is NaN or infinite")
    # r = (1 - lam) * accuracy + lam * format with all three in [0, 1] (care_core.rewards.reward)
    out_of_range = (reward < 0) | (reward > 1)
    first = f"{reward[out_of_range][0]:g}" if out_of_range.any() else ""
    check.fail_if(out_of_range, "reward", f"is {first}, outside the verifier's range [0, 1]")
    check.fail_if(~np.isfinite(accuracy), "accuracy", "is NaN or infinite")
    check.fail_if((accuracy < 0) | (accuracy > 1), "accuracy", "must lie in [0, 1]")

    resp_len, _ = _list_parts(table, "response_ids")
    spans = {}
    for name in ("think_span", "answer_span"):
        lengths, values = _list_parts(table, name)
        check.fail_if(lengths != 2, name, "must hold exactly 2 values [start, end) (ragged span)")
        span = values.astype(np.int64).reshape(-1, 2)
        absent = (span[:, 0] == -1) & (span[:, 1] == -1)
        ok = absent | ((span[:, 0] >= 0) & (span[:, 0] <= span[:, 1]) & (span[:, 1] <= resp_len))
        check.fail_if(~ok, name, "must be [-1, -1] or 0 <= start <= end <= len(response_ids)")
        spans[name] = span
    lp_len, logprobs = _list_parts(table, "old_logprobs")
    check.fail_if(lp_len != resp_len, "old_logprobs", "must have one value per response token")
    lp_row = np.repeat(np.arange(len(resp_len)), lp_len)
    bad_lp = np.zeros(len(resp_len), dtype=bool)
    bad_lp[lp_row[~np.isfinite(logprobs)]] = True
    check.fail_if(bad_lp, "old_logprobs", "holds NaN or infinite values")

    embedding = None
    if need_embeddings:
        emb_len, emb_values = _list_parts(table, "embedding")
        base = emb_len[~is_rgr]
        dim = int(np.bincount(base).argmax()) if base.size else 0
        check.fail_if(~is_rgr & (emb_len == 0), "embedding", "is empty")
        check.fail_if(~is_rgr & (emb_len != dim), "embedding", f"has the wrong size (expected {dim})")
        full = emb_len == dim  # RGR rows may carry no embedding (they are never selected by distance)
        values = np.asarray(emb_values, dtype=np.float32)
        if full.all():
            embedding = values.reshape(-1, dim)
        else:
            embedding = np.zeros((len(emb_len), dim), dtype=np.float32)
            embedding[full] = values[np.repeat(full, emb_len)].reshape(-1, dim)
        norm = np.sqrt(np.einsum("ij,ij->i", embedding, embedding))
        bad = ~np.isfinite(norm)
        if bad.any():  # only the suspicious rows get the exact element check
            bad[bad] = ~np.isfinite(embedding[bad]).all(axis=1)
        check.fail_if(bad, "embedding", "holds NaN or infinite values")
        check.fail_if(~is_rgr & (norm < 1e-8), "embedding", "has zero norm")
    return _Rows(
        group_id, sample_index, is_rgr, replaces, reward, accuracy, fmt, resp_len,
        spans["think_span"], spans["answer_span"], logprobs, embedding,
    )  # fmt: skip


@dataclass
class _Layout:
    """Where each row sits in the padded [B, N] batch."""

    group: np.ndarray  # [R] group index
    col: np.ndarray  # [R] column
    group_names: np.ndarray  # [B]
    width: int  # N


def _layout(rows: _Rows, where: str) -> _Layout:
    names, group = np.unique(rows.group_id, return_inverse=True)
    check = _Checker(where, rows.group_id, rows.sample_index)
    order = np.lexsort((rows.sample_index, rows.is_rgr, group))
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    first_of = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    col = np.empty(len(order), dtype=np.int64)
    col[order] = np.arange(len(order)) - first_of

    # duplicate sample_index inside a group (rollout and RGR rows share one index space)
    by_index = np.lexsort((rows.sample_index, group))
    same = (group[by_index][1:] == group[by_index][:-1]) & (
        rows.sample_index[by_index][1:] == rows.sample_index[by_index][:-1]
    )
    dup = np.zeros(len(group), dtype=bool)
    dup[by_index[1:][same]] = True
    check.fail_if(dup, "sample_index", "is duplicated inside its group")
    check.fail_if(~rows.is_rgr & (rows.replaces != -1), "replaces", "must be -1 for source 'rollout'")
    width = int(col.max()) + 1 if len(col) else 0
    return _Layout(group, col, names, width)


def _rgr_columns(rows: _Rows, layout: _Layout, where: str) -> np.ndarray:
    """Map each RGR row's ``replaces`` (a sample_index) to the column of that rollout row ([R], -1 else)."""
    check = _Checker(where, rows.group_id, rows.sample_index)
    ro = np.flatnonzero(~rows.is_rgr)
    keys = zip(layout.group[ro].tolist(), rows.sample_index[ro].tolist(), strict=True)
    lookup = dict(zip(keys, layout.col[ro].tolist(), strict=True))
    target = np.full(len(rows.group_id), -1, dtype=np.int64)
    rg = np.flatnonzero(rows.is_rgr)
    for i in rg:  # RGR rows only: at most one per group
        target[i] = lookup.get((int(layout.group[i]), int(rows.replaces[i])), -2)
    check.fail_if(target == -2, "replaces", "names no rollout row (source 'rollout') of the same group")
    flat = layout.group[rg] * max(layout.width, 1) + target[rg]
    keys_u, counts = np.unique(flat, return_counts=True)
    dup = np.zeros(len(rows.group_id), dtype=bool)
    dup[rg] = np.isin(flat, keys_u[counts > 1])
    check.fail_if(dup, "replaces", "is shared by two RGR rows of the same group")
    return target


def build_group_batch(rows: _Rows, layout: _Layout, rgr_target: np.ndarray, logprob_norm: str) -> GroupBatch:
    """Pad the flat rows into a ``GroupBatch`` ([B, N] tensors; [B, N, D] embeddings)."""
    b, n = len(layout.group_names), layout.width
    g, c = torch.from_numpy(layout.group), torch.from_numpy(layout.col)

    def pad(values: np.ndarray | torch.Tensor, fill: Any, dtype: torch.dtype) -> torch.Tensor:
        out = torch.full((b, n), fill, dtype=dtype)
        out[g, c] = torch.as_tensor(values).to(dtype)
        return out

    resp = rows.resp_len
    think_len = np.where(rows.think[:, 0] >= 0, rows.think[:, 1] - rows.think[:, 0], resp)
    answer_len = np.where(rows.answer[:, 0] >= 0, rows.answer[:, 1] - rows.answer[:, 0], resp)
    seq_lp = sequence_logprob(
        torch.from_numpy(rows.logprobs.astype(np.float32)), torch.from_numpy(resp), logprob_norm
    )
    embeddings = None
    if rows.embedding is not None:
        dim = rows.embedding.shape[1]
        embeddings = torch.zeros((b * n, dim), dtype=torch.float32)
        embeddings.index_copy_(0, g * n + c, torch.from_numpy(np.require(rows.embedding, requirements="W")))
        embeddings = embeddings.view(b, n, dim)
    return GroupBatch(
        reward=pad(rows.reward, 0.0, torch.float64),
        accuracy=pad(rows.accuracy, 0.0, torch.float64),
        valid=pad(np.ones(len(resp), dtype=bool), False, torch.bool),
        is_rgr=pad(rows.is_rgr, False, torch.bool),
        replaces=pad(rgr_target, -1, torch.long),
        think_len=pad(think_len, 0, torch.long),
        answer_len=pad(answer_len, 0, torch.long),
        seq_logprob=pad(seq_lp, 0.0, torch.float64),
        embeddings=embeddings,
    )


def _diagnostics(
    rows: _Rows, layout: _Layout, batch: GroupBatch, res: AdvantageResult, spec: AlgorithmSpec
) -> dict[str, Any]:
    g, c = torch.from_numpy(layout.group), torch.from_numpy(layout.col)
    adv = res.advantages[g, c].double()
    roles = res.roles[g, c]
    b = len(layout.group_names)
    ro = ~torch.from_numpy(rows.is_rgr)
    pos, neg = adv[adv > 0], adv[adv < 0]
    metrics: dict[str, Any] = {
        "advantages/mean": _f(adv.mean()) if adv.numel() else None,
        "advantages/std": _f(adv.std(unbiased=False)) if adv.numel() else None,
        "advantages/abs_max": _f(adv.abs().max()) if adv.numel() else None,
        "advantages/nonzero": int((adv != 0).sum()),
        "advantages/pos_mean": _f(pos.mean()) if pos.numel() else None,
        "advantages/neg_mean": _f(neg.mean()) if neg.numel() else None,
        # mean squared advantage of negatives over that of positives (update-size balance)
        "advantages/neg_pos_var_ratio": _f((neg**2).mean() / (pos**2).mean())
        if pos.numel() and neg.numel()
        else None,
        **{f"roles/{r}": int((roles == code).sum()) for r, code in ROLE.items()},
    }
    # the algorithm's own diagnostics live under its name (care/k_prime_mean, ...)
    metrics.update(
        {k if "/" in k else f"{spec.name}/{k}": v for k, v in spec.diagnostics(batch, res).items()}
    )
    # what DAPO dynamic sampling would drop (the rollout stage refills; nothing is dropped here)
    _, would_drop = filter_groups(batch.accuracy, batch.valid & ~batch.is_rgr)
    return {
        "algorithm": spec.name,
        "rows": len(rows.group_id),
        "groups": b,
        "rollout_rows": int(ro.sum()),
        "rgr_rows": int((~ro).sum()),
        "group_kinds": {k: int((res.group_kind == code).sum()) for k, code in GROUP_KIND.items()},
        "dynamic_sampling": would_drop,
        "metrics": metrics,
    }


def compute_advantages(
    table: pa.Table, recipe: Recipe, where: str = "<rollouts>"
) -> tuple[pa.Table, dict[str, Any]]:
    """Validate ``table`` (rollout rows) and return (table + advantage/role/group_kind, diagnostics)."""
    spec = algorithm_spec(recipe.algorithm)
    if table.num_rows == 0:
        raise SchemaError(f"{where}: no rollout rows")
    rows = _read_rows(table, where, need_embeddings=spec.needs_embeddings)
    layout = _layout(rows, where)
    target = _rgr_columns(rows, layout, where)
    batch = build_group_batch(rows, layout, target, spec.logprob_norm)
    start = time.perf_counter()
    with torch.no_grad():
        res = spec.advantages(batch)
    estimator_s = time.perf_counter() - start
    g, c = torch.from_numpy(layout.group), torch.from_numpy(layout.col)
    adv = res.advantages[g, c].double().numpy()
    role = np.asarray(ROLE_NAMES, dtype=object)[res.roles[g, c].numpy()]
    kind = np.asarray(GROUP_KIND_NAMES, dtype=object)[res.group_kind[g].numpy()]
    existing = [n for n in ADVANTAGE_COLUMNS.names if n in table.column_names]
    if existing:
        log.warning("%s: replacing existing column(s) %s", where, existing)
        table = table.drop_columns(existing)
    for field, values in zip(ADVANTAGE_COLUMNS, (adv, role, kind), strict=True):
        table = table.append_column(field, pa.array(values, type=field.type))
    diag = _diagnostics(rows, layout, batch, res, spec)
    diag["metrics"]["perf/advantage_s"] = round(estimator_s, 6)
    return table, diag


def run_advantage(recipe: Recipe, rollouts_path: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Read rollouts, compute advantages with ``recipe.algorithm.name``, write ``out_path``.

    Returns JSON-serialisable diagnostics: rows, groups, group kinds and ``metrics`` (advantage stats,
    role counts, the algorithm's own diagnostics such as K' and the rescue rate, timings).
    """
    start = time.perf_counter()
    src, dst = Path(rollouts_path), Path(out_path)
    if not src.is_file():
        raise FileNotFoundError(f"rollouts file not found: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"--out {dst} is the input file; the advantage stage never modifies its input")
    table = read_rollouts(src)
    table, diag = compute_advantages(table, recipe, where=str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        write_rollouts(table, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    diag["metrics"]["perf/advantage_stage_s"] = round(time.perf_counter() - start, 6)
    diag["out"] = str(dst)
    log.info(
        "advantage stage: %d rows, %d groups in %.3fs",
        diag["rows"],
        diag["groups"],
        diag["metrics"]["perf/advantage_stage_s"],
    )
    return diag
