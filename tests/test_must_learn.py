"""Must-learn regression: GRPO and CARE each learn a task whose optimum is trivial, in a fixed budget.

The task: "How many <colour> shapes are there?" over synthetic images, and the RL prompts are only
those whose gold answer is 2, so always answering "2" is optimal. A short SFT first teaches the
answer format on count questions of every answer 0-4 (``<think>Count them.</think><answer>N</answer>``),
so the RL start answers "2" about a fifth of the time. Then each algorithm runs ``ROUNDS`` rounds of
the real stages (rollout -> advantage -> update, each round loading the previous round's saved
policy) with one optimizer step per round, from fixed seeds.

A sign, mask or stale-checkpoint bug (advantages flipped, the answer tokens masked out, a round that
trains the old policy) keeps the policy at its start or drives it away from "2", and the
thresholds below fail. Measured (lr 1e-3, 10 rounds x 8 prompts x G = 8, SFT 80 steps):

* GRPO, seeds 0 / 1 / 2: greedy held-out 0.0 -> 1.0 each; best sampled-accuracy gain over round 1
  +0.39 / +0.28 / +0.42 (round 1 at 0.17-0.23).
* CARE, seeds 0 / 1 / 2: greedy held-out 0.0 -> 1.0 each; best gain +0.44 / +0.36 / +0.44.
  (At this lr the sampled format rate falls to 0 under CARE by round 4-6: the answer is learned,
  the tags, which carry no region weight, are not held; the accuracy rule still reads the answer.)
* With the advantage sign flipped (GRPO, seed 0): sampled 0.20 -> 0.00, greedy 0.0 -> 0.0: fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from care_core.config import Recipe, build_recipe

ROUNDS = 10
PROMPTS, G = 8, 8
# Thresholds, with margin from the measurements in the module docstring.
START_MAX = 0.5  # greedy held-out accuracy of the SFT start: it must not already solve the task
GREEDY_MIN = 0.8  # greedy held-out accuracy (32 prompts, gold 2) after training
GAIN_MIN = 0.15  # best round's sampled accuracy (64 rollouts at T = 1) minus round 1's

SOLUTION = "<think>Count them.</think><answer>{answer}</answer>"


def base_overrides(cache: str, seed: int = 0) -> dict[str, Any]:
    return {
        "model": {"path": "tiny://micro", "cache_dir": cache},
        "data": {"synthetic": {"families": ["count"], "difficulty": [1], "n_train": 400, "n_test": 200}},
        "rollout": {"n": G, "temperature": 1.0, "max_new_tokens": 16, "batch_size": PROMPTS},
        "algorithm": {"care": {"rgr": {"max_tokens": 8}}},
        "loss": {"kl": {"beta": 0.0}},
        "optim": {"lr": 1e-3},
        "train": {"prompts_per_round": PROMPTS, "mini_batch_size": PROMPTS, "micro_batch_size": 32, "seed": seed,
                  "sft": {"max_steps": 80, "lr": 5e-3, "batch_size": 16, "max_length": 128}},
        "eval": {"benchmarks": [{"name": "synthetic", "limit": 32}], "max_new_tokens": 16, "batch_size": 32},
    }  # fmt: skip


def prepare(root: Path, cache: str, seed: int = 0) -> tuple[dict[str, Any], str, Path]:
    """SFT data (every count answer, short solutions), the SFT policy, and the RL data (gold 2 only)."""
    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path
    from care_core.schema import read_examples, write_examples
    from care_core.stages.sft import run_sft

    overrides = base_overrides(cache, seed)
    recipe = build_recipe(overrides)
    sft_data, rl_data, sft_dir = root / "sft_data", root / "rl_data", root / "sft"
    write_synthetic(recipe.data.synthetic, sft_data, image_size=recipe.model.tiny.image_size)
    for split in ("train", "test"):
        rows = read_examples(sft_data / f"{split}.parquet").to_pylist()
        for row in rows:
            row["solution"] = SOLUTION.format(answer=row["answer"])
        write_examples(rows, sft_data / f"{split}.parquet")
        write_examples([r for r in rows if r["answer"] == "2"], rl_data / f"{split}.parquet")
    run_sft(recipe, sft_data, sft_dir, model_path=resolve_model_path(recipe.model))
    return overrides, str(sft_dir), rl_data


def train(overrides: dict[str, Any], algorithm: str, sft: str, rl_data: Path, out: Path) -> dict[str, Any]:
    """ROUNDS rounds of the real stages from ``sft``; returns the sampled-accuracy curve and greedy
    held-out accuracy before and after."""
    from care_core.stages.advantage import run_advantage
    from care_core.stages.evaluate import run_evaluate
    from care_core.stages.rollout import run_rollout
    from care_core.stages.update import run_update

    recipe: Recipe = build_recipe({**overrides, "algorithm": {**overrides["algorithm"], "name": algorithm}})
    policy, curve = sft, []
    for r in range(1, ROUNDS + 1):
        wd = out / f"round_{r}"
        metrics = run_rollout(recipe, policy, rl_data, wd / "rollouts.parquet", r)
        run_advantage(recipe, wd / "rollouts.parquet", wd / "advantages.parquet")
        run_update(recipe, policy, wd / "advantages.parquet", wd / "policy", reference_path=sft)
        policy = str(wd / "policy")
        curve.append(metrics["accuracy/mean"])

    def greedy(model: str, name: str) -> float:
        return run_evaluate(recipe, model, out / name, data_dir=rl_data)["benchmarks"]["synthetic"][
            "accuracy"
        ]

    return {
        "curve": curve,
        "greedy_before": greedy(sft, "eval_before"),
        "greedy_after": greedy(policy, "eval_after"),
    }


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    return prepare(tmp_path_factory.mktemp("must_learn"), cache)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "care"])
def test_rl_learns_the_constant_answer(algorithm, start, tmp_path):
    overrides, sft, rl_data = start
    out = train(overrides, algorithm, sft, rl_data, tmp_path)
    curve = out["curve"]
    report = (
        f"{algorithm}: sampled accuracy per round {[round(a, 3) for a in curve]}, "
        f"greedy held-out {out['greedy_before']} -> {out['greedy_after']}"
    )
    assert out["greedy_before"] <= START_MAX, report
    assert max(curve[1:]) - curve[0] >= GAIN_MIN, report
    assert out["greedy_after"] >= GREEDY_MIN, report
