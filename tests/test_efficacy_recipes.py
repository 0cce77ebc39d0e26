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
    care.write_text(care.read_text().replace("rounds: 16", "rounds: 17"))
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
