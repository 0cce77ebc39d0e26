"""The learning experiment's arm recipes share one budget (bench/efficacy.py refuses otherwise)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _efficacy():
    spec = importlib.util.spec_from_file_location("efficacy_bench", REPO / "bench" / "efficacy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arms_differ_only_in_algorithm():
    eff = _efficacy()
    recipes = eff.load_arms(list(eff.ARMS), [])
    assert {arm: r.algorithm.name for arm, r in recipes.items()} == {
        "grpo": "grpo",
        "care": "care",
        "care-no-rgr": "care",
        "care-no-region": "care",
    }
    assert recipes["care"].algorithm.care.rgr.enable and not recipes["care-no-rgr"].algorithm.care.rgr.enable
    assert (
        recipes["care"].algorithm.care.region.enable
        and not recipes["care-no-region"].algorithm.care.region.enable
    )


def test_an_arm_with_another_budget_is_refused(tmp_path, monkeypatch):
    eff = _efficacy()
    shutil.copytree(REPO / "recipes" / "efficacy", tmp_path / "recipes" / "efficacy")
    care = tmp_path / "recipes" / "efficacy" / "care.yaml"
    care.write_text(care.read_text().replace("rounds: 24", "rounds: 25"))
    monkeypatch.setattr(eff, "REPO", tmp_path)
    with pytest.raises(ValueError, match=r"care\.yaml: section 'train' differs"):
        eff.load_arms(["grpo", "care"], [])


def test_image_swap_control_permutes_within_each_source():
    import pyarrow as pa

    eff = _efficacy()
    sources = ["a", "b", "a", "a", "b", "c"]
    images = [[{"bytes": bytes([i]), "path": f"{i}.png"}] for i in range(len(sources))]
    table = pa.table({"id": [str(i) for i in range(6)], "data_source": sources, "images": images})
    swapped = eff.swap_images_within_source(table, seed=3)
    got = [row[0]["bytes"][0] for row in swapped.column("images").to_pylist()]
    assert sorted(got) == list(range(6))  # a permutation: nothing lost or duplicated
    assert all(sources[g] == sources[i] for i, g in enumerate(got))  # each image stays in its source
    assert got != list(range(6))  # and the rows really moved
    assert swapped.column("id").to_pylist() == table.column("id").to_pylist()
    assert swapped.schema == table.schema


def test_sft_cache_key_covers_model_data_and_sft_only():
    eff = _efficacy()
    arms = eff.load_arms(list(eff.ARMS), [])
    keys = {eff.sft_key(r) for r in arms.values()}
    assert len(keys) == 1  # every arm shares the one SFT checkpoint
    (key,) = keys
    same = eff.load_arms(["grpo"], ["train.rounds=3", "optim.lr=1e-4", "rollout.n=4"])["grpo"]
    assert eff.sft_key(same) == key  # RL settings do not retrain SFT
    for override in (
        "train.sft.max_steps=7",
        "data.synthetic.n_train=10",
        "model.tiny.image_size=32",
        "train.seed=5",
    ):
        assert eff.sft_key(eff.load_arms(["grpo"], [override])["grpo"]) != key, override


def test_comparison_paired_differences_and_standard_errors():
    eff = _efficacy()

    def run(arm, seed, acc):
        return {"arm": arm, "seed": seed, "final_accuracy": acc, "wall_s": 1.0}

    results = [run("grpo", s, a) for s, a in enumerate([0.50, 0.52, 0.54])]
    results += [run("care", s, a) for s, a in enumerate([0.51, 0.55, 0.54])]
    comp = eff.comparison(results, sft_acc=0.45, arms=["grpo", "care"])
    grpo = comp["arms"]["grpo"]
    assert grpo["mean"] == pytest.approx(0.52) and grpo["std"] == pytest.approx(0.02)
    assert grpo["se"] == pytest.approx(0.02 / 3**0.5)
    assert grpo["gain_over_sft"] == pytest.approx(0.07) and grpo["above_sft_by_2se"]
    paired = comp["paired"]["care - grpo"]
    assert list(paired["per_seed"].values()) == pytest.approx([0.01, 0.03, 0.0])
    assert paired["mean"] == pytest.approx(0.04 / 3)
    # std of (0.01, 0.03, 0.00) = sqrt(((-1/3)^2 + (5/3)^2 + (-4/3)^2) / 2) / 100 = sqrt(7/3) / 100
    assert paired["se"] == pytest.approx((7 / 3) ** 0.5 / 100 / 3**0.5)
