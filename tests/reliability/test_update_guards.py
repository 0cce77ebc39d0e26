"""Issue 17 item 2: a bad step never reaches a saved model; inputs are never overwritten; saves are atomic.
Item 6 (second bullet): rewards outside the verifier's range are a named error at the advantage stage."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from rel_helpers import tree_digest, update_rows

from care_core.config import build_recipe
from care_core.schema import SchemaError, write_rollouts
from care_core.stages import update as update_stage
from care_core.stages.update import run_update
from care_core.training.ppo import NonFiniteUpdateError, PlainBackend


def _recipe(lr: float = 1e-3, **loss):
    return build_recipe(
        {
            "model": {"path": "tiny://micro"},
            "optim": {"lr": lr},
            "algorithm": {"name": "grpo"},
            "loss": loss,
            "train": {"mini_batch_size": 4, "micro_batch_size": 4, "prompts_per_round": 4, "rounds": 1},
        }
    )


@pytest.fixture
def model_copy(micro_dir, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(micro_dir, dst)
    return dst


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_advantage_stops_before_loading(model_copy, tmp_path, bad):
    rows = update_rows(str(model_copy), [1.0, -1.0, 0.5])
    rows[2]["advantage"] = bad
    write_rollouts(rows, tmp_path / "adv.parquet")
    before = tree_digest(model_copy)
    with pytest.raises(ValueError, match=r"adv\.parquet row 2 \(group_id='g0'\): field 'advantage' is"):
        run_update(_recipe(), str(model_copy), tmp_path / "adv.parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert tree_digest(model_copy) == before
    assert not list(tmp_path.glob(".out*")), "no staging folder is left behind"


def test_non_finite_reward_in_update_input_is_named(model_copy, tmp_path):
    rows = update_rows(str(model_copy), [1.0, -1.0])
    rows[1]["reward"] = math.nan
    write_rollouts(rows, tmp_path / "adv.parquet")
    with pytest.raises(SchemaError, match=r"row 1: field 'reward' is nan"):
        run_update(_recipe(), str(model_copy), tmp_path / "adv.parquet", tmp_path / "out")


def test_non_finite_loss_stops_before_the_optimizer_step(model_copy, tmp_path):
    """A reference model with a NaN weight makes the KL term NaN: the loss is NaN at step 1."""
    from safetensors.torch import load_file, save_file

    ref = tmp_path / "ref"
    shutil.copytree(model_copy, ref)
    weights = load_file(ref / "model.safetensors")
    name = next(k for k in weights if "lm_head" in k or "embed_tokens" in k)
    weights[name] = torch.full_like(weights[name], math.nan)
    save_file(weights, ref / "model.safetensors", metadata={"format": "pt"})
    rows = update_rows(str(model_copy), [1.0, -1.0])
    write_rollouts(rows, tmp_path / "adv.parquet")
    before = tree_digest(model_copy)
    with pytest.raises(
        NonFiniteUpdateError, match=r"optimizer step 1 \(mini-batch groups \['g0'\]\): loss is nan"
    ):
        run_update(
            _recipe(kl={"enable": True, "beta": 0.1}),
            str(model_copy),
            tmp_path / "adv.parquet",
            tmp_path / "out",
            reference_path=str(ref),
        )
    assert not (tmp_path / "out").exists() and tree_digest(model_copy) == before


def test_non_finite_gradient_norm_takes_no_step():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    (model(torch.tensor([[1.0, 2.0, 3.0]])).sum() * torch.tensor(math.inf)).backward()
    with pytest.raises(NonFiniteUpdateError, match="gradient norm is"):
        PlainBackend(model, opt, sched, grad_clip=1.0).step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not opt.state, "AdamW moments were not touched"


@pytest.mark.parametrize("where", ["model", "parent"])
def test_out_equal_to_model_is_refused(model_copy, tmp_path, where):
    write_rollouts(update_rows(str(model_copy), [1.0, -1.0]), tmp_path / "adv.parquet")
    before = tree_digest(model_copy)
    out = model_copy if where == "model" else model_copy.parent
    with pytest.raises(ValueError, match=r"would overwrite the input --model"):
        run_update(_recipe(), str(model_copy), tmp_path / "adv.parquet", out)
    assert tree_digest(model_copy) == before


def test_failed_save_leaves_previous_output_intact(model_copy, tmp_path, monkeypatch):
    """A crash while the update writes its output (here: the optimizer state) keeps the earlier output."""
    write_rollouts(update_rows(str(model_copy), [1.0, -1.0]), tmp_path / "adv.parquet")
    out = tmp_path / "out"
    run_update(_recipe(), str(model_copy), tmp_path / "adv.parquet", out)
    first = tree_digest(out)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(update_stage, "save_optim_state", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_update(_recipe(lr=5e-2), str(model_copy), tmp_path / "adv.parquet", out)
    assert tree_digest(out) == first, "the earlier output must be untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adv.parquet", "model", "out"]


def test_sft_save_is_atomic(micro_dir, tmp_path, monkeypatch):
    from care_core.models import load_policy
    from care_core.models.loading import save_policy

    model, processor = load_policy(micro_dir)
    out = tmp_path / "sft"
    save_policy(model, processor, out)
    first = tree_digest(out)

    def broken(*args, **kwargs):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(type(processor), "save_pretrained", broken)
    with pytest.raises(OSError):
        save_policy(model, processor, out)
    assert tree_digest(out) == first
    assert [p.name for p in tmp_path.iterdir()] == ["sft"]


# --------------------------------------------------------------------------- item 6: reward range
@pytest.mark.parametrize("bad", [5.0, -3.0, 1e9])
def test_reward_outside_verifier_range_is_named(tmp_path, bad):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
    from test_advantage_stage import make_rows

    from care_core.stages.advantage import run_advantage

    rows = make_rows()
    rows[6]["reward"] = bad
    write_rollouts(rows, tmp_path / "r.parquet")
    pattern = (
        r"row 6 \(group_id='g-correct', sample_index=2\): column 'reward' is "
        + re.escape(f"{bad:g}")
        + r", outside the verifier's range \[0, 1\]"
    )
    with pytest.raises(SchemaError, match=pattern):
        run_advantage(build_recipe({}), tmp_path / "r.parquet", tmp_path / "a.parquet")
    assert not (tmp_path / "a.parquet").exists()
