"""DeepSpeed ZeRO update with 2 CPU ranks over gloo (torchrun) against the plain PyTorch path."""

from __future__ import annotations

import pytest
import torch
from train_helpers import make_rows

from care_core.config import build_recipe
from care_core.models import load_policy
from care_core.schema import write_rollouts
from care_core.stages.update import run_update
from care_core.training.deepspeed_runner import ds_config, launch_command

LR = 1e-4


def _recipe(backend: str, stage: int = 2):
    return build_recipe(
        {
            "model": {"path": "tiny://micro"},
            "optim": {"lr": LR},
            "algorithm": {"name": "grpo"},
            "train": {
                "mini_batch_size": 2,
                "micro_batch_size": 1,
                "prompts_per_round": 2,
                "rounds": 1,
                "distributed": {"backend": backend, "zero_stage": stage, "procs_per_node": 2},
                # DeepSpeed runs whole sequences: the plain reference does the same computation
                "shared_prefix": False,
            },
        }
    )


def test_ds_config_and_launch_command():
    recipe = _recipe("deepspeed", 3)
    cfg = ds_config(recipe)
    assert cfg["zero_optimization"]["stage"] == 3 and cfg["managed_gradient_accumulation"] is False
    assert cfg["gradient_clipping"] == recipe.optim.grad_clip and cfg["train_micro_batch_size_per_gpu"] == 1
    cmd = launch_command("/tmp/spec.json", recipe.train.distributed, "care_core.stages.update")
    assert "torch.distributed.run" in cmd and cmd[cmd.index("--nproc_per_node") + 1] == "2"
    assert cmd[-3:] == ["care_core.stages.update", "--worker", "/tmp/spec.json"]


def _give_image(rows, indices, micro_policy, examples, recipe):
    """Put an image into the prompt of ``rows[indices]`` (one group): ranks then see image and
    text-only micro-batches, the case where ZeRO's gradient reductions must still line up."""
    from care_core.models.forward import SequenceItem, pack, response_logprobs
    from care_core.stages.rollout import encode_requests

    model, processor = micro_policy
    request = encode_requests(processor, examples[:1], recipe.data, with_images=False)[0]
    for r in rows:
        r["images"] = []
    for k in indices:
        rows[k]["prompt_ids"] = request.prompt_ids
        with torch.no_grad():
            lp = response_logprobs(
                model, pack([SequenceItem(request.prompt_ids, rows[k]["response_ids"], request.mm_inputs)])
            )
        rows[k]["old_logprobs"] = lp.logprobs[0].tolist()
    rows[indices[0]]["images"] = examples[0]["images"]


@pytest.mark.slow
def test_zero2_two_ranks_matches_plain(micro_dir, micro_policy, examples, recipe, tmp_path):
    model, processor = micro_policy
    specs = [
        ("<think>a b</think><answer>1</answer>", 1.0, "anchor"),
        ("c d", -0.5, "negative"),
        ("<think>d</think><answer>3</answer>", 0.5, "anchor"),
        ("e f g", -1.0, "negative"),
        ("h", 0.25, "anchor"),
    ]  # 5 micro-batches: rank 1 runs a zero-weighted filler pass
    rows, _, _ = make_rows(processor, model, specs, group=["g0", "g0", "g1", "g1", "g1"])
    _give_image(rows, [0, 1], micro_policy, examples, recipe)
    write_rollouts(rows, tmp_path / "adv.parquet")
    plain = run_update(_recipe("plain"), micro_dir, tmp_path / "adv.parquet", tmp_path / "plain")
    zero = run_update(_recipe("deepspeed"), micro_dir, tmp_path / "adv.parquet", tmp_path / "zero2")
    assert zero["update/backend"] == "deepspeed-zero2" and zero["update/world_size"] == 2
    assert zero["actor/loss_first"] == pytest.approx(plain["actor/loss_first"], abs=1e-6)
    assert zero["actor/ppo_ratio_mean"] == pytest.approx(1.0, abs=1e-5) == plain["actor/ppo_ratio_mean"]
    assert zero["actor/tokens"] == plain["actor/tokens"]
    assert zero["actor/grad_norm"] == pytest.approx(plain["actor/grad_norm"], rel=1e-4)
    a, _ = load_policy(str(tmp_path / "plain"))
    b, _ = load_policy(str(tmp_path / "zero2"))
    base, _ = load_policy(micro_dir)
    sd_a, sd_b, sd_0 = a.state_dict(), b.state_dict(), base.state_dict()
    moved = max((sd_a[k] - sd_0[k]).abs().max().item() for k in sd_a)
    diff = max((sd_a[k] - sd_b[k]).abs().max().item() for k in sd_a)
    assert moved > 0.5 * LR  # both really stepped (Adam's first step is ~lr per weight)
    assert diff < 0.05 * LR, diff
    assert (tmp_path / "zero2" / "trainer_state" / "deepspeed").is_dir()


@pytest.mark.slow
def test_zero3_two_ranks_saves_full_model_and_continues(micro_dir, micro_policy, examples, recipe, tmp_path):
    model, processor = micro_policy
    specs = [
        ("<think>a</think><answer>1</answer>", 1.0, "anchor"),
        ("b c", -1.0, "negative"),
        ("d", 0.5, "anchor"),
    ]
    rows, _, _ = make_rows(processor, model, specs, group=["g0", "g0", "g1"])
    _give_image(rows, [0, 1], micro_policy, examples, recipe)
    write_rollouts(rows, tmp_path / "adv.parquet")
    recipe = _recipe("deepspeed", stage=3)
    first = run_update(recipe, micro_dir, tmp_path / "adv.parquet", tmp_path / "z3a")
    plain = run_update(_recipe("plain"), micro_dir, tmp_path / "adv.parquet", tmp_path / "plain")
    assert first["update/backend"] == "deepspeed-zero3"
    assert first["actor/loss_first"] == pytest.approx(plain["actor/loss_first"], abs=1e-6)
    a, _ = load_policy(str(tmp_path / "plain"))
    b, _ = load_policy(str(tmp_path / "z3a"))  # gathered from the partitions into one HF folder
    diff = max(
        (x - y).abs().max().item()
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert diff < 0.05 * LR
    second = run_update(
        recipe, str(tmp_path / "z3a"), tmp_path / "adv.parquet", tmp_path / "z3b", state_dir=tmp_path / "z3a"
    )
    assert second["update/global_step"] == 2  # the partitioned optimizer state and schedule were restored
