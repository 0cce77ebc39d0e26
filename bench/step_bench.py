"""RL step time: our rollout -> advantage -> update vs TRL ``GRPOTrainer`` (the named baseline).

Both sides: the same tiny offline VLM folder, synthetic prompts (system prompt + image +
problem), G samples of at most ``--max-new-tokens`` tokens at temperature 1, one AdamW step over
all P x G sequences (lr, clip range 0.2/0.3, grad clip 1.0, KL off, no gradient checkpointing),
one warm-up step excluded. Ours runs the three stage functions exactly as ``care train`` and the
pipeline do (each loads the policy from the previous round's folder and writes its artifact),
for GRPO and for CARE; the CARE advantage stage and the think-span embeddings are reported as a
share of the CARE step. Prints ratios ``TRL step s / our step s`` (>1: ours faster) and
tokens-normalised ratios (random policies emit different lengths).

    .venv/bin/pip install 'trl==1.16.0'    # the `bench` extra, only in the bench environment
    .venv/bin/python bench/step_bench.py [--prompts 4] [--g 8] [--max-new-tokens 64] [--steps 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import banner  # noqa: E402
from trl_baseline import StepSettings, run_trl_grpo  # noqa: E402


def our_recipe(model_path: str, algo: str, s: StepSettings, work: Path) -> Any:
    from care_core.config import build_recipe

    return build_recipe(
        {
            "model": {"path": model_path},
            "data": {"synthetic": {"n_train": 64, "n_test": 8}},
            "rollout": {
                "n": s.g,
                "temperature": 1.0,
                "max_new_tokens": s.max_new_tokens,
                "batch_size": s.prompts,
            },
            "algorithm": {"name": algo, "care": {"rgr": {"max_tokens": s.max_new_tokens}}},
            "loss": {"eps_low": s.eps_low, "eps_high": s.eps_high, "kl": {"enable": False}},
            "optim": {"lr": s.lr, "grad_clip": 1.0, "weight_decay": 0.01},
            "train": {
                "rounds": s.steps + 1,
                "prompts_per_round": s.prompts,
                "mini_batch_size": s.prompts,
                "micro_batch_size": s.prompts * s.g,
                "seed": s.seed,
                "output_dir": str(work),
            },
        }
    )


class _Timer:
    """Wraps a function and accumulates its wall time (used on the embedding pass)."""

    def __init__(self, module: Any, name: str):
        self.module, self.name, self.seconds = module, name, 0.0
        self.original = getattr(module, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(module, name, wrapped)

    def restore(self) -> None:
        setattr(self.module, self.name, self.original)


def run_ours(model_path: str, algo: str, s: StepSettings, data_dir: Path, work: Path) -> dict[str, Any]:
    """``s.steps + 1`` rounds through the stage functions; per-step stage seconds (warm-up dropped)."""
    import care_core.stages.rollout as rollout_mod
    from care_core.stages.advantage import run_advantage
    from care_core.stages.update import run_update

    recipe = our_recipe(model_path, algo, s, work)
    model, state = model_path, None
    steps = []
    for r in range(s.steps + 1):
        rdir = work / f"{algo}-r{r}"
        timer = _Timer(rollout_mod, "_embed_rows")
        t0 = time.perf_counter()
        ro = rollout_mod.run_rollout(recipe, model, data_dir, rdir / "rollouts.parquet", r)
        t1 = time.perf_counter()
        timer.restore()
        adv = run_advantage(recipe, rdir / "rollouts.parquet", rdir / "adv.parquet")
        t2 = time.perf_counter()
        run_update(recipe, model, rdir / "adv.parquet", rdir / "model", state_dir=state)
        t3 = time.perf_counter()
        model, state = str(rdir / "model"), str(rdir / "model")
        steps.append(
            {
                "rollout_s": t1 - t0,
                "embed_s": timer.seconds,
                "advantage_s": t2 - t1,
                "update_s": t3 - t2,
                "step_s": t3 - t0,
                "tokens": ro.get("perf/rollout_tokens", float("nan")),
                "rgr_attempts": ro.get("rgr/attempts", 0.0),
                "advantage_diag_s": adv["metrics"].get("perf/advantage_s"),
            }
        )
    return {"warmup": steps[0], "steps": steps[1:]}


def _med(steps: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(x[key]) for x in steps)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--g", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="timed steps (one more untimed warm-up)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)
    s = StepSettings(prompts=args.prompts, g=args.g, max_new_tokens=args.max_new_tokens, steps=args.steps)
    info = banner("RL step: ours (rollout+advantage+update) vs TRL GRPOTrainer", "trl", "accelerate")

    from care_core.config import build_recipe
    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path

    base = build_recipe(
        {"model": {"path": f"tiny://{args.preset}"}, "data": {"synthetic": {"n_train": 64, "n_test": 8}}}
    )
    model_path = resolve_model_path(base.model)
    print(
        f"   model {model_path}; P={s.prompts} prompts x G={s.g}, <= {s.max_new_tokens} tokens, {s.steps} timed steps"
    )
    work = Path(tempfile.mkdtemp(prefix="care-step-bench-"))
    numbers: dict[str, Any] = {**info, "settings": s.__dict__}
    try:
        write_synthetic(base.data.synthetic, work / "data")
        rows = (
            __import__("care_core.schema", fromlist=["read_examples"])
            .read_examples(work / "data" / "train.parquet")
            .to_pylist()
        )
        for algo in ("grpo", "care"):
            out = run_ours(model_path, algo, s, work / "data", work / algo)
            st = out["steps"]
            numbers[algo] = {
                k: _med(st, k)
                for k in ("step_s", "rollout_s", "embed_s", "advantage_s", "update_s", "tokens")
            }
            numbers[algo]["step_s_min"] = min(x["step_s"] for x in st)
            numbers[algo]["steps"] = st
            m = numbers[algo]
            print(
                f"ours/{algo}: step {m['step_s']:.2f} s (min {m['step_s_min']:.2f}) (rollout {m['rollout_s']:.2f} incl. embeddings {m['embed_s']:.2f}, "
                f"advantage {m['advantage_s']:.2f}, update {m['update_s']:.2f}); {m['tokens']:.0f} rollout tokens/step"
            )
        care = numbers["care"]
        share = (care["advantage_s"] + care["embed_s"]) / care["step_s"]
        numbers["care_advantage_plus_embed_share"] = share
        print(
            f"CARE advantage stage + embeddings: {care['advantage_s'] + care['embed_s']:.2f} s = {100 * share:.1f}% of the CARE step "
            f"(advantage alone {100 * care['advantage_s'] / care['step_s']:.1f}%)"
        )
        if importlib.util.find_spec("trl") is None:
            print("TRL: not installed -> no baseline ratio (pip install 'trl==1.16.0')")
            numbers["trl"] = None
        else:
            trl = run_trl_grpo(model_path, rows, base.data.system_prompt, s, str(work / "trl"))
            trl_step = statistics.median(trl["step_seconds"])
            lengths = [float(x) for x in trl["mean_completion_tokens"][1:]] or [float("nan")]
            trl_tokens = statistics.median(lengths) * s.prompts * s.g
            trl_min = min(trl["step_seconds"])
            numbers["trl"] = {
                "step_s": trl_step,
                "step_s_min": trl_min,
                "tokens": trl_tokens,
                "steps": trl["step_seconds"],
            }
            print(
                f"TRL GRPOTrainer (baseline): step {trl_step:.2f} s (min {trl_min:.2f}); {trl_tokens:.0f} completion tokens/step"
            )
            for algo in ("grpo", "care"):
                m = numbers[algo]
                ratio = trl_step / m["step_s"]
                per_tok = (trl_step / trl_tokens) / (m["step_s"] / m["tokens"])
                numbers[algo]["ratio_vs_trl"] = ratio
                numbers[algo]["ratio_vs_trl_per_token"] = per_tok
                numbers[algo]["ratio_vs_trl_min"] = trl_min / m["step_s_min"]
                print(
                    f"RATIO ours/{algo} vs TRL: {ratio:.2f}x step time (median), {numbers[algo]['ratio_vs_trl_min']:.2f}x (min), "
                    f"{per_tok:.2f}x per generated token (>1: ours faster)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2, default=str))
    return numbers


if __name__ == "__main__":
    main()
