"""Learning-efficacy experiment: GRPO vs CARE vs CARE-without-RGR at equal rollout budget.

One cold-start SFT checkpoint of the tiny offline VLM on the synthetic suite; from it, every arm
(``recipes/efficacy/{grpo,care,care-no-rgr}.yaml``, identical except for ``algorithm``) trains
``train.rounds`` rounds of ``train.prompts_per_round`` prompts x G with the same per-seed prompt
draws, for each seed. Every ``train.eval_every`` rounds and at the end the policy is evaluated
greedily on the held-out synthetic split. Then the RGR repair success rate is measured with and
without the reflection cue (``rgr.template`` structured vs none) on the same groups.

Outputs under ``--work-dir`` (default ``.care/efficacy``): ``summary.json``, ``summary.md`` (table
mean ± std per arm), ``curves.png`` (held-out accuracy and train reward per round), per-run
folders, and one MLflow experiment (``tracking`` of the recipes) holding a run per arm x seed plus
a ``summary`` run with the table and plots as artifacts. Re-running continues: finished runs are
read back, not retrained.

    .venv/bin/python bench/efficacy.py                        # full: 3 arms x 3 seeds
    .venv/bin/python bench/efficacy.py --seeds 0 --set train.rounds=4   # smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from care_core.config import Recipe, load_recipe, recipe_to_dict  # noqa: E402

logger = logging.getLogger("efficacy")
ARMS = ("grpo", "care", "care-no-rgr", "care-no-region")
LABELS = {
    "grpo": "GRPO",
    "care": "CARE",
    "care-no-rgr": "CARE w/o RGR",
    "care-no-region": "CARE w/o region weights",
    "sft": "SFT (start)",
}


# --------------------------------------------------------------------------- recipes
def load_arms(arms: list[str], overrides: list[str]) -> dict[str, Recipe]:
    """Load the arm recipes and check they differ only in ``algorithm`` (equal budget)."""
    recipes = {arm: load_recipe(REPO / "recipes" / "efficacy" / f"{arm}.yaml", overrides) for arm in arms}
    ref_arm = arms[0]
    ref = recipe_to_dict(recipes[ref_arm])
    for arm, recipe in recipes.items():
        other = recipe_to_dict(recipe)
        for key in ref:
            if key not in ("algorithm", "name") and ref[key] != other[key]:
                raise ValueError(
                    f"recipes/efficacy/{arm}.yaml: section {key!r} differs from {ref_arm}.yaml; arms must share the budget"
                )
    return recipes


def _numeric(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[f"{prefix}{key}"] = float(value)
    return out


# --------------------------------------------------------------------------- pieces
def prepare_data(recipe: Recipe, data_dir: Path) -> dict[str, int]:
    from care_core.data.synthetic import write_synthetic

    if (data_dir / "train.parquet").is_file() and (data_dir / "test.parquet").is_file():
        return json.loads((data_dir / "counts.json").read_text())
    counts = write_synthetic(recipe.data.synthetic, data_dir, image_size=recipe.model.tiny.image_size)
    (data_dir / "counts.json").write_text(json.dumps(counts))
    return counts


def cold_start(recipe: Recipe, data_dir: Path, sft_dir: Path) -> dict[str, Any]:
    """SFT once (cached in ``sft_dir``)."""
    from care_core.stages.sft import run_sft

    done = sft_dir / "sft_metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    metrics = run_sft(recipe, data_dir, sft_dir)
    metrics = {**(metrics or {}), "sft_wall_s": time.perf_counter() - start}
    done.write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


def evaluate(recipe: Recipe, model: str, out_dir: Path, data_dir: Path) -> dict[str, Any]:
    from care_core.stages.evaluate import run_evaluate

    return run_evaluate(recipe, model, out_dir, data_dir=data_dir)


def swap_images_within_source(table: Any, seed: int = 0) -> Any:
    """Copy of an example table whose images are permuted among rows of the same ``data_source``
    (a control: accuracy that survives the swap does not come from reading the image)."""
    import random

    import pyarrow as pa

    images = table.column("images").to_pylist()
    sources = table.column("data_source").to_pylist()
    order = list(range(len(images)))
    rng = random.Random(seed)
    for source in sorted(set(sources)):
        rows = [i for i, s in enumerate(sources) if s == source]
        shuffled = rows[:]
        rng.shuffle(shuffled)
        for row, src in zip(rows, shuffled, strict=True):
            order[row] = src
    column = pa.array([images[i] for i in order], type=table.schema.field("images").type)
    return table.set_column(table.schema.get_field_index("images"), "images", column)


def swapped_image_accuracy(recipe: Recipe, model: str, data_dir: Path, out_dir: Path) -> float:
    """Held-out accuracy of ``model`` when every item gets another item's image (same source)."""
    import pyarrow.parquet as pq

    swapped = out_dir / "data"
    swapped.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        swap_images_within_source(pq.read_table(data_dir / "test.parquet")), swapped / "test.parquet"
    )
    return evaluate(recipe, model, out_dir / "eval", swapped)["metrics"]["eval/synthetic/accuracy"]


def train_arm(
    recipe: Recipe,
    arm: str,
    seed: int,
    sft_dir: Path,
    sft_acc: float,
    data_dir: Path,
    run_dir: Path,
    tracker: Any | None,
) -> dict[str, Any]:
    """R rounds of rollout -> advantage -> update from the SFT checkpoint; evals every ``eval_every``."""
    from care_core.stages.advantage import run_advantage
    from care_core.stages.rollout import run_rollout
    from care_core.stages.update import run_update

    final = run_dir / "final.json"
    if final.is_file():
        return json.loads(final.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run restarts from scratch (rounds are cheap)
    run_dir.mkdir(parents=True)
    recipe = copy.deepcopy(recipe)
    recipe.model.path = str(sft_dir)
    recipe.train.seed = seed
    recipe.train.sft.enable = False
    rounds, every = recipe.train.rounds, recipe.train.eval_every or recipe.train.rounds
    model, state = str(sft_dir), None
    curve = [{"round": 0, "accuracy": sft_acc}]
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    handle = (
        tracker.start_run(recipe, run_name=f"{arm}-seed{seed}", tags={"arm": arm, "seed": str(seed)})
        if tracker
        else None
    )
    try:
        for r in range(rounds):
            rdir = run_dir / f"round{r:03d}"
            t0 = time.perf_counter()
            ro = run_rollout(recipe, model, data_dir, rdir / "rollouts.parquet", r)
            t1 = time.perf_counter()
            adv = run_advantage(recipe, rdir / "rollouts.parquet", rdir / "advantages.parquet")
            t2 = time.perf_counter()
            up = run_update(
                recipe,
                model,
                rdir / "advantages.parquet",
                rdir / "model",
                reference_path=str(sft_dir),
                state_dir=state,
            )
            t3 = time.perf_counter()
            if model != str(sft_dir):
                shutil.rmtree(Path(model), ignore_errors=True)  # keep only the newest round's weights
            for f in ("rollouts.parquet", "advantages.parquet"):
                (rdir / f).unlink(missing_ok=True)
            model, state = str(rdir / "model"), str(rdir / "model")
            row = {
                **_numeric(ro, "rollout/"),
                **_numeric(adv["metrics"], "advantage/"),
                **_numeric(up, "update/"),
                "time/rollout_s": t1 - t0,
                "time/advantage_s": t2 - t1,
                "time/update_s": t3 - t2,
                "round": float(r + 1),
            }
            if (r + 1) % every == 0 or r + 1 == rounds:
                ev = evaluate(recipe, model, run_dir / f"eval-r{r + 1:03d}", data_dir)
                acc = ev["metrics"]["eval/synthetic/accuracy"]
                curve.append({"round": r + 1, "accuracy": acc})
                row.update(
                    {
                        "eval/synthetic/accuracy": acc,
                        "eval/synthetic/format_rate": ev["metrics"]["eval/synthetic/format_rate"],
                    }
                )
            history.append(row)
            if tracker:
                tracker.log_metrics(row, step=r + 1)
            logger.info(
                "%s seed %d round %d/%d: reward %.3f acc %.3f (%.1f s)%s",
                arm,
                seed,
                r + 1,
                rounds,
                ro.get("reward/mean", math.nan),
                ro.get("accuracy/mean", math.nan),
                t3 - t0,
                f" eval {curve[-1]['accuracy']:.3f}" if curve[-1]["round"] == r + 1 else "",
            )
    except BaseException:
        if handle:
            tracker.end_run("FAILED")
        raise
    result = {
        "arm": arm,
        "seed": seed,
        "final_accuracy": curve[-1]["accuracy"],
        "curve": curve,
        "history": history,
        "final_model": model,
        "wall_s": time.perf_counter() - start,
    }
    if tracker:
        tracker.log_metrics({"final/accuracy": result["final_accuracy"], "final/wall_s": result["wall_s"]})
        tracker.end_run()
    final.write_text(json.dumps(result, indent=2))
    return result


def rgr_cue_test(
    recipe: Recipe, models: dict[str, str], data_dir: Path, out_dir: Path, prompts: int
) -> dict[str, Any]:
    """RGR repair success with the structured cue vs no cue (promptless resampling), same groups."""
    from care_core.stages.rollout import run_rollout

    out: dict[str, Any] = {}
    for label, model in models.items():
        cell = {}
        for template in ("structured", "none"):
            r = copy.deepcopy(recipe)
            r.algorithm.name = "care"
            r.algorithm.care.rgr.enable = True
            r.algorithm.care.rgr.template = template
            r.train.prompts_per_round = prompts
            path = out_dir / f"{label}-{template}.parquet"
            stats = run_rollout(r, model, data_dir, path, 10_000)  # a round index no arm trained on
            path.unlink(missing_ok=True)
            cell[template] = {k: stats.get(k) for k in ("rgr/attempts", "rgr/successes", "rgr/success_rate")}
        out[label] = cell
    return out


# --------------------------------------------------------------------------- report
def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary_table(results: list[dict[str, Any]], sft_acc: float, arms: list[str]) -> str:
    lines = [
        "| arm | seeds | held-out accuracy (%) mean ± std | per seed | mean train reward, last 3 rounds | wall per run (s) |",
        "|---|---:|---:|---|---:|---:|",
        f"| {LABELS['sft']} | – | {100 * sft_acc:.1f} | – | – | – |",
    ]
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        accs = [r["final_accuracy"] for r in runs]
        mean, std = _mean_std(accs)
        rewards = [
            statistics.fmean(
                h["rollout/reward/mean"] for h in r["history"][-3:] if "rollout/reward/mean" in h
            )
            for r in runs
        ]
        rmean, rstd = _mean_std(rewards)
        wall = statistics.fmean(r["wall_s"] for r in runs) if runs else math.nan
        per_seed = ", ".join(f"{100 * a:.1f}" for a in accs)
        lines.append(
            f"| {LABELS[arm]} | {len(runs)} | {100 * mean:.1f} ± {100 * std:.1f} | {per_seed} | {rmean:.3f} ± {rstd:.3f} | {wall:.0f} |"
        )
    return "\n".join(lines) + "\n"


DIAGNOSTICS = {  # docs/method.md §11 subset: value in the last round, mean ± std over seeds
    "rollout/response_length/mean": "response len",
    "rollout/format/mean": "format rate",
    "rollout/groups/frac_all_wrong": "all-wrong groups",
    "advantage/care/rescue_rate": "rescue rate",
    "advantage/advantages/neg_pos_var_ratio": "neg/pos var",
    "update/actor/entropy": "entropy",
    "update/actor/grad_norm": "grad norm",
}


def diagnostics_table(results: list[dict[str, Any]], arms: list[str]) -> str:
    """First-round vs last-round diagnostics per arm (mean ± std over seeds)."""
    head = "| arm | " + " | ".join(f"{label} (r1 -> last)" for label in DIAGNOSTICS.values()) + " |"
    lines = [head, "|---|" + "---:|" * len(DIAGNOSTICS)]
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm and r["history"]]
        cells = []
        for key in DIAGNOSTICS:
            first = [r["history"][0][key] for r in runs if key in r["history"][0]]
            last = [r["history"][-1][key] for r in runs if key in r["history"][-1]]
            if not last:
                cells.append("–")
                continue
            (f_mean, _), (l_mean, l_std) = _mean_std(first), _mean_std(last)
            cells.append(f"{f_mean:.3g} -> {l_mean:.3g} ± {l_std:.2g}")
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: list[dict[str, Any]], arms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        if not runs:
            continue
        xs = [p["round"] for p in runs[0]["curve"]]
        ys = np.array([[p["accuracy"] for p in r["curve"]] for r in runs]) * 100
        axes[0].plot(xs, ys.mean(0), marker="o", label=LABELS[arm])
        axes[0].fill_between(xs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.2)
        rw = np.array([[h.get("rollout/reward/mean", np.nan) for h in r["history"]] for r in runs])
        rx = np.arange(1, rw.shape[1] + 1)
        axes[1].plot(rx, np.nanmean(rw, 0), label=LABELS[arm])
        axes[1].fill_between(
            rx, np.nanmean(rw, 0) - np.nanstd(rw, 0), np.nanmean(rw, 0) + np.nanstd(rw, 0), alpha=0.2
        )
    axes[0].set(
        xlabel="RL round", ylabel="held-out accuracy (%)", title="Held-out synthetic accuracy (greedy)"
    )
    axes[1].set(xlabel="RL round", ylabel="mean rollout reward", title="Training reward")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default=str(REPO / ".care" / "efficacy"))
    parser.add_argument(
        "--sft-from", default=None, help="reuse data/ and sft/ of another work dir (same data + SFT settings)"
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override every arm's recipe"
    )
    parser.add_argument(
        "--rgr-prompts", type=int, default=64, help="prompts for the RGR cue/no-cue measurement"
    )
    parser.add_argument("--no-tracking", action="store_true")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: summarise the runs that finished (a reduced experiment cut short)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("care_core", "httpx", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    recipes = load_arms(args.arms, args.set)
    base = recipes[args.arms[0]]
    t_start = time.perf_counter()
    if args.sft_from:
        for part in ("data", "sft"):
            if not (work / part).exists():
                shutil.copytree(Path(args.sft_from) / part, work / part)
    data_dir = work / "data"
    counts = prepare_data(base, data_dir)
    logger.info("data: %s", counts)
    sft_dir = work / "sft"
    sft_metrics = cold_start(base, data_dir, sft_dir)
    sft_eval = evaluate(base, str(sft_dir), work / "eval-sft", data_dir)
    sft_acc = sft_eval["metrics"]["eval/synthetic/accuracy"]
    sft_swapped = swapped_image_accuracy(base, str(sft_dir), data_dir, work / "eval-sft-swapped-images")
    logger.info(
        "SFT checkpoint: held-out accuracy %.3f, with images swapped within each source %.3f (%s)",
        sft_acc,
        sft_swapped,
        sft_metrics,
    )

    tracker = None
    if not args.no_tracking:
        from care_core.tracking import Tracker

        uri = base.tracking.uri
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = f"sqlite:///{(REPO / uri[len('sqlite:///') :]).resolve()}"
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(uri, base.tracking.experiment)

    results = []
    for seed in args.seeds:
        for arm in args.arms:
            final = work / "runs" / f"{arm}-seed{seed}" / "final.json"
            if args.report_only:
                if final.is_file():
                    results.append(json.loads(final.read_text()))
                continue
            results.append(
                train_arm(
                    recipes[arm],
                    arm,
                    seed,
                    sft_dir,
                    sft_acc,
                    data_dir,
                    work / "runs" / f"{arm}-seed{seed}",
                    tracker,
                )
            )

    rgr_models = {"sft": str(sft_dir)}
    rgr_models.update({f"care-seed{r['seed']}": r["final_model"] for r in results if r["arm"] == "care"})
    rgr_file = work / "rgr" / "rgr.json"
    if rgr_file.is_file() and json.loads(rgr_file.read_text()).keys() == rgr_models.keys():
        rgr = json.loads(rgr_file.read_text())
    else:
        rgr = rgr_cue_test(base, rgr_models, data_dir, work / "rgr", args.rgr_prompts)
        rgr_file.parent.mkdir(parents=True, exist_ok=True)
        rgr_file.write_text(json.dumps(rgr, indent=2))

    table = summary_table(results, sft_acc, args.arms)
    plot_curves(results, args.arms, work / "curves.png")
    rgr_lines = ["| checkpoint | cue | attempts | successes | success rate |", "|---|---|---:|---:|---:|"]
    for label, cell in rgr.items():
        for template, s in cell.items():
            rate = s["rgr/success_rate"]
            rgr_lines.append(
                f"| {label} | {'structured cue' if template == 'structured' else 'no cue'} | {s['rgr/attempts']:.0f} | "
                f"{s['rgr/successes']:.0f} | {'–' if rate is None or rate != rate else f'{100 * rate:.1f}%'} |"
            )
    b = base
    setup = (
        f"tiny://{b.model.tiny.preset} VLM; synthetic {b.data.synthetic.families} difficulty {b.data.synthetic.difficulty}, "
        f"{counts.get('train')} train / {counts.get('test')} held-out; SFT {b.train.sft.max_steps} steps; "
        f"{b.train.rounds} rounds x {b.train.prompts_per_round} prompts x G={b.rollout.n}, "
        f"max {b.rollout.max_new_tokens} new tokens, lr {b.optim.lr}; seeds {args.seeds}; "
        f"total wall {time.perf_counter() - t_start:.0f} s"
    )
    diag = diagnostics_table(results, args.arms)
    control = (
        f"Image control: the SFT checkpoint scores {100 * sft_swapped:.1f}% when each held-out item gets another "
        f"item's image of the same source (vs {100 * sft_acc:.1f}% with its own).\n\n"
    )
    md = (
        f"## Setup\n\n{setup}\n\n## Held-out accuracy\n\n{control}{table}\n## Diagnostics (first -> last round)\n\n{diag}\n## RGR repair success (cue vs no cue)\n\n"
        + "\n".join(rgr_lines)
        + "\n"
    )
    (work / "summary.md").write_text(md)
    summary = {
        "setup": setup,
        "sft_accuracy": sft_acc,
        "sft_swapped_image_accuracy": sft_swapped,
        "sft_metrics": sft_metrics,
        "results": results,
        "rgr": rgr,
        "table_md": table,
        "wall_s": time.perf_counter() - t_start,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if tracker:
        with tracker.start_run(base, run_name="summary", tags={"arm": "summary"}):
            tracker.log_metrics({"sft/accuracy": sft_acc, "sft/swapped_image_accuracy": sft_swapped})
            for arm in args.arms:
                accs = [r["final_accuracy"] for r in results if r["arm"] == arm]
                mean, std = _mean_std(accs)
                tracker.log_metrics({f"{arm}/accuracy_mean": mean, f"{arm}/accuracy_std": std})
            tracker.log_artifact(work / "summary.md")
            tracker.log_artifact(work / "curves.png")
            tracker.log_artifact(work / "summary.json")
    print(md)
    return summary


if __name__ == "__main__":
    main()
