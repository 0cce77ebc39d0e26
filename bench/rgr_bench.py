"""Reflection-Guided Resampling cost: extra decode tokens and time per rollout step.

Runs the rollout stage on the same policy, prompts and seed with CARE's RGR on and off (the
named baseline: the same CARE rollout without RGR), and reports per step: the RGR attempts and
success rate, the extra tokens decoded (continuations after the repair prefix), the extra wall
time, and both as ratios to the baseline rollout. RGR needs groups holding a success and a
failure, so use a policy that solves some items: by default the efficacy experiment's SFT
checkpoint (``.care/efficacy/sft``) when it exists, else ``--model``.

    .venv/bin/python bench/rgr_bench.py [--model DIR] [--prompts 16] [--g 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import banner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None)
    parser.add_argument("--recipe", default="recipes/efficacy/care.yaml")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--g", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    info = banner("RGR: extra decode tokens and time per rollout step")

    import pyarrow.parquet as pq

    from care_core.config import load_recipe
    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path
    from care_core.stages.rollout import run_rollout

    recipe = load_recipe(
        REPO / args.recipe, [f"train.prompts_per_round={args.prompts}", f"rollout.n={args.g}"]
    )
    default_sft = REPO / ".care" / "efficacy" / "sft"
    model = args.model or (
        str(default_sft) if (default_sft / "config.json").is_file() else resolve_model_path(recipe.model)
    )
    print(
        f"   policy {model}; {args.prompts} prompts x G={args.g}, <= {recipe.rollout.max_new_tokens} tokens; "
        f"RGR <= {recipe.algorithm.care.rgr.max_tokens} tokens, template {recipe.algorithm.care.rgr.template}"
    )
    work = Path(tempfile.mkdtemp(prefix="care-rgr-bench-"))
    data = REPO / ".care" / "efficacy" / "data"
    if not (data / "train.parquet").is_file():
        data = work / "data"
        write_synthetic(recipe.data.synthetic, data, image_size=recipe.model.tiny.image_size)
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for repeat in range(args.repeats + 1):  # first pair is warm-up
        for mode in ("off", "on"):
            recipe.algorithm.care.rgr.enable = mode == "on"
            path = work / f"{mode}-{repeat}.parquet"
            start = time.perf_counter()
            stats = run_rollout(recipe, model, data, path, repeat)
            seconds = time.perf_counter() - start
            table = pq.read_table(path, columns=["source", "loss_mask", "response_ids"]).to_pylist()
            rgr_rows = [r for r in table if r["source"] == "rgr"]
            extra = sum(sum(r["loss_mask"]) for r in rgr_rows)
            main_tokens = sum(len(r["response_ids"]) for r in table if r["source"] != "rgr")
            if repeat:
                runs[mode].append(
                    {
                        "seconds": seconds,
                        "rgr_tokens": float(extra),
                        "tokens": float(main_tokens),
                        "attempts": stats.get("rgr/attempts", 0.0),
                        "successes": stats.get("rgr/successes", 0.0),
                    }
                )
    med = {mode: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for mode, rs in runs.items()}
    on, off = med["on"], med["off"]
    attempts = sum(x["attempts"] for x in runs["on"])
    successes = sum(x["successes"] for x in runs["on"])
    numbers = {
        **info,
        "model": model,
        "on": on,
        "off": off,
        "extra_tokens_per_step": on["rgr_tokens"],
        "extra_seconds_per_step": on["seconds"] - off["seconds"],
        "token_ratio": on["rgr_tokens"] / off["tokens"],
        "time_ratio": on["seconds"] / off["seconds"],
        "success_rate": successes / attempts if attempts else None,
    }
    print(f"baseline rollout without RGR: {off['seconds']:.2f} s, {off['tokens']:.0f} tokens per step")
    print(
        f"with RGR: {on['seconds']:.2f} s; {on['attempts']:.0f} repairs/step, {on['rgr_tokens']:.0f} extra decode tokens/step "
        f"(+{100 * numbers['token_ratio']:.1f}% tokens), +{numbers['extra_seconds_per_step']:.2f} s/step "
        f"-> RATIO rollout time with/without RGR {numbers['time_ratio']:.2f}x; repair success "
        f"{_pct(numbers['success_rate'])}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    main()
