"""Reflection-Guided Resampling: repair prefixes, cue templates, target choice and trained sequences."""

from __future__ import annotations

import pytest
import torch

from care_core.rollout.rgr import (
    SENTENCE_CUE,
    STRUCTURED_CUE,
    GroupView,
    assemble_repair,
    build_repair_prefix,
    repair_cue,
    repair_target,
)

CUE = "[CUE]"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # both blocks: cue right before </think>, cut right after <answer>
        ("<think>2+2=5</think><answer>5</answer>", "<think>2+2=5[CUE]</think><answer>"),
        ("<think>a</think>\n<answer> 5 </answer> tail", "<think>a[CUE]</think>\n<answer>"),
        # think closed, no answer block: <answer> appended after </think>
        ("<think>a</think> so it is 5", "<think>a[CUE]</think><answer>"),
        # think never closed (truncated): cue appended, think closed, <answer> appended
        ("<think>a b c", "<think>a b c[CUE]</think><answer>"),
        # think not closed but an answer follows: cue before the answer block
        ("<think>a <answer>5</answer>", "<think>a [CUE]</think><answer>"),
        # no think at all: a think block holding only the cue is opened
        ("<answer>5</answer>", "<think>[CUE]</think><answer>"),
        ("it is 5", "it is 5<think>[CUE]</think><answer>"),
        ("", "<think>[CUE]</think><answer>"),
        # closing tag without an opening tag (opening tag in the prompt)
        ("reasoning</think><answer>5</answer>", "reasoning[CUE]</think><answer>"),
    ],
)
def test_build_repair_prefix(response, expected):
    assert build_repair_prefix(response, CUE) == expected


def test_prefix_without_cue_is_promptless_control():
    assert (
        build_repair_prefix("<think>x</think><answer>1</answer>", repair_cue("none"))
        == "<think>x</think><answer>"
    )


def test_cue_templates(micro_policy):
    _, processor = micro_policy
    tok = processor.tokenizer
    assert repair_cue("sentence") == SENTENCE_CUE
    assert repair_cue("structured") == STRUCTURED_CUE
    for line in ("<repair>", "Mistake:", "Fix:", "Corrected final answer:", "</repair>"):
        assert line in STRUCTURED_CUE
    capped = repair_cue("structured", tok, max_tokens=64)
    n = len(tok(capped, add_special_tokens=False)["input_ids"])
    assert n <= 64 + 1  # re-tokenising the decoded cut may merge/split one boundary token
    assert STRUCTURED_CUE.startswith(capped.rstrip()[:20])
    with pytest.raises(ValueError, match="template"):
        repair_cue("poem")


def _group(acc, emb):
    acc = torch.tensor(acc, dtype=torch.float64)
    return GroupView(
        reward=acc.clone(),
        accuracy=acc,
        embeddings=torch.tensor(emb, dtype=torch.float64),
        think_len=torch.tensor([3, 1, 5, 4, 2]),
        answer_len=torch.ones(5, dtype=torch.long),
    )


def test_repair_target_is_nearest_failure_to_anchor():
    # anchor = shortest-think positive = column 1 (think_len 1); failures 0, 2, 4
    emb = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0], [0.1, 0.99]]
    assert repair_target(_group([0, 1, 0, 1, 0], emb), K=2, M=3) == 4
    assert repair_target(_group([1, 1, 1, 1, 1], emb), K=2, M=3) == -1  # no failure
    assert repair_target(_group([0, 0, 0, 0, 0], emb), K=2, M=3) == -1  # no positive


def test_assemble_repair_modes():
    cont = assemble_repair([7, 8, 9], "P", [4, 5], "C", "continuation")
    assert cont.response_ids == [4, 5] and cont.loss_mask == [1, 1] and cont.scored_text == "PC"
    full = assemble_repair([7, 8, 9], "P", [4, 5], "C", "repaired_response")
    assert (
        full.response_ids == [7, 8, 9, 4, 5]
        and full.loss_mask == [0, 0, 0, 1, 1]
        and full.scored_text == "PC"
    )
    with pytest.raises(ValueError, match="train_on"):
        assemble_repair([1], "P", [2], "C", "everything")
