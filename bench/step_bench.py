"""RL step time: ``care train`` (in process) and the per-stage pipeline path vs TRL ``GRPOTrainer``.

The named baseline is TRL 1.16 ``GRPOTrainer`` (``bench/trl_baseline.py``). All three sides use the
same tiny offline VLM folder, synthetic prompts (system prompt + image + problem), P prompts x G
samples of at most ``--max-new-tokens`` tokens at temperature 1, one AdamW step over all P x G
sequences in one micro-batch, as TRL does (CARE's RGR rows included) (lr 5e-5, clip 0.2/0.3, grad clip 1.0), **KL on** (k3, beta 0.04, a frozen reference
model), no gradient checkpointing, one untimed warm-up step. Measured, in one run:

- ``care train`` in process (``care_core.stages.train.run_train``: ``stages/resident.py`` keeps the
  policy, reference, optimizer, engine and encoded prompts in memory; checkpoint only at the end,
  ``train.save_every``), for GRPO and for CARE (RGR on). Step = ``perf/round_s`` (rollout ->
  advantage -> update; MLflow logging excluded, as TRL's step excludes its logging);
- the per-stage path: the three stage functions as the KFP components call them, each loading its
  model and reading / writing its artifact (``rollouts.parquet``, ``advantages.parquet``, a checkpoint);
- TRL ``GRPOTrainer`` (``on_step_begin`` -> ``on_step_end``).

Prints medians and best steps, the split into rollout (of which generation and CARE's embeddings),
reference log-probs, advantage and update, and the ratios (>1: ours faster):
``TRL / care train``, ``per-stage / care train`` (target <= 1.3) and CARE's extra cost: embeddings
(span means of the decoder's hidden states, plus the decoding time of keeping them) + hard-negative
mining (the CARE advantage step minus GRPO's) + region weights, as a share of the CARE step
(target <= 3%).

    .venv/bin/pip install -e '.[bench]'     # trl==1.16.0
    .venv/bin/python bench/step_bench.py [--prompts 4] [--g 8] [--max-new-tokens 64] [--steps 5]
"""

from __future__ import annotations

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

from _common import banner, step_parser  # noqa: E402
from trl_baseline import StepSettings, run_trl_grpo  # noqa: E402


def our_recipe(model_path: str, algo: str, s: StepSettings, work: Path) -> Any:
    from care_core.config import build_recipe

    return build_recipe(
        {
            "name": f"step-bench-{algo}",
            "model": {"path": model_path},
            "data": {"synthetic": {"n_train": 64, "n_test": 8}},
            "rollout": {
                "n": s.g,
                "temperature": 1.0,
                "max_new_tokens": s.max_new_tokens,
                "batch_size": s.prompts,
            },
            "algorithm": {"name": algo, "care": {"rgr": {"max_tokens": s.max_new_tokens}}},
            "loss": {
                "eps_low": s.eps_low,
                "eps_high": s.eps_high,
                "kl": {"enable": True, "type": "k3", "beta": s.kl_beta},
            },
            "optim": {"lr": s.lr, "grad_clip": 1.0, "weight_decay": 0.01},
            "train": {
                "rounds": s.steps + 1,
                "prompts_per_round": s.prompts,
                "mini_batch_size": s.prompts,
                "micro_batch_size": s.prompts
                * (s.g + 1),  # the whole step in one micro-batch (CARE adds <= 1 RGR row per group)
                "seed": s.seed,
                "output_dir": str(work),
                "save_every": s.steps + 1,
                "sft": {"enable": False},
            },
            "eval": {"benchmarks": []},
            "tracking": {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "step-bench"},
            "storage": {"artifact_root": str(work / "artifacts")},
        }
    )


STEP_KEYS = {  # our name -> metric of a care train round / of the stage functions
    "step_s": "perf/round_s",
    "rollout_s": "perf/rollout_s",
    "generate_s": "perf/generate_s",
    "embed_s": "perf/embed_s",
    "advantage_s": "perf/advantage_stage_s",
    "reference_s": "perf/ref_logprob_s",
    "update_s": "perf/update_s",
    "tokens": "perf/rollout_tokens",
}


def run_in_process(model_path: str, algo: str, s: StepSettings, work: Path) -> list[dict[str, float]]:
    """``care train`` for ``s.steps + 1`` rounds; per-round numbers (warm-up round dropped)."""
    from care_core.stages.train import run_train

    summary = run_train(our_recipe(model_path, algo, s, work))
    rounds = summary["rounds"][1:]
    return [{k: float(r.get(m, 0.0)) for k, m in STEP_KEYS.items()} for r in rounds]


def run_per_stage(
    model_path: str, algo: str, s: StepSettings, data_dir: Path, work: Path
) -> list[dict[str, float]]:
    """``s.steps + 1`` rounds through the stage functions with their files (the pipeline's path)."""
    from care_core.stages.advantage import run_advantage
    from care_core.stages.rollout import run_rollout
    from care_core.stages.update import run_update

    recipe = our_recipe(model_path, algo, s, work)
    model, state = model_path, None
    steps = []
    for r in range(s.steps + 1):
        rdir = work / f"{algo}-r{r}"
        t0 = time.perf_counter()
        ro = run_rollout(recipe, model, data_dir, rdir / "rollouts.parquet", r)
        t1 = time.perf_counter()
        run_advantage(recipe, rdir / "rollouts.parquet", rdir / "adv.parquet")
        t2 = time.perf_counter()
        up = run_update(
            recipe, model, rdir / "adv.parquet", rdir / "model", reference_path=model_path, state_dir=state
        )
        t3 = time.perf_counter()
        model, state = str(rdir / "model"), str(rdir / "model")
        steps.append(
            {
                "step_s": t3 - t0,
                "rollout_s": t1 - t0,
                "generate_s": ro.get("perf/generate_s", 0.0),
                "embed_s": ro.get("perf/embed_s", 0.0),
                "advantage_s": t2 - t1,
                "reference_s": up.get("perf/ref_logprob_s", 0.0),
                "update_s": t3 - t2,
                "tokens": ro.get("perf/rollout_tokens", float("nan")),
            }
        )
    return steps[1:]


def region_weight_seconds(s: StepSettings, repeats: int = 20) -> float:
    """Median time of CARE's region weighting on one step's P x G rows (ours at this size)."""
    import torch

    from care_core.algorithms.region import region_token_advantages
    from care_core.config import RegionConfig

    rows = s.prompts * s.g
    mask = torch.ones(rows, s.max_new_tokens)
    think = torch.tensor([[1, s.max_new_tokens // 2]] * rows)
    answer = torch.tensor([[s.max_new_tokens // 2 + 1, s.max_new_tokens - 1]] * rows)
    adv = torch.randn(rows)
    roles = ["anchor"] + ["negative"] * (rows - 1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        region_token_advantages(adv, mask, think, answer, roles, RegionConfig())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def hidden_state_seconds(
    model_path: str, rows: list[dict[str, Any]], s: StepSettings, repeats: int = 5
) -> float:
    """Median extra decoding time of keeping every response token's hidden state (CARE's embedding
    input) on one step's prompts: the same requests and seeds decoded with and without it."""
    from care_core.config import build_recipe
    from care_core.models import load_policy
    from care_core.rollout import HFEngine, SamplingSettings
    from care_core.stages.rollout import encode_requests

    model, processor = load_policy(model_path)
    data = build_recipe({}).data
    requests = encode_requests(processor, rows[: s.prompts], data, with_images=False)
    deltas = []
    for i in range(repeats):
        times = {}
        for keep in (False, True):
            engine = HFEngine(model, processor, batch_size=s.prompts, show_progress=False, with_hidden=keep)
            t0 = time.perf_counter()
            engine.generate(requests, SamplingSettings(n=s.g, max_new_tokens=s.max_new_tokens, seed=i))
            times[keep] = time.perf_counter() - t0
        deltas.append(times[True] - times[False])
    return statistics.median(deltas)


def summarise(steps: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: statistics.median(x[k] for x in steps) for k in STEP_KEYS}
    out["step_s_min"] = min(x["step_s"] for x in steps)
    out["steps"] = steps
    return out


def line(label: str, m: dict[str, Any]) -> str:
    return (
        f"{label}: step {m['step_s']:.2f} s (best {m['step_s_min']:.2f}): rollout {m['rollout_s']:.2f} "
        f"(generation {m['generate_s']:.2f}, embeddings {m['embed_s']:.3f}), reference {m['reference_s']:.2f}, "
        f"advantage {m['advantage_s']:.3f}, update {m['update_s']:.2f}; {m['tokens']:.0f} tokens"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = step_parser(__doc__)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (one more untimed warm-up)")
    parser.add_argument("--no-per-stage", action="store_true", help="skip the per-stage path")
    args = parser.parse_args(argv)
    s = StepSettings(prompts=args.prompts, g=args.g, max_new_tokens=args.max_new_tokens, steps=args.steps)
    info = banner(
        "RL step: care train and the per-stage path vs TRL GRPOTrainer (KL on)", "trl", "accelerate"
    )

    from care_core.config import build_recipe
    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path
    from care_core.schema import read_examples

    base = build_recipe(
        {"model": {"path": f"tiny://{args.preset}"}, "data": {"synthetic": {"n_train": 64, "n_test": 8}}}
    )
    model_path = resolve_model_path(base.model)
    print(
        f"   model {model_path}; P={s.prompts} x G={s.g}, <= {s.max_new_tokens} tokens, {s.steps} timed steps"
    )
    work = Path(tempfile.mkdtemp(prefix="care-step-bench-"))
    numbers: dict[str, Any] = {**info, "settings": s.__dict__}
    try:
        write_synthetic(base.data.synthetic, work / "data")
        rows = read_examples(work / "data" / "train.parquet").to_pylist()
        for algo in ("grpo", "care"):
            numbers[f"train/{algo}"] = m = summarise(
                run_in_process(model_path, algo, s, work / f"train-{algo}")
            )
            print(line(f"care train / {algo}", m))
        if not args.no_per_stage:
            for algo in ("grpo", "care"):
                numbers[f"stages/{algo}"] = m = summarise(
                    run_per_stage(model_path, algo, s, work / "data", work / f"stages-{algo}")
                )
                print(line(f"per-stage path / {algo}", m))
        care, grpo = numbers["train/care"], numbers["train/grpo"]
        region_s = region_weight_seconds(s)
        hidden_s = max(0.0, hidden_state_seconds(model_path, rows, s))
        extra = care["embed_s"] + hidden_s + max(0.0, care["advantage_s"] - grpo["advantage_s"]) + region_s
        numbers["care_extra"] = {
            "embed_s": care["embed_s"],
            "hidden_states_s": hidden_s,
            "mining_s": care["advantage_s"] - grpo["advantage_s"],
            "region_s": region_s,
            "total_s": extra,
            "share_of_care_step": extra / care["step_s"],
        }
        print(
            f"CARE extra cost: embeddings {care['embed_s'] * 1e3:.1f} ms + keeping hidden states {hidden_s * 1e3:.1f} ms + mining {numbers['care_extra']['mining_s'] * 1e3:.1f} ms "
            f"+ region weights {region_s * 1e3:.2f} ms = {extra * 1e3:.1f} ms = {100 * extra / care['step_s']:.2f}% of the CARE step"
        )
        if not args.no_per_stage:
            for algo in ("grpo", "care"):
                ratio = numbers[f"stages/{algo}"]["step_s"] / numbers[f"train/{algo}"]["step_s"]
                numbers[f"stages/{algo}"]["ratio_vs_train"] = ratio
                print(f"RATIO per-stage path / care train ({algo}): {ratio:.2f}x step time (target <= 1.3)")
        if importlib.util.find_spec("trl") is None:
            print("TRL: not installed -> no baseline ratio (pip install 'trl==1.16.0')")
            numbers["trl"] = None
        else:
            trl = run_trl_grpo(model_path, rows, base.data.system_prompt, s, str(work / "trl"))
            lengths = [float(x) for x in trl["mean_completion_tokens"][1:]] or [float("nan")]
            numbers["trl"] = t = {
                "step_s": statistics.median(trl["step_seconds"]),
                "step_s_min": min(trl["step_seconds"]),
                "tokens": statistics.median(lengths) * s.prompts * s.g,
                "steps": trl["step_seconds"],
            }
            print(
                f"TRL GRPOTrainer (baseline): step {t['step_s']:.2f} s (best {t['step_s_min']:.2f}); {t['tokens']:.0f} tokens"
            )
            for algo in ("grpo", "care"):
                m = numbers[f"train/{algo}"]
                m["ratio_vs_trl"] = t["step_s"] / m["step_s"]
                m["ratio_vs_trl_best"] = t["step_s_min"] / m["step_s_min"]
                m["ratio_vs_trl_per_token"] = (t["step_s"] / t["tokens"]) / (m["step_s"] / m["tokens"])
                print(
                    f"RATIO TRL / care train ({algo}): {m['ratio_vs_trl']:.2f}x median step, "
                    f"{m['ratio_vs_trl_best']:.2f}x best step, {m['ratio_vs_trl_per_token']:.2f}x per generated token "
                    "(>1: ours faster; target >= 1.5)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2, default=str))
    return numbers


if __name__ == "__main__":
    main()
