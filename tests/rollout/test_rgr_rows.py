"""RGR rows end to end on the micro model: the appended row's replaces, loss_mask, log-probs and scaling."""

from __future__ import annotations

import pytest
import torch

from care_core.config import build_recipe
from care_core.models.forward import SequenceItem, pack, response_logprobs
from care_core.rollout.base import Sample
from care_core.rollout.hf_engine import HFEngine
from care_core.stages.rollout import RowBuilder, _build_group_rows, _embed_rows, encode_requests, run_rgr


def _group(processor, example, request, builder, texts, recipe):
    tok = processor.tokenizer
    samples = [
        Sample(
            tok(t, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")],
            [],
            False,
        )
        for t in texts
    ]
    for s in samples:
        s.logprobs = [0.0] * len(s.response_ids)
    rows = _build_group_rows(builder, f"{example['id']}@r1", example, request, samples, "test")
    return rows


@pytest.mark.parametrize("train_on", ["continuation", "repaired_response"])
def test_rgr_row_replaces_nearest_negative(micro_policy, examples, train_on, tmp_path):
    model, processor = micro_policy
    recipe = build_recipe(
        {"algorithm": {"care": {"K": 2, "M": 2, "rgr": {"train_on": train_on, "max_tokens": 8}}}}
    )
    example = examples[0]
    request = encode_requests(processor, [example], recipe.data, with_images=False)[0]
    builder = RowBuilder(processor, recipe)
    right, wrong = example["answer"], "999"
    texts = [
        f"<think>w</think><answer>{wrong}</answer>",
        f"<think>ok</think><answer>{right}</answer>",
        f"<think>w w w</think><answer>{wrong}</answer>",
        f"<think>long ok ok</think><answer>{right}</answer>",
    ]
    rows = _group(processor, example, request, builder, texts, recipe)
    assert [r["accuracy"] for r in rows] == [0.0, 1.0, 0.0, 1.0]
    _embed_rows(model, rows, [request.mm_inputs] * len(rows), recipe, pad_id=processor.tokenizer.pad_token_id)
    # nearest failure to the anchor (row 1, shortest think) by cosine distance
    emb = torch.tensor([r["embedding"] for r in rows])
    d = 1 - emb @ emb[1]
    nearest = min((0, 2), key=lambda i: float(d[i]))

    engine = HFEngine(model, processor, batch_size=4, show_progress=False)
    new_rows, stats = run_rgr(
        model,
        engine,
        builder,
        recipe,
        [(example, request, rows)],
        seed=5,
        pad_id=processor.tokenizer.pad_token_id,
    )
    assert stats["rgr/attempts"] == 1 and len(new_rows) == 1
    rgr = new_rows[0]
    assert rgr["source"] == "rgr" and rgr["replaces"] == nearest and rgr["sample_index"] == 4
    assert rgr["prompt_ids"] == rows[0]["prompt_ids"] and rgr["group_id"] == rows[0]["group_id"]
    prefix = builder.tokenizer(f"<think>{'w' if nearest == 0 else 'w w w'}", add_special_tokens=False)[
        "input_ids"
    ]
    n_mask0 = rgr["loss_mask"].count(0)
    if train_on == "continuation":
        assert n_mask0 == 0
    else:
        assert n_mask0 > len(prefix)  # copied think + cue + tags are masked
        assert rgr["loss_mask"] == [0] * n_mask0 + [1] * (len(rgr["response_ids"]) - n_mask0)
        assert rgr["response_ids"][: len(prefix)] == prefix
    # old log-probs are the policy's on the trained sequence
    batch = pack([SequenceItem(rgr["prompt_ids"], rgr["response_ids"], request.mm_inputs)])
    with torch.no_grad():
        expected = response_logprobs(model, batch).logprobs[0]
    assert torch.allclose(torch.tensor(rgr["old_logprobs"]), expected, atol=1e-5)
    assert abs(torch.tensor(rgr["embedding"]).norm().item() - 1) < 1e-5

    # the advantage stage then treats it as a replacement (scaling by s_refl for a failed repair)
    from care_core.schema import write_rollouts
    from care_core.stages.advantage import run_advantage

    for r in rows + new_rows:
        r.pop("images", None)
    write_rollouts(rows + new_rows, tmp_path / "r.parquet")
    run_advantage(recipe, tmp_path / "r.parquet", tmp_path / "a.parquet")
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "a.parquet").to_pylist()
    by_index = {r["sample_index"]: r for r in out}
    assert by_index[nearest]["advantage"] == 0.0  # the repaired original gets A = 0
    assert by_index[4]["role"] == ("rgr_positive" if rgr["accuracy"] >= 1 else "rgr_negative")
    if by_index[4]["role"] == "rgr_negative":
        anchor_adv = by_index[1]["advantage"]
        assert by_index[4]["advantage"] < 0 < anchor_adv


def test_rgr_skips_groups_without_positive_or_failure(micro_policy, examples):
    model, processor = micro_policy
    recipe = build_recipe({"algorithm": {"care": {"K": 2, "M": 2, "rgr": {"max_tokens": 4}}}})
    example = examples[0]
    request = encode_requests(processor, [example], recipe.data, with_images=False)[0]
    builder = RowBuilder(processor, recipe)
    wrong = [f"<think>{w}</think><answer>999</answer>" for w in ("a", "b")]
    rows = _group(processor, example, request, builder, wrong, recipe)
    _embed_rows(model, rows, [request.mm_inputs] * 2, recipe, pad_id=0)
    engine = HFEngine(model, processor, batch_size=4, show_progress=False)
    new_rows, stats = run_rgr(model, engine, builder, recipe, [(example, request, rows)], seed=0, pad_id=0)
    assert new_rows == [] and stats["rgr/attempts"] == 0
