"""PPO batching pieces, optimizer state files and round checkpoints."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from care_core.config import build_recipe
from care_core.training.checkpoint import commit_round, find_resume, load_rng, work_dir
from care_core.training.optim import (
    build_optimizer,
    build_scheduler,
    load_optim_state,
    save_optim_state,
    steps_per_round,
)
from care_core.training.ppo import TrainRow, _denominator, plan_mini_batches, settings_from_recipe


def _row(group, n=2, mask=None):
    return TrainRow(group, [1], [2] * n, [0.0] * n, mask or [1] * n, [-1, -1], [-1, -1], 0.0)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=9),
    mini=st.integers(1, 5),
    seed=st.integers(0, 5),
    step=st.integers(0, 5),
)
def test_mini_batches_cover_rows_and_keep_groups(sizes, mini, seed, step):
    rows = [_row(f"g{g}") for g, n in enumerate(sizes) for _ in range(n)]
    plan = plan_mini_batches(rows, mini, seed, step)
    flat = [i for mb in plan for i in mb]
    assert sorted(flat) == list(range(len(rows)))  # every row exactly once
    for mb in plan:
        groups = {rows[i].group_id for i in mb}
        assert len(groups) <= mini
        for g in groups:  # a group is never split across mini-batches
            assert sum(1 for r in rows if r.group_id == g) == sum(1 for i in mb if rows[i].group_id == g)
    assert plan == plan_mini_batches(rows, mini, seed, step)


def test_denominators():
    rows = [_row("a", 3), _row("a", 2, [0, 0]), _row("b", 4, [1, 0, 1, 0])]
    assert _denominator(rows, "token-mean") == 5.0
    assert _denominator(rows, "seq-mean-token-mean") == 2.0  # fully masked sequences do not count


def test_region_weights_only_for_care():
    care = settings_from_recipe(build_recipe({"algorithm": {"name": "care"}}))
    grpo = settings_from_recipe(build_recipe({"algorithm": {"name": "grpo"}}))
    assert care.region is not None and grpo.region is None
    off = settings_from_recipe(build_recipe({"loss": {"kl": {"beta": 0.0}}}))
    assert off.kl is None
    on = settings_from_recipe(build_recipe({"loss": {"kl": {"beta": 0.02, "type": "k2"}}}))
    assert on.kl is not None and (on.kl.beta, on.kl.type) == (0.02, "k2")


def test_optim_state_roundtrip_and_schedule(tmp_path):
    recipe = build_recipe({"optim": {"lr": 0.1, "scheduler": "linear", "warmup_steps": 0}})
    assert steps_per_round(10, 4, 2) == 6
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model.parameters(), recipe.optim)
    sched = build_scheduler(opt, recipe.optim, total_steps=4)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.075)
    save_optim_state(tmp_path, opt, sched, step=1)
    opt2 = build_optimizer(model.parameters(), recipe.optim)
    sched2 = build_scheduler(opt2, recipe.optim, total_steps=4)
    assert load_optim_state(tmp_path / "optim.pt", opt2, sched2) == 1
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.075)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_round_checkpoints_latest_and_resume(tmp_path):
    run = tmp_path / "run"
    assert find_resume(run, "auto") is None
    for r in (1, 2):
        wd = work_dir(run, r)
        (wd / "policy").mkdir(parents=True)
        random.seed(r)
        np.random.seed(r)
        torch.manual_seed(r)
        commit_round(run, r, {"round": r, "global_step": 3 * r})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    (work_dir(run, 3) / "policy").mkdir(parents=True)  # a killed round 3
    point = find_resume(run, "auto")
    assert point.round_index == 2 and point.state["global_step"] == 6 and point.policy_dir.is_dir()
    assert (run / "latest").read_text().strip() == "rounds/round_0002"
    assert not work_dir(run, 3).exists(), "stale .tmp round folders are removed on resume"
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    load_rng(point.round_dir)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert find_resume(run, "never") is None
    assert find_resume(run, str(run / "rounds" / "round_0001")).round_index == 1
    with pytest.raises(FileNotFoundError, match="state.json"):
        find_resume(run, str(run / "rounds" / "nope"))


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.booleans(), min_size=1, max_size=12), world=st.integers(1, 4))
def test_rank_schedule_same_kind_per_step_and_each_micro_once(kinds, world):
    from care_core.training.ppo import rank_schedule

    micros = list(range(len(kinds)))
    plans = [rank_schedule(micros, kinds, r, world) for r in range(world)]
    assert len({len(p) for p in plans}) == 1  # same number of backward passes on every rank
    real = sorted(m for p in plans for m, ok in p if ok)
    assert real == micros  # every micro-batch exactly once
    for step in zip(*plans, strict=True):
        assert len({kinds[m] for m, _ in step}) == 1  # all ranks run the same kind of micro-batch
    if world == 1:
        assert plans[0] == [(m, True) for m in micros]
