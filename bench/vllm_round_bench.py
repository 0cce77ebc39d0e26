"""Per-round time with vLLM rollouts: one warm engine with weight sync vs a fresh engine per round.

Baseline: the per-stage path (the pipeline's rollout stage builds a vLLM engine on each round's
checkpoint). Ours: ``care train``, whose one engine receives the policy's weights after every update
(``VLLMEngine.sync_weights``). Same tiny VLM, prompts, G, lengths and optimizer; KL on. Needs the
vLLM environment (``make venv-vllm``):

    .venv-vllm/bin/python bench/vllm_round_bench.py [--rounds 4] [--prompts 4] [--g 8] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
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

from _common import banner, step_parser  # noqa: E402


def recipe_for(args: argparse.Namespace, work: Path) -> Any:
    from care_core.config import build_recipe

    return build_recipe(
        {
            "name": "vllm-round-bench",
            "model": {"path": f"tiny://{args.preset}", "dtype": "float32"},
            "data": {"synthetic": {"n_train": 64, "n_test": 8}},
            "rollout": {
                "engine": "vllm",
                "n": args.g,
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.prompts,
                "vllm": {"max_model_len": 512, "enforce_eager": True},
            },
            "algorithm": {"name": "grpo"},
            "loss": {"kl": {"enable": True, "type": "k3", "beta": 0.04}},
            "optim": {"lr": 5e-5},
            "train": {
                "rounds": args.rounds,
                "prompts_per_round": args.prompts,
                "mini_batch_size": args.prompts,
                "micro_batch_size": args.prompts * args.g,
                "output_dir": str(work / "runs"),
                "sft": {"enable": False},
            },
            "eval": {"benchmarks": []},
            "tracking": {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "vllm-round-bench"},
            "storage": {"artifact_root": str(work / "artifacts")},
        }
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = step_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    info = banner("vLLM rounds: one warm engine + weight sync vs a fresh engine per round", "vllm")

    from care_core.rollout import vllm_engine
    from care_core.stages.advantage import run_advantage
    from care_core.stages.rollout import run_rollout
    from care_core.stages.train import run_train
    from care_core.stages.update import run_update

    starts: list[float] = []
    syncs: list[float] = []
    init, sync = vllm_engine.VLLMEngine.__init__, vllm_engine.VLLMEngine.sync_weights

    def timed_init(self: Any, *a: Any, **k: Any) -> None:
        t0 = time.perf_counter()
        init(self, *a, **k)
        starts.append(time.perf_counter() - t0)

    def timed_sync(self: Any, model: Any) -> None:
        t0 = time.perf_counter()
        sync(self, model)
        syncs.append(time.perf_counter() - t0)

    vllm_engine.VLLMEngine.__init__, vllm_engine.VLLMEngine.sync_weights = timed_init, timed_sync
    work = Path(tempfile.mkdtemp(prefix="care-vllm-bench-"))
    numbers: dict[str, Any] = {**info, "settings": vars(args)}
    try:
        recipe = recipe_for(args, work)
        t0 = time.perf_counter()
        summary = run_train(recipe)
        warm_total = time.perf_counter() - t0
        warm = [r["perf/round_s"] for r in summary["rounds"]]
        numbers["warm"] = {
            "round_s": warm,
            "engine_starts": list(starts),
            "sync_s": list(syncs),
            "total_s": warm_total,
        }
        run_dir = Path(summary["run_dir"])
        data, base = (
            run_dir / "data",
            str(json.loads((run_dir / "rounds" / "round_0001" / "state.json").read_text())["reference"]),
        )
        starts.clear()
        model, state, fresh = base, None, []
        for r in range(1, args.rounds + 1):
            rdir = work / f"stage-r{r}"
            t0 = time.perf_counter()
            run_rollout(recipe, model, data, rdir / "rollouts.parquet", r)
            run_advantage(recipe, rdir / "rollouts.parquet", rdir / "adv.parquet")
            run_update(
                recipe, model, rdir / "adv.parquet", rdir / "policy", reference_path=base, state_dir=state
            )
            fresh.append(time.perf_counter() - t0)
            model, state = str(rdir / "policy"), str(rdir / "policy")
        numbers["fresh"] = {"round_s": fresh, "engine_starts": list(starts)}
        w, f = statistics.median(warm[1:] or warm), statistics.median(fresh[1:] or fresh)
        print(f"care train, one engine: rounds {[round(x, 2) for x in warm]} s; 1 engine start "
              f"{numbers['warm']['engine_starts'][0]:.1f} s; weight sync median {statistics.median(syncs):.3f} s")  # fmt: skip
        print(f"per-stage path, fresh engine per round (baseline): rounds {[round(x, 2) for x in fresh]} s; "
              f"engine start median {statistics.median(starts):.1f} s")  # fmt: skip
        numbers["ratio"] = f / w
        print(
            f"RATIO fresh-engine round / warm round (median, rounds 2+): {f / w:.2f}x (>1: the warm engine is faster)"
        )
    finally:
        vllm_engine.VLLMEngine.__init__, vllm_engine.VLLMEngine.sync_weights = init, sync
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2, default=str))
    return numbers


if __name__ == "__main__":
    main()
