"""Advantage-stage benchmark: 512 prompts x 8 rollouts, 3584-dim embeddings (Qwen2.5-VL-7B hidden size).

Prints the CARE stage time (Parquet in -> validate -> estimator -> Parquet out, and the in-memory
part alone) next to the GRPO estimator's time on the same padded batch, and their ratios.

    .venv/bin/python bench/advantage_bench.py [--prompts 512] [--n 8] [--dim 3584] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from care_core.algorithms import algorithm_spec
from care_core.config import build_recipe
from care_core.schema import ROLLOUT_SCHEMA
from care_core.stages import advantage as stage


def _list(values: np.ndarray, lengths: np.ndarray, typ: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=typ))


def make_table(prompts: int, n: int, dim: int, rgr: bool, seed: int = 0) -> pa.Table:
    """Synthetic rollout rows: ~40% accuracy, random spans/lengths, unit-norm random embeddings."""
    rng = np.random.default_rng(seed)
    rows = prompts * n
    gid = np.repeat([f"ex{i:05d}-r0" for i in range(prompts)], n)
    sidx = np.tile(np.arange(n), prompts)
    source = np.array(["rollout"] * rows, dtype=object)
    replaces = np.full(rows, -1)
    acc = (rng.random(rows) < rng.random(prompts).repeat(n)).astype(np.float64)
    fmt = (rng.random(rows) < 0.9).astype(np.float64)
    resp = rng.integers(64, 1024, rows)
    think_end = (resp * rng.uniform(0.5, 0.9, rows)).astype(np.int64)
    emb = rng.standard_normal((rows, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    if rgr:  # one successful-or-not repair per mixed group, aimed at its first failure
        extra = []
        a = acc.reshape(prompts, n)
        for p in range(prompts):
            if a[p].any() and not a[p].all():
                extra.append((p, int(np.flatnonzero(a[p] == 0)[0])))
        k = len(extra)
        gid = np.concatenate([gid, [f"ex{p:05d}-r0" for p, _ in extra]])
        sidx = np.concatenate([sidx, np.full(k, n)])
        source = np.concatenate([source, np.array(["rgr"] * k, dtype=object)])
        replaces = np.concatenate([replaces, [j for _, j in extra]])
        acc = np.concatenate([acc, (rng.random(k) < 0.7).astype(np.float64)])
        fmt = np.concatenate([fmt, np.ones(k)])
        r_len = rng.integers(32, 256, k)
        resp = np.concatenate([resp, r_len])
        think_end = np.concatenate([think_end, r_len // 2])
        emb = np.concatenate([emb, np.zeros((k, dim), np.float32)])
        rows += k
    total = int(resp.sum())
    table = pa.table(
        {
            "group_id": pa.array(gid, pa.string()),
            "sample_index": pa.array(sidx, pa.int64()),
            "source": pa.array(source, pa.string()),
            "replaces": pa.array(replaces, pa.int64()),
            "prompt_ids": _list(np.ones(rows * 16, np.int64), np.full(rows, 16), pa.int64()),
            "response_ids": _list(rng.integers(0, 150000, total), resp, pa.int64()),
            "response_text": pa.array(["..."] * rows),
            "old_logprobs": _list(-rng.exponential(0.5, total).astype(np.float32), resp, pa.float32()),
            "loss_mask": _list(np.ones(total, np.int8), resp, pa.int8()),
            "think_span": _list(
                np.stack([np.zeros(rows, np.int64), think_end], 1).ravel(), np.full(rows, 2), pa.int64()
            ),
            "answer_span": _list(
                np.stack([think_end + 2, resp], 1).ravel().clip(max=np.repeat(resp, 2)),
                np.full(rows, 2),
                pa.int64(),
            ),
            "embedding": _list(emb.ravel(), np.where(source == "rgr", 0, dim), pa.float32())
            if rgr
            else _list(emb.ravel(), np.full(rows, dim), pa.float32()),
            "reward": pa.array(0.9 * acc + 0.1 * fmt),
            "accuracy": pa.array(acc),
            "format": pa.array(fmt),
            "truncated": pa.array(np.zeros(rows, bool)),
        }
    )
    return table.cast(ROLLOUT_SCHEMA)


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--dim", type=int, default=3584)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rgr", action="store_true", help="add one RGR row per mixed group")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    table = make_table(args.prompts, args.n, args.dim, args.rgr)
    recipe = build_recipe({})
    rows = stage._read_rows(table, "bench", need_embeddings=True)
    layout = stage._layout(rows, "bench")
    batch = stage.build_group_batch(rows, layout, stage._rgr_columns(rows, layout, "bench"), "sum")
    grpo, care = (
        algorithm_spec(build_recipe({}, ["algorithm.name=grpo"]).algorithm),
        algorithm_spec(recipe.algorithm),
    )

    with torch.no_grad():
        t_grpo = timed(lambda: grpo.advantages(batch), args.repeat)
        t_care_est = timed(lambda: care.advantages(batch), args.repeat)
    t_care_mem = timed(lambda: stage.compute_advantages(table, recipe, "bench"), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rollouts.parquet"
        pq.write_table(table, src)
        t_care_stage = timed(lambda: stage.run_advantage(recipe, src, Path(tmp) / "out.parquet"), args.repeat)
        grpo_recipe = build_recipe({}, ["algorithm.name=grpo"])
        t_grpo_stage = timed(
            lambda: stage.run_advantage(grpo_recipe, src, Path(tmp) / "out.parquet"), args.repeat
        )
        size_mb = src.stat().st_size / 2**20

    print(f"batch: {args.prompts} prompts x {args.n} rollouts = {table.num_rows} rows, dim {args.dim}, "
          f"rollout Parquet {size_mb:.0f} MiB, torch threads {torch.get_num_threads()}, median of {args.repeat}")  # fmt: skip
    print(f"GRPO estimator (padded batch)         : {t_grpo * 1e3:9.2f} ms")
    print(
        f"CARE estimator (padded batch)         : {t_care_est * 1e3:9.2f} ms   ratio vs GRPO estimator {t_care_est / t_grpo:8.1f}x"
    )
    print(
        f"CARE stage in memory (validate+pad+est): {t_care_mem * 1e3:9.2f} ms   ratio vs GRPO estimator {t_care_mem / t_grpo:8.1f}x"
    )
    print(
        f"CARE stage end to end (Parquet I/O)   : {t_care_stage * 1e3:9.2f} ms   ratio vs GRPO estimator {t_care_stage / t_grpo:8.1f}x"
    )
    print(f"GRPO stage end to end (Parquet I/O)   : {t_grpo_stage * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
