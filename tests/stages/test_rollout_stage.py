"""Rollout stage on the micro model and the synthetic suite: rows, determinism, RGR, dynamic sampling."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from care_core.config import build_recipe
from care_core.models.forward import SequenceItem, pack, response_logprobs
from care_core.schema import ROLLOUT_SCHEMA, read_rollouts
from care_core.stages.rollout import run_rollout, sample_prompt_indices


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path

    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    overrides = {
        "model": {"path": "tiny://micro", "cache_dir": cache},
        "data": {"synthetic": {"n_train": 12, "n_test": 2}},
        "rollout": {"n": 3, "max_new_tokens": 12, "batch_size": 4},
        "algorithm": {"care": {"K": 2, "M": 2, "rgr": {"max_tokens": 6}}},
        "train": {"prompts_per_round": 3, "micro_batch_size": 8},
    }
    recipe = build_recipe(overrides)
    data = tmp_path_factory.mktemp("data")
    write_synthetic(recipe.data.synthetic, data, image_size=recipe.model.tiny.image_size)
    return recipe, resolve_model_path(recipe.model), data, overrides


def test_prompt_sampling_is_deterministic():
    a = sample_prompt_indices(10, 4, seed=0, round_index=1)
    assert a == sample_prompt_indices(10, 4, seed=0, round_index=1) and len(set(a)) == 4
    assert a != sample_prompt_indices(10, 4, seed=0, round_index=2)
    assert len(sample_prompt_indices(3, 7, seed=0, round_index=1)) == 7  # wraps around


def test_rollout_rows(setup, tmp_path):
    recipe, model_dir, data, _ = setup
    metrics = run_rollout(recipe, model_dir, data, tmp_path / "r1.parquet", round_index=1)
    table = read_rollouts(tmp_path / "r1.parquet")
    assert table.schema.names[: len(ROLLOUT_SCHEMA.names)] == ROLLOUT_SCHEMA.names
    rows = table.to_pylist()
    rollout_rows = [r for r in rows if r["source"] == "rollout"]
    groups = {r["group_id"] for r in rollout_rows}
    assert len(groups) == 3 and len(rollout_rows) == 9
    assert all(g.endswith("@r1") for g in groups)
    for g in groups:
        assert sorted(r["sample_index"] for r in rollout_rows if r["group_id"] == g) == [0, 1, 2]
    for r in rollout_rows:
        n = len(r["response_ids"])
        assert len(r["old_logprobs"]) == n == len(r["loss_mask"]) and set(r["loss_mask"]) == {1}
        assert r["truncated"] == (n == 12 and r["response_ids"][-1] != 1026) or not r["truncated"]
        assert abs(sum(x * x for x in r["embedding"]) - 1) < 1e-4
        assert r["reward"] == pytest.approx(0.9 * r["accuracy"] + 0.1 * r["format"])
        assert r["replaces"] == -1
        assert bool(r["images"]) == (r["sample_index"] == 0)  # the group's images ride on its first row
    assert metrics["reward/mean"] == pytest.approx(sum(r["reward"] for r in rollout_rows) / 9)
    assert metrics["groups/frac_all_correct"] + metrics["groups/frac_all_wrong"] + metrics[
        "groups/frac_mixed"
    ] == pytest.approx(1)
    assert metrics["perf/rollout_tokens_per_s"] > 0
    # same round -> identical rows; another round -> other prompts
    run_rollout(recipe, model_dir, data, tmp_path / "again.parquet", round_index=1)
    again = pq.read_table(tmp_path / "again.parquet").to_pylist()
    assert [r["response_ids"] for r in again] == [r["response_ids"] for r in rows]
    run_rollout(recipe, model_dir, data, tmp_path / "r2.parquet", round_index=2)
    assert {r["group_id"].split("@")[0] for r in pq.read_table(tmp_path / "r2.parquet").to_pylist()} != {
        g.split("@")[0] for g in groups
    }


def test_grpo_rollouts_skip_the_embedding_pass(setup, tmp_path, monkeypatch):
    """Only CARE reads think-span embeddings: a GRPO rollout writes empty ones and never runs the
    extra forward, and its sampled rows are otherwise the CARE rollout's (same seed)."""
    from care_core.stages import rollout as rollout_stage

    recipe, model_dir, data, overrides = setup
    care_rows = pq.read_table(
        run_rollout_path(recipe, model_dir, data, tmp_path / "care.parquet")
    ).to_pylist()
    calls = {"n": 0}
    original = rollout_stage._embed_rows

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(rollout_stage, "_embed_rows", counted)
    grpo = build_recipe({**overrides, "algorithm": {"name": "grpo"}})
    grpo_rows = pq.read_table(run_rollout_path(grpo, model_dir, data, tmp_path / "grpo.parquet")).to_pylist()
    assert calls["n"] == 0
    assert all(r["embedding"] == [] for r in grpo_rows)
    care_sampled = [r for r in care_rows if r["source"] == "rollout"]
    assert [r["response_ids"] for r in grpo_rows] == [r["response_ids"] for r in care_sampled]
    assert [r["old_logprobs"] for r in grpo_rows] == [r["old_logprobs"] for r in care_sampled]
    assert all(len(r["embedding"]) > 0 for r in care_sampled)


def run_rollout_path(recipe, model_dir, data, path):
    run_rollout(recipe, model_dir, data, path, round_index=5)
    return path


def test_rollout_logprobs_match_update_forward(setup, tmp_path):
    """The update stage re-encodes images from the stored bytes: its teacher-forced log-probs must
    equal the rollout's sampling log-probs."""
    from care_core.models import load_policy
    from care_core.stages.update import make_mm_lookup, read_update_rows

    recipe, model_dir, data, _ = setup
    run_rollout(recipe, model_dir, data, tmp_path / "r.parquet", round_index=3)
    table = pq.read_table(tmp_path / "r.parquet")
    import pyarrow as pa

    table = table.append_column("advantage", pa.array([0.0] * table.num_rows)).append_column(
        "role", pa.array(["none"] * table.num_rows)
    )
    pq.write_table(table, tmp_path / "a.parquet")
    rows, images = read_update_rows(tmp_path / "a.parquet")
    model, processor = load_policy(model_dir)
    mm_for = make_mm_lookup(processor, images, recipe.data, "test")
    batch = pack([SequenceItem(r.prompt_ids, r.response_ids, mm_for(r)) for r in rows])
    with torch.no_grad():
        lp = response_logprobs(model, batch).logprobs
    for i, r in enumerate(rows):
        assert torch.allclose(lp[i, : len(r.response_ids)], torch.tensor(r.old_logprobs), atol=1e-4)


def test_dynamic_sampling_keeps_only_mixed_groups(setup, tmp_path, monkeypatch):
    """DAPO dynamic sampling with a scripted verifier: the first prompts of the file always score
    correct (all-correct groups, dropped); the others alternate (mixed groups, kept)."""
    from care_core.schema import read_examples
    from care_core.stages import rollout as rollout_stage

    recipe, model_dir, data, overrides = setup
    ids = [r["id"] for r in read_examples(data / "train.parquet").to_pylist()]
    always = set(ids[:6])
    calls = {"n": 0}

    def scripted(self, text, row, where):
        calls["n"] += 1
        acc = 1.0 if row["id"] in always or calls["n"] % 2 else 0.0
        return {"reward": acc, "accuracy": acc, "format": 0.0}

    monkeypatch.setattr(rollout_stage.RowBuilder, "score", scripted)
    ds = build_recipe(
        {
            **overrides,
            "train": {**overrides["train"], "prompts_per_round": 4},
            "algorithm": {"name": "grpo", "dynamic_sampling": {"enable": True, "max_tries": 4}},
        }
    )
    metrics = run_rollout(ds, model_dir, data, tmp_path / "ds.parquet", round_index=1)
    rows = pq.read_table(tmp_path / "ds.parquet").to_pylist()
    by_group: dict[str, list[float]] = {}
    for r in rows:
        by_group.setdefault(r["group_id"], []).append(r["accuracy"])
    assert by_group and all(0 < sum(acc) < len(acc) for acc in by_group.values())  # only mixed groups
    assert not {g.split("@")[0] for g in by_group} & always
    assert len(by_group) == min(4, len(ids) - len(always)) or metrics["dynamic_sampling/tries"] == 4
    assert metrics["dynamic_sampling/dropped_groups"] == metrics["dynamic_sampling/sampled_groups"] - len(
        by_group
    )
    assert metrics["groups/frac_mixed"] == 1.0
    assert not any(r["source"] == "rgr" for r in rows)  # RGR is CARE-only


def test_dynamic_sampling_without_informative_groups_fails_loudly(setup, tmp_path, monkeypatch):
    """One failure behaviour (algorithms.dynamic_sampling.fill_batch): when every draw is all-correct,
    the rollout raises after max_tries draws, naming the keys to change, and writes nothing."""
    from care_core.algorithms import DynamicSamplingError
    from care_core.stages import rollout as rollout_stage

    recipe, model_dir, data, overrides = setup
    monkeypatch.setattr(rollout_stage.RowBuilder, "score", lambda self, text, row, where: {"reward": 1.0, "accuracy": 1.0,
                                                                                          "format": 1.0})  # fmt: skip
    ds = build_recipe(
        {**overrides, "algorithm": {"name": "grpo", "dynamic_sampling": {"enable": True, "max_tries": 2}}}
    )
    with pytest.raises(DynamicSamplingError, match=r"only 0 of 3 groups.*after 2 tries.*max_tries"):
        run_rollout(ds, model_dir, data, tmp_path / "none.parquet", round_index=1)
    assert not (tmp_path / "none.parquet").exists()
