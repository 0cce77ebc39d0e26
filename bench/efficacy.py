"""Learning-efficacy experiment: GRPO vs CARE vs its ablations at equal rollout budget.

One cold-start SFT checkpoint of the tiny offline VLM on the synthetic suite, cached by a hash of the
recipe sections that shape it (``--cache-root``/``sft-<hash>/``: data, checkpoint, its held-out
accuracy, the swapped-image control and the image-blind ceiling of ``bench/blind_ceiling.py``), so
arms, pilots (``bench/efficacy_pilot.py``) and reruns share it. From it, every arm
(``recipes/efficacy/{grpo,care,care-no-rgr,care-no-region}.yaml``, identical except for
``algorithm``) trains ``train.rounds`` rounds of ``train.prompts_per_round`` prompts x G with the
same per-seed prompt draws, for each seed; ``--jobs`` runs train at once (one torch thread each).
Every ``train.eval_every`` rounds and at the end the policy is evaluated greedily on the held-out
synthetic split. Then the RGR repair success rate is measured with and without the reflection cue
(``rgr.template`` structured vs none) on the same groups.

Outputs under ``--work-dir`` (default ``.care/efficacy/comparison``): ``summary.json``,
``summary.md`` (accuracy mean ± std, gain over SFT in standard errors, paired per-seed differences
against GRPO, §11 diagnostics, RGR cue test), ``curves.png``, per-run folders, and one MLflow
experiment (``tracking`` of the recipes) holding a run per arm x seed plus a ``summary`` run with the
tables and plots as artifacts. ``--json PATH`` also writes the compact, committed result file
(``docs/results/efficacy.json``). Re-running continues: finished runs are read back, not retrained.

    .venv/bin/python bench/efficacy.py --json docs/results/efficacy.json   # full: 4 arms x 3 seeds
    .venv/bin/python bench/efficacy.py --seeds 0 --set train.rounds=4      # smoke
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
for _p in (str(REPO), str(REPO / "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

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


def sft_key(recipe: Recipe) -> str:
    """Cache key of the cold-start SFT checkpoint: a hash over the recipe sections that shape it
    (``model``, ``data``, ``train.sft`` and ``train.seed``), so arms, pilots and reruns share one SFT
    and any change to data or SFT settings trains a fresh one."""
    import hashlib

    d = recipe_to_dict(recipe)
    key = {"model": d["model"], "data": d["data"], "sft": d["train"]["sft"], "seed": d["train"]["seed"]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def sft_start(recipe: Recipe, cache_root: Path) -> dict[str, Any]:
    """Data, SFT checkpoint, its held-out accuracy and its swapped-image control, cached in
    ``cache_root/sft-<sft_key>/`` (computed once per key)."""
    cache = cache_root / f"sft-{sft_key(recipe)}"
    done = cache / "start.json"
    if done.is_file():
        return json.loads(done.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "recipe.json").write_text(json.dumps(recipe_to_dict(recipe), indent=2, default=str))
    data_dir, sft_dir = cache / "data", cache / "sft"
    counts = prepare_data(recipe, data_dir)
    sft_metrics = cold_start(recipe, data_dir, sft_dir)
    sft_acc = evaluate(recipe, str(sft_dir), cache / "eval-sft", data_dir)["metrics"][
        "eval/synthetic/accuracy"
    ]
    swapped = swapped_image_accuracy(recipe, str(sft_dir), data_dir, cache / "eval-sft-swapped-images")
    from blind_ceiling import blind_ceiling  # bench/ is on sys.path when this file runs

    start = {
        "key": cache.name,
        "data_dir": str(data_dir),
        "sft_dir": str(sft_dir),
        "counts": counts,
        "sft_metrics": sft_metrics,
        "sft_accuracy": sft_acc,
        "sft_swapped_accuracy": swapped,
        "blind_ceiling": blind_ceiling(data_dir / "train.parquet", data_dir / "test.parquet"),
    }
    done.write_text(json.dumps(start, indent=2, default=str))
    return start


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
) -> dict[str, Any]:
    """R rounds of rollout -> advantage -> update from the SFT checkpoint; evals every ``eval_every``.

    The rounds run in ``care_core.stages.resident.ResidentRun`` (what ``care train`` runs): policy,
    optimizer, engine and encoded prompts stay in memory; the policy is written only to evaluate it."""
    from care_core.stages.resident import ResidentRun

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
    model = str(sft_dir)
    curve = [{"round": 0, "accuracy": sft_acc}]
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    runner = ResidentRun(recipe, data_dir, str(sft_dir), str(sft_dir), None)
    try:
        for r in range(rounds):
            t0 = time.perf_counter()
            ro, adv, up = runner.run_round(r)
            t3 = time.perf_counter()
            row = {
                **_numeric(ro, "rollout/"),
                **_numeric(adv["metrics"], "advantage/"),
                **_numeric(up, "update/"),
                "time/rollout_s": float(ro.get("perf/rollout_s", math.nan)),
                "time/advantage_s": float(adv["metrics"].get("perf/advantage_stage_s", math.nan)),
                "time/update_s": float(up.get("perf/update_stage_s", math.nan)),
                "round": float(r + 1),
            }
            if (r + 1) % every == 0 or r + 1 == rounds:
                if model != str(sft_dir):
                    shutil.rmtree(Path(model), ignore_errors=True)  # keep only the newest weights
                model = str(run_dir / f"model-r{r + 1:03d}")
                runner.save(Path(model))
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
    finally:
        runner.close()
    result = {
        "arm": arm,
        "seed": seed,
        "final_accuracy": curve[-1]["accuracy"],
        "curve": curve,
        "history": history,
        "final_model": model,
        "wall_s": time.perf_counter() - start,
        "recipe": {
            "lr": recipe.optim.lr,
            "rounds": rounds,
            "prompts_per_round": recipe.train.prompts_per_round,
        },
    }
    final.write_text(json.dumps(result, indent=2))
    return result


def _train_task(task: dict[str, Any]) -> dict[str, Any]:
    """One (arm, seed) run in a worker process: one torch thread, so N workers share N cores."""
    if task.get("threads"):
        import os

        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(task["threads"])
        import torch

        torch.set_num_threads(task["threads"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("care_core", "httpx", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return train_arm(
        task["recipe"],
        task["arm"],
        task["seed"],
        Path(task["sft_dir"]),
        task["sft_acc"],
        Path(task["data_dir"]),
        Path(task["run_dir"]),
    )


def run_tasks(tasks: list[dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
    """Train every task (finished ones are read back); ``jobs`` > 1: that many worker processes,
    one torch thread each. Results come back in task order."""
    if jobs <= 1:
        return [_train_task(t) for t in tasks]
    tasks = [{**t, "threads": 1} for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_train_task, tasks))


def log_run(
    tracker: Any, recipe: Recipe, result: dict[str, Any], run_dir: Path, name: str, tags: dict[str, str]
) -> None:
    """One MLflow run per finished (arm, seed): its per-round history and final accuracy (once)."""
    marker = run_dir / "mlflow_logged"
    if tracker is None or marker.is_file():
        return
    with tracker.start_run(recipe, run_name=name, tags=tags):
        for row in result["history"]:
            tracker.log_metrics({k: v for k, v in row.items() if k != "round"}, step=int(row["round"]))
        tracker.log_metrics({"final/accuracy": result["final_accuracy"], "final/wall_s": result["wall_s"]})
    marker.write_text("1")


def open_tracker(recipe: Recipe) -> Any:
    from care_core.tracking import Tracker

    uri = recipe.tracking.uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(REPO / uri[len('sqlite:///') :]).resolve()}"
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return Tracker(uri, recipe.tracking.experiment)


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


DIAG_KEYS = (  # docs/method.md §11: the per-round diagnostics, by substring of the logged metric names
    "reward/mean",
    "accuracy/mean",
    "format/mean",
    "groups/",
    "anchor",
    "think_len",
    "cos",
    "k_prime",
    "rescue",
    "rgr/",
    "advantages/",
    "clip",
    "kl",
    "entropy",
    "response_length/mean",
    "tokens_per_s",
)


def diagnostics(results: list[dict[str, Any]], arms: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm, per §11 metric: first-round, last-round and all-round means (each averaged over seeds)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm and r["history"]]
        if not runs:
            continue
        keys = sorted({k for r in runs for h in r["history"] for k in h if any(d in k for d in DIAG_KEYS)})
        cell: dict[str, dict[str, float]] = {}
        for key in keys:
            first = [r["history"][0][key] for r in runs if key in r["history"][0]]
            last = [r["history"][-1][key] for r in runs if key in r["history"][-1]]
            every = [statistics.fmean(h[key] for h in r["history"] if key in h) for r in runs]
            every = [v for v in every if math.isfinite(v)]
            if first and last and every:
                cell[key] = {
                    "first": round(statistics.fmean(first), 5),
                    "last": round(statistics.fmean(last), 5),
                    "mean": round(statistics.fmean(every), 5),
                }
        out[arm] = cell
    return out


def comparison(results: list[dict[str, Any]], sft_acc: float, arms: list[str]) -> dict[str, Any]:
    """Per-arm accuracies, mean, std, SE and gain over the SFT start; paired per-seed differences."""
    per_arm: dict[str, Any] = {}
    for arm in arms:
        runs = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"])
        accs = [r["final_accuracy"] for r in runs]
        mean, std = _mean_std(accs)
        se = std / math.sqrt(len(accs)) if accs else math.nan
        per_arm[arm] = {
            "per_seed": {str(r["seed"]): r["final_accuracy"] for r in runs},
            "mean": mean,
            "std": std,
            "se": se,
            "gain_over_sft": mean - sft_acc,
            "gain_in_se": (mean - sft_acc) / se if se and se > 0 else None,
            "above_sft_by_2se": bool(accs) and (mean - sft_acc) >= 2 * se,
            "wall_s_per_run": statistics.fmean(r["wall_s"] for r in runs) if runs else None,
        }
    paired: dict[str, Any] = {}
    for arm in arms:
        if arm == "grpo" or "grpo" not in per_arm:
            continue
        seeds = sorted(set(per_arm[arm]["per_seed"]) & set(per_arm["grpo"]["per_seed"]), key=int)
        diffs = [per_arm[arm]["per_seed"][s] - per_arm["grpo"]["per_seed"][s] for s in seeds]
        mean, std = _mean_std(diffs)
        paired[f"{arm} - grpo"] = {
            "per_seed": dict(zip(seeds, diffs, strict=True)),
            "mean": mean,
            "se": std / math.sqrt(len(diffs)) if diffs else math.nan,
        }
    return {"arms": per_arm, "paired": paired}


def targets(ceiling: float, sft_acc: float, swapped: float, comp: dict[str, Any]) -> dict[str, bool | None]:
    """Issue 11's bars: SFT >= ceiling + 15 points, swapped <= ceiling + 3, SFT in 35-65%, and GRPO and
    CARE each above the SFT start by >= 2 standard errors (None: arm not run)."""
    out: dict[str, bool | None] = {
        "sft_at_least_ceiling_plus_15": sft_acc >= ceiling + 0.15,
        "swapped_at_most_ceiling_plus_3": swapped <= ceiling + 0.03,
        "sft_in_35_65": 0.35 <= sft_acc <= 0.65,
    }
    for arm in ("grpo", "care"):
        a = comp["arms"].get(arm)
        out[f"{arm}_above_sft_by_2se"] = None if a is None else bool(a["above_sft_by_2se"])
    return out


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default=str(REPO / ".care" / "efficacy" / "comparison"))
    parser.add_argument(
        "--cache-root",
        default=str(REPO / ".care" / "efficacy"),
        help="where the SFT start is cached as sft-<hash of model, data, train.sft, train.seed>/",
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override every arm's recipe"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (one torch thread each)")
    parser.add_argument(
        "--rgr-prompts", type=int, default=64, help="prompts for the RGR cue/no-cue measurement"
    )
    parser.add_argument(
        "--json", default=None, help="also write the compact result file here (docs/results/efficacy.json)"
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
    start = sft_start(base, Path(args.cache_root).resolve())
    data_dir, sft_dir = Path(start["data_dir"]), Path(start["sft_dir"])
    sft_acc, sft_swapped, ceiling = (
        start["sft_accuracy"],
        start["sft_swapped_accuracy"],
        start["blind_ceiling"],
    )
    counts = start["counts"]
    logger.info(
        "SFT start %s: held-out %.3f, images swapped within source %.3f, blind ceiling %.3f",
        start["key"],
        sft_acc,
        sft_swapped,
        ceiling,
    )
    t_train = time.perf_counter()
    tasks = [
        {
            "recipe": recipes[arm],
            "arm": arm,
            "seed": seed,
            "sft_dir": str(sft_dir),
            "sft_acc": sft_acc,
            "data_dir": str(data_dir),
            "run_dir": str(work / "runs" / f"{arm}-seed{seed}"),
        }
        for seed in args.seeds
        for arm in args.arms
    ]
    if args.report_only:
        tasks = [t for t in tasks if (Path(t["run_dir"]) / "final.json").is_file()]
    results = run_tasks(tasks, args.jobs)
    train_wall = time.perf_counter() - t_train

    tracker = None if args.no_tracking else open_tracker(base)
    for task, result in zip(tasks, results, strict=True):
        log_run(
            tracker,
            recipes[task["arm"]],
            result,
            Path(task["run_dir"]),
            f"{task['arm']}-seed{task['seed']}",
            {"arm": task["arm"], "seed": str(task["seed"]), "sft": start["key"]},
        )

    t_rgr = time.perf_counter()
    rgr_models = {"sft": str(sft_dir)}
    rgr_models.update({f"care-seed{r['seed']}": r["final_model"] for r in results if r["arm"] == "care"})
    rgr_file = work / "rgr" / "rgr.json"
    if rgr_file.is_file() and json.loads(rgr_file.read_text()).keys() == rgr_models.keys():
        rgr = json.loads(rgr_file.read_text())
    else:
        rgr = rgr_cue_test(base, rgr_models, data_dir, work / "rgr", args.rgr_prompts)
        rgr_file.parent.mkdir(parents=True, exist_ok=True)
        rgr_file.write_text(json.dumps(rgr, indent=2))
    rgr_wall = time.perf_counter() - t_rgr

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
    steps_per_round = math.ceil(b.train.prompts_per_round / b.train.mini_batch_size)
    budget = {
        "rounds": b.train.rounds,
        "prompts_per_round": b.train.prompts_per_round,
        "G": b.rollout.n,
        "rollouts_per_run": b.train.rounds * b.train.prompts_per_round * b.rollout.n,
        "lr": b.optim.lr,
        "optimizer_steps_per_round": steps_per_round,
        "optimizer_steps": steps_per_round * b.train.rounds,
        "max_new_tokens": b.rollout.max_new_tokens,
        "temperature": b.rollout.temperature,
        "kl": b.loss.kl.enable if b.loss.kl else False,
        "eval_every": b.train.eval_every,
    }
    setup = (
        f"tiny://{b.model.tiny.preset} VLM; synthetic {b.data.synthetic.families} difficulty {b.data.synthetic.difficulty}, "
        f"{counts.get('train')} train / {counts.get('test')} held-out; SFT {b.train.sft.max_steps} steps (cached {start['key']}); "
        f"{b.train.rounds} rounds x {b.train.prompts_per_round} prompts x G={b.rollout.n}, "
        f"{steps_per_round} optimizer step(s)/round, max {b.rollout.max_new_tokens} new tokens, lr {b.optim.lr}; "
        f"seeds {args.seeds}; {args.jobs} run(s) at once; training wall {train_wall:.0f} s, RGR test {rgr_wall:.0f} s"
    )
    diag = diagnostics_table(results, args.arms)
    control = (
        f"Controls: the best text-only rule (bench/blind_ceiling.py) scores {100 * ceiling:.1f}%; the SFT checkpoint "
        f"scores {100 * sft_acc:.1f}% with its own images and {100 * sft_swapped:.1f}% when each held-out item gets "
        f"another item's image of the same source.\n\n"
    )
    comp = comparison(results, sft_acc, args.arms)
    paired_lines = ["| difference | per seed (points) | mean ± SE (points) |", "|---|---|---:|"]
    for name, d in comp["paired"].items():
        per = ", ".join(f"{100 * v:+.1f}" for v in d["per_seed"].values())
        paired_lines.append(f"| {name} | {per} | {100 * d['mean']:+.1f} ± {100 * d['se']:.1f} |")
    gain_lines = ["| arm | gain over SFT (points) | SE (points) | gain / SE |", "|---|---:|---:|---:|"]
    for arm, a in comp["arms"].items():
        z = a["gain_in_se"]
        gain_lines.append(
            f"| {LABELS[arm]} | {100 * a['gain_over_sft']:+.1f} | {100 * a['se']:.1f} | {'–' if z is None else f'{z:.1f}'} |"
        )
    md = (
        f"## Setup\n\n{setup}\n\n## Held-out accuracy\n\n{control}{table}\n"
        + "\n".join(gain_lines)
        + "\n\n## Paired per-seed differences\n\n"
        + "\n".join(paired_lines)
        + f"\n\n## Diagnostics (first -> last round)\n\n{diag}\n## RGR repair success (cue vs no cue)\n\n"
        + "\n".join(rgr_lines)
        + "\n"
    )
    (work / "summary.md").write_text(md)
    wall = time.perf_counter() - t_start
    compact = {
        "complete": len(results) == len(args.arms) * len(args.seeds),
        "git_commit": _git_commit(),
        "sft_key": start["key"],
        "setup": setup,
        "blind_ceiling": ceiling,
        "sft_accuracy": sft_acc,
        "sft_swapped_accuracy": sft_swapped,
        "sft_wall_s": start["sft_metrics"].get("sft_wall_s"),
        "n_train": counts.get("train"),
        "n_test": counts.get("test"),
        "budget": budget,
        "seeds": args.seeds,
        **comp,
        "curves": {f"{r['arm']}-seed{r['seed']}": r["curve"] for r in results},
        "targets": targets(ceiling, sft_acc, sft_swapped, comp),
        "rgr_repair": rgr,
        "diagnostics": diagnostics(results, args.arms),
        "wall_s": {"train": train_wall, "rgr_test": rgr_wall, "total_excluding_sft": wall, "jobs": args.jobs},
    }
    summary = {**compact, "sft_metrics": start["sft_metrics"], "results": results, "table_md": table}
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(compact, indent=1, default=str) + "\n")
    if tracker:
        with tracker.start_run(base, run_name="summary", tags={"arm": "summary", "sft": start["key"]}):
            tracker.log_metrics(
                {"sft/accuracy": sft_acc, "sft/swapped_image_accuracy": sft_swapped, "blind_ceiling": ceiling}
            )
            for arm, a in comp["arms"].items():
                tracker.log_metrics({f"{arm}/accuracy_mean": a["mean"], f"{arm}/accuracy_std": a["std"]})
            for name, d in comp["paired"].items():
                tracker.log_metrics({f"paired/{name.replace(' ', '')}/mean": d["mean"]})
            tracker.log_artifact(work / "summary.md")
            tracker.log_artifact(work / "curves.png")
            tracker.log_artifact(work / "summary.json")
    print(md)
    return summary


if __name__ == "__main__":
    main()
