"""Update-stage time: DeepSpeed ZeRO-2 / ZeRO-3 (2 ranks over gloo, torchrun) vs the plain PyTorch path.

One CARE round of the tiny offline VLM (P prompts x G rollouts, advantages from the CARE stage) is
written once; then the same ``run_update`` call trains on it with each backend, ``--repeats`` times,
from the same starting policy. Reported: the stage's wall time (process launch and model load
included, as the pipeline pays them), the training loop alone (``perf/update_s``), and the first
step's loss on each side (the paths must agree). Baseline: the plain path, in the same run.

    .venv/bin/python bench/update_bench.py [--prompts 8] [--g 8] [--repeats 2] [--json FILE]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import banner, median, step_parser  # noqa: E402

BACKENDS = (
    ("plain", {"backend": "plain"}),
    ("zero2", {"backend": "deepspeed", "zero_stage": 2, "procs_per_node": 2}),
    ("zero3", {"backend": "deepspeed", "zero_stage": 3, "procs_per_node": 2}),
)


def recipe_for(preset: str, prompts: int, g: int, distributed: dict[str, Any]) -> Any:
    from care_core.config import build_recipe

    return build_recipe(
        {
            "model": {"path": f"tiny://{preset}"},
            "data": {"synthetic": {"n_train": 64, "n_test": 8}},
            "rollout": {"n": g, "max_new_tokens": 48, "batch_size": prompts},
            "algorithm": {"name": "care"},
            "optim": {"lr": 1e-5},
            "train": {
                "prompts_per_round": prompts,
                "mini_batch_size": max(1, prompts // 2),
                "micro_batch_size": g,
                "distributed": distributed,
            },
        }
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = step_parser(__doc__, prompts=8, max_new_tokens=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    info = banner("update stage: DeepSpeed ZeRO (2 CPU ranks) vs plain PyTorch", "deepspeed")

    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path
    from care_core.stages.advantage import run_advantage
    from care_core.stages.rollout import run_rollout
    from care_core.stages.update import run_update

    work = Path(tempfile.mkdtemp(prefix="care-update-bench-"))
    numbers: dict[str, Any] = {**info, "settings": vars(args)}
    try:
        base = recipe_for(args.preset, args.prompts, args.g, {"backend": "plain"})
        model = resolve_model_path(base.model)
        write_synthetic(base.data.synthetic, work / "data")
        run_rollout(base, model, work / "data", work / "rollouts.parquet", 0)
        run_advantage(base, work / "rollouts.parquet", work / "advantages.parquet")
        print(
            f"   model {model}; one CARE round of {args.prompts} prompts x G={args.g}; {args.repeats} repeats per backend"
        )
        for name, distributed in BACKENDS:
            recipe = recipe_for(args.preset, args.prompts, args.g, distributed)
            runs = []
            for i in range(args.repeats):
                out = work / f"{name}-{i}"
                m = run_update(recipe, model, work / "advantages.parquet", out)
                runs.append(
                    {
                        "stage_s": m["perf/update_stage_s"],
                        "train_s": m["perf/update_s"],
                        "loss_first": m.get("actor/loss_first"),
                        "tokens": m.get("actor/tokens"),
                    }
                )
                shutil.rmtree(out, ignore_errors=True)
            numbers[name] = {
                "stage_s": median([r["stage_s"] for r in runs]),
                "train_s": median([r["train_s"] for r in runs]),
                "loss_first": runs[0]["loss_first"],
                "runs": runs,
            }
            n = numbers[name]
            print(
                f"{name}: stage {n['stage_s']:.2f} s, training loop {n['train_s']:.2f} s, first-step loss {n['loss_first']:.6f}"
            )
        plain = numbers["plain"]
        for name, _ in BACKENDS[1:]:
            n = numbers[name]
            n["ratio_stage"] = plain["stage_s"] / n["stage_s"]
            n["ratio_train"] = plain["train_s"] / n["train_s"]
            print(
                f"RATIO {name} vs plain: {n['ratio_stage']:.2f}x stage time, {n['ratio_train']:.2f}x training loop "
                f"(>1: {name} faster); first-step loss difference {abs(n['loss_first'] - plain['loss_first']):.2e}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2, default=str))
    return numbers


if __name__ == "__main__":
    main()
