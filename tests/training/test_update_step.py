"""The RL update on hand-made batches: direction of the step, KL at the reference, accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import make_rows

from care_core.config import build_recipe
from care_core.models import load_policy
from care_core.models.forward import SequenceItem, pack, response_logprobs
from care_core.schema import write_rollouts
from care_core.stages.update import run_update


def _recipe(**train):
    t = {"mini_batch_size": 4, "micro_batch_size": 4, "prompts_per_round": 4, "rounds": 1, **train}
    return build_recipe(
        {"model": {"path": "tiny://micro"}, "optim": {"lr": 1e-3}, "algorithm": {"name": "grpo"}, "train": t}
    )


def _seq_logprob(model_dir, prompt, responses):
    model, _ = load_policy(str(model_dir))
    with torch.no_grad():
        lp = response_logprobs(model, pack([SequenceItem(prompt, r) for r in responses])).logprobs
    return lp.sum(dim=1)


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_update_moves_logprob_with_advantage_sign(micro_dir, micro_policy, tmp_path, advantage):
    model, processor = micro_policy
    rows, prompt, responses = make_rows(
        processor, model, [("<think>two</think><answer>2</answer>", advantage, "anchor")]
    )
    write_rollouts(rows, tmp_path / "adv.parquet")
    metrics = run_update(_recipe(), micro_dir, tmp_path / "adv.parquet", tmp_path / "out")
    before = _seq_logprob(micro_dir, prompt, responses)
    after = _seq_logprob(tmp_path / "out", prompt, responses)
    assert (after - before).item() * advantage > 0.05, (before, after)
    # first step: ratio 1, so the clipped surrogate equals -mean token advantage (GRPO broadcast)
    assert metrics["actor/pg_loss"] == pytest.approx(-advantage, abs=1e-6)
    assert metrics["actor/pg_clipfrac_low"] == 0.0 and metrics["actor/pg_clipfrac_high"] == 0.0
    assert (tmp_path / "out" / "trainer_state" / "optim.pt").is_file()
    load_policy(str(tmp_path / "out"))  # a complete HF folder with its processor


def test_positive_and_negative_in_one_batch(micro_dir, micro_policy, tmp_path):
    model, processor = micro_policy
    rows, prompt, responses = make_rows(
        processor, model, [("two red squares 2", 1.0, "anchor"), ("blue circle 7 7 7", -1.0, "negative")]
    )
    write_rollouts(rows, tmp_path / "adv.parquet")
    run_update(_recipe(), micro_dir, tmp_path / "adv.parquet", tmp_path / "out")
    delta = _seq_logprob(tmp_path / "out", prompt, responses) - _seq_logprob(micro_dir, prompt, responses)
    assert delta[0] > delta[1], delta


def test_kl_zero_when_policy_is_reference(micro_dir, micro_policy, tmp_path):
    model, processor = micro_policy
    rows, _, _ = make_rows(
        processor, model, [("<think>a</think><answer>1</answer>", 1.0, "anchor"), ("x y", -0.5, "negative")]
    )
    write_rollouts(rows, tmp_path / "adv.parquet")
    m = run_update(
        _recipe(), micro_dir, tmp_path / "adv.parquet", tmp_path / "same", reference_path=micro_dir
    )
    assert m["actor/kl"] == 0.0 and m["actor/kl_loss"] == 0.0
    # a different reference (the updated policy) gives a positive k3 KL
    m2 = run_update(
        _recipe(),
        micro_dir,
        tmp_path / "adv.parquet",
        tmp_path / "other",
        reference_path=str(tmp_path / "same"),
    )
    assert m2["actor/kl"] > 0.0


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_micro_batching_equals_one_big_batch(micro_dir, micro_policy, tmp_path, shared_prefix):
    """Accumulated micro-batches equal one batch: same loss and gradient norm (a scaling bug shows
    there), weights equal up to float rounding. The sums run in another order, and Adam's
    normalisation turns rounding in near-zero gradients into weight differences of ~1e-6 at lr 1e-3
    (measured 1.0e-6 without and ~2e-6 with ``train.shared_prefix``, depending on the CPU), far
    below one step's size (lr)."""
    tol = 1e-5
    model, processor = micro_policy
    specs = [
        ("<think>a b</think><answer>1</answer>", 1.0, "anchor"),
        ("c", -0.5, "negative"),
        ("<think>d</think><answer>3 3</answer>", 0.25, "none"),
        ("e f g h", -1.0, "negative"),
    ]
    rows, _, _ = make_rows(processor, model, specs, group=["g0", "g0", "g1", "g1"])
    write_rollouts(rows, tmp_path / "adv.parquet")
    outs = {}
    for micro in (1, 4):
        outs[micro] = run_update(
            _recipe(micro_batch_size=micro, shared_prefix=shared_prefix),
            micro_dir,
            tmp_path / "adv.parquet",
            tmp_path / f"m{micro}",
        )
    assert outs[1]["actor/loss"] == pytest.approx(outs[4]["actor/loss"], abs=1e-6)
    assert outs[1]["actor/grad_norm"] == pytest.approx(outs[4]["actor/grad_norm"], rel=1e-5)
    a, _ = load_policy(str(tmp_path / "m1"))
    b, _ = load_policy(str(tmp_path / "m4"))
    diff = max(
        (x - y).abs().max().item()
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert diff < tol


def test_optimizer_state_continues_across_rounds(micro_dir, micro_policy, tmp_path):
    model, processor = micro_policy
    rows, _, _ = make_rows(processor, model, [("<think>a</think><answer>1</answer>", 1.0, "anchor")])
    write_rollouts(rows, tmp_path / "adv.parquet")
    recipe = _recipe(rounds=4)
    first = run_update(recipe, micro_dir, tmp_path / "adv.parquet", tmp_path / "r1")
    second = run_update(
        recipe, str(tmp_path / "r1"), tmp_path / "adv.parquet", tmp_path / "r2", state_dir=tmp_path / "r1"
    )
    fresh = run_update(recipe, str(tmp_path / "r1"), tmp_path / "adv.parquet", tmp_path / "r2b")
    assert (
        first["update/global_step"] == 1
        and second["update/global_step"] == 2
        and fresh["update/global_step"] == 1
    )
    state = torch.load(Path(tmp_path / "r2" / "trainer_state" / "optim.pt"), weights_only=False)
    assert state["step"] == 2
    assert {v["step"].item() for v in state["optimizer"]["state"].values()} == {
        2.0
    }  # AdamW moments continued
    a, _ = load_policy(str(tmp_path / "r2"))
    b, _ = load_policy(str(tmp_path / "r2b"))
    assert any(
        (x - y).abs().max() > 0 for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_missing_advantage_column_is_an_error(micro_dir, micro_policy, tmp_path):
    from care_core.schema import SchemaError

    model, processor = micro_policy
    rows, _, _ = make_rows(processor, model, [("a", 1.0, "anchor")])
    for r in rows:
        del r["advantage"], r["role"], r["group_kind"]
    write_rollouts(rows, tmp_path / "raw.parquet")
    with pytest.raises(SchemaError, match="advantage"):
        run_update(_recipe(), micro_dir, tmp_path / "raw.parquet", tmp_path / "out")


def test_recompute_old_logprobs(micro_dir, micro_policy, tmp_path):
    """Stale old log-probs (e.g. from another engine) are replaced by the policy's own when configured."""
    model, processor = micro_policy
    rows, _, _ = make_rows(processor, model, [("<think>a</think><answer>1</answer>", -1.0, "negative")])
    rows[0]["old_logprobs"] = [0.0] * len(rows[0]["old_logprobs"])  # wrong: ratio = p << 1 everywhere
    write_rollouts(rows, tmp_path / "adv.parquet")
    stale = run_update(_recipe(), micro_dir, tmp_path / "adv.parquet", tmp_path / "stale")
    fresh = run_update(
        _recipe(recompute_old_logprobs=True), micro_dir, tmp_path / "adv.parquet", tmp_path / "fresh"
    )
    assert fresh["actor/ppo_ratio_mean"] == pytest.approx(1.0, abs=1e-6) and fresh[
        "actor/pg_loss"
    ] == pytest.approx(1.0, abs=1e-6)
    # negative advantage with ratio < 1 - eps_low: the clipped term is the active one on every token
    assert stale["actor/ppo_ratio_mean"] < 0.1 and stale["actor/pg_clipfrac_low"] == 1.0
    assert fresh["actor/pg_clipfrac_low"] == 0.0


def _image_rows(micro_policy, examples, recipe):
    from care_core.stages.rollout import encode_requests

    model, processor = micro_policy
    request = encode_requests(processor, examples[:1], recipe.data, with_images=False)[0]
    rows, _, _ = make_rows(
        processor, model, [("<think>a</think><answer>1</answer>", 1.0, "anchor"), ("b c", -1.0, "negative")]
    )
    for k, r in enumerate(rows):
        r["prompt_ids"] = request.prompt_ids
        r["images"] = examples[0]["images"] if k == 0 else []
    return rows


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_vision_tower(micro_dir, micro_policy, examples, recipe, tmp_path, freeze):
    rows = _image_rows(micro_policy, examples, recipe)
    write_rollouts(rows, tmp_path / "adv.parquet")
    r = build_recipe(
        {
            "model": {"path": "tiny://micro", "freeze_vision": freeze},
            "optim": {"lr": 1e-3},
            "train": {"mini_batch_size": 4, "micro_batch_size": 4, "prompts_per_round": 4, "rounds": 1},
        }
    )
    run_update(r, micro_dir, tmp_path / "adv.parquet", tmp_path / "out")
    before, _ = load_policy(micro_dir)
    after, _ = load_policy(str(tmp_path / "out"))
    sd0, sd1 = before.state_dict(), after.state_dict()
    vision = [k for k in sd0 if ".visual." in f".{k}"]
    text = [k for k in sd0 if "language_model" in k or k.startswith("lm_head")]
    assert vision and text
    vision_moved = any(not torch.equal(sd0[k], sd1[k]) for k in vision)
    assert vision_moved != freeze
    assert any(not torch.equal(sd0[k], sd1[k]) for k in text)


def test_gradient_checkpointing_same_update(micro_dir, micro_policy, examples, recipe, tmp_path):
    rows = _image_rows(micro_policy, examples, recipe)
    write_rollouts(rows, tmp_path / "adv.parquet")
    outs = []
    for gc in (False, True):
        r = build_recipe(
            {
                "model": {"path": "tiny://micro", "gradient_checkpointing": gc},
                "optim": {"lr": 1e-3},
                "train": {"mini_batch_size": 4, "micro_batch_size": 1, "prompts_per_round": 4, "rounds": 1},
            }
        )
        outs.append(run_update(r, micro_dir, tmp_path / "adv.parquet", tmp_path / f"gc{gc}"))
    assert outs[0]["actor/loss"] == pytest.approx(outs[1]["actor/loss"], abs=1e-6)
    assert outs[0]["actor/grad_norm"] == pytest.approx(outs[1]["actor/grad_norm"], rel=1e-4)
