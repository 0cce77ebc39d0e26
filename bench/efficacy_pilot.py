"""Short scripted pilot for the efficacy comparison: choose lr and rounds before the 3-seed run.

One seed, GRPO and CARE, a few learning rates (``--lrs``), ``--rounds`` rounds each with a greedy
held-out evaluation every ``--eval-every`` rounds, all from the cached SFT start of
``bench/efficacy.py`` (same recipes, same budget per round). Prints and writes
``pilot.md``/``pilot.json`` under ``--work-dir``: held-out accuracy per evaluated round, train
reward and format rate of the last rounds, per (arm, lr).

    .venv/bin/python bench/efficacy_pilot.py                               # 3 lrs x 2 arms, 1 seed
    .venv/bin/python bench/efficacy_pilot.py --lrs 1e-4 --rounds 8 --jobs 1
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(REPO / "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import efficacy  # noqa: E402


def pilot_table(rows: list[dict[str, Any]], sft_acc: float) -> str:
    evals = sorted({p["round"] for r in rows for p in r["curve"]})
    head = (
        "| arm | lr | "
        + " | ".join(f"acc r{e}" for e in evals)
        + " | reward (last 3 rounds) | format (last round) | wall (s) |"
    )
    lines = [head, "|---|---:|" + "---:|" * (len(evals) + 3)]
    for r in rows:
        by_round = {p["round"]: p["accuracy"] for p in r["curve"]}
        accs = " | ".join(f"{100 * by_round[e]:.1f}" if e in by_round else "–" for e in evals)
        hist = r["history"]
        reward = statistics.fmean(h.get("rollout/reward/mean", float("nan")) for h in hist[-3:])
        fmt = hist[-1].get("rollout/format/mean", float("nan"))
        lines.append(
            f"| {efficacy.LABELS[r['arm']]} | {r['lr']:g} | {accs} | {reward:.3f} | {fmt:.2f} | {r['wall_s']:.0f} |"
        )
    return f"SFT start: {100 * sft_acc:.1f}% (acc r0).\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default=str(REPO / ".care" / "efficacy" / "pilot"))
    parser.add_argument("--cache-root", default=str(REPO / ".care" / "efficacy"))
    parser.add_argument("--arms", nargs="+", default=["grpo", "care"], choices=efficacy.ARMS)
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("care_core", "httpx", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    work = Path(args.work_dir).resolve()
    base = efficacy.load_arms(args.arms, args.set)[args.arms[0]]
    start = efficacy.sft_start(base, Path(args.cache_root).resolve())
    tasks = []
    for lr in args.lrs:
        over = [
            *args.set,
            f"optim.lr={lr}",
            f"train.rounds={args.rounds}",
            f"train.eval_every={args.eval_every}",
        ]
        recipes = efficacy.load_arms(args.arms, over)
        for arm in args.arms:
            tasks.append(
                {
                    "recipe": recipes[arm],
                    "arm": arm,
                    "seed": args.seed,
                    "sft_dir": start["sft_dir"],
                    "sft_acc": start["sft_accuracy"],
                    "data_dir": start["data_dir"],
                    "run_dir": str(work / f"{arm}-lr{lr:g}-seed{args.seed}"),
                }
            )
    t0 = time.perf_counter()
    results = efficacy.run_tasks(tasks, args.jobs)
    wall = time.perf_counter() - t0
    rows = [{**r, "lr": t["recipe"].optim.lr} for t, r in zip(tasks, results, strict=True)]
    md = (
        pilot_table(rows, start["sft_accuracy"])
        + f"\nPilot wall: {wall:.0f} s with {args.jobs} run(s) at once.\n"
    )
    (work / "pilot.md").write_text(md)
    (work / "pilot.json").write_text(
        json.dumps(
            {
                "sft_key": start["key"],
                "sft_accuracy": start["sft_accuracy"],
                "wall_s": wall,
                "runs": [{k: r[k] for k in ("arm", "lr", "seed", "curve", "wall_s")} for r in rows],
            },
            indent=1,
        )
    )
    print(md)
    return rows


if __name__ == "__main__":
    main()
