"""CARE token weighting as the authors run it, and each project choice as a switch (docs/method.md §7).

Hand-computed token advantages for: spans holding the content between the tags (default) vs the
tags too; a response without an answer span weighted wholly as answer (default) vs think kept
apart; the rescue pseudo-anchor's think span at weight 0 (default) vs tau_pos.
"""

from __future__ import annotations

import pytest
import torch

from care_core.algorithms import region_token_advantages, think_weighted, token_advantages
from care_core.config import RegionConfig
from care_core.rewards.extraction import find_spans_text, find_spans_tokens

# token ids: <think>=1 </think>=2 <answer>=3 </answer>=4; content tokens >= 10
TAGS = {"think_open": [1], "think_close": [2], "answer_open": [3], "answer_close": [4]}
RESPONSE = [1, 10, 11, 2, 3, 12, 4]  # <think> a b </think> <answer> c </answer>


def test_token_spans_exclude_tags_by_default_for_region_weights() -> None:
    """Content spans: think = tokens 1..2 -> [1, 3); answer = token 5 -> [5, 6). With tags: [0, 4), [4, 7)."""
    assert find_spans_tokens(RESPONSE, TAGS, include_tags=False) == ((1, 3), (5, 6))
    assert find_spans_tokens(RESPONSE, TAGS, include_tags=True) == ((0, 4), (4, 7))
    # no opening tag (it was in the prompt): the think content starts at 0
    assert find_spans_tokens([10, 2, 3, 12, 4], TAGS, include_tags=False) == ((0, 1), (3, 4))
    # empty blocks give empty spans, not absent ones
    assert find_spans_tokens([1, 2, 3, 4], TAGS, include_tags=False) == ((1, 1), (3, 3))


def test_text_spans_exclude_tags() -> None:
    text = "<think>ab</think><answer>c</answer>"
    assert find_spans_text(text, include_tags=False) == ((7, 9), (25, 26))
    assert text[7:9] == "ab" and text[25:26] == "c"
    assert find_spans_text(text) == ((0, 17), (17, 35))  # the default (tags included) is unchanged
    assert find_spans_text("ab</think><answer></answer>", include_tags=False) == ((0, 2), (18, 18))


def test_token_spans_with_a_tokenizer_exclude_tag_pieces() -> None:
    """Per-token pieces through a minimal decoder: the tag tokens fall outside the content spans."""
    pieces = {1: "<think>", 10: "x=", 11: "1+1", 2: "</think>", 3: "<answer>", 12: "2", 4: "</answer>"}

    class Tok:
        def decode(self, ids, **_kw):  # noqa: ANN001, ANN201
            return "".join(pieces[i] for i in ids)

    assert find_spans_tokens(RESPONSE, Tok(), include_tags=False) == ((1, 3), (5, 6))
    assert find_spans_tokens(RESPONSE, Tok()) == ((0, 4), (4, 7))


def _adv(seq_adv: float, think, answer, roles, region: RegionConfig, length: int = 7) -> list[float]:
    return region_token_advantages(
        torch.tensor([seq_adv]),
        torch.ones(1, length),
        torch.tensor([think]),
        torch.tensor([answer]),
        roles,
        region,
    )[0].tolist()


def test_one_token_answer_negative_pushes_only_the_answer() -> None:
    """Negative A = -1 on RESPONSE. Content spans: only token 5 ("c") has weight 1 -> a = (0,0,0,0,0,-1,0).
    Tag-inclusive spans (the old choice): answer span [4, 7) = <answer> c </answer>, three tokens of
    weight 1 -> -1/3 each, so two thirds of the push lands on the tags."""
    region = RegionConfig()
    think, answer = find_spans_tokens(RESPONSE, TAGS, include_tags=region.include_tags)
    assert _adv(-1.0, think, answer, ["negative"], region) == pytest.approx([0, 0, 0, 0, 0, -1.0, 0])
    think, answer = find_spans_tokens(RESPONSE, TAGS, include_tags=True)
    assert _adv(-1.0, think, answer, ["negative"], region) == pytest.approx(
        [0, 0, 0, 0, -1 / 3, -1 / 3, -1 / 3]
    )


def test_anchor_think_weight_on_content_spans() -> None:
    """Anchor A = 2: think content tokens 1, 2 weigh tau = 0.005, answer token 5 weighs 1; sum 1.01.
    a = 2 * w / 1.01: think 0.00990099 each, answer 1.98019802, tags 0."""
    out = _adv(2.0, [1, 3], [5, 6], ["anchor"], RegionConfig())
    assert out == pytest.approx([0, 0.01 / 1.01, 0.01 / 1.01, 0, 0, 2 / 1.01, 0], rel=1e-6)


def test_no_answer_span_counts_wholly_as_answer() -> None:
    """No answer span, think [0, 3) of a 5-token response, negative A = -1.
    whole (default): all 5 tokens weigh 1 -> -0.2 each (think included).
    outside_think (the old choice): think weighs 0 (negative), tokens 3, 4 weigh 1 -> -0.5 each.
    An empty answer span ([4, 4)) counts as none."""
    whole = RegionConfig()
    assert _adv(-1.0, [0, 3], [-1, -1], ["negative"], whole, 5) == pytest.approx([-0.2] * 5)
    assert _adv(-1.0, [0, 3], [4, 4], ["negative"], whole, 5) == pytest.approx([-0.2] * 5)
    apart = RegionConfig(no_answer="outside_think")
    assert _adv(-1.0, [0, 3], [-1, -1], ["negative"], apart, 5) == pytest.approx([0, 0, 0, -0.5, -0.5])
    # a positive without an answer span under `whole`: every token weighs 1 too (A/5 each)
    assert _adv(1.0, [0, 3], [-1, -1], ["anchor"], whole, 5) == pytest.approx([0.2] * 5)
    with pytest.raises(ValueError, match="no_answer"):
        token_advantages(torch.tensor([1.0]), torch.ones(1, 2), torch.tensor([[-1, -1]]), torch.tensor([[-1, -1]]),
                         torch.tensor([True]), no_answer="nope")  # fmt: skip


def test_pseudo_anchor_think_weighs_zero() -> None:
    """Rescue pseudo-anchor A = 2, think [1, 3), answer [5, 6).
    default: think weight 0 -> the answer token carries all of A: (0, 0, 0, 0, 0, 2, 0).
    pseudo_anchor_think=true (the old choice): think tau = 0.005 like a true anchor -> sum 1.01."""
    assert _adv(2.0, [1, 3], [5, 6], ["pseudo_anchor"], RegionConfig()) == pytest.approx(
        [0, 0, 0, 0, 0, 2.0, 0]
    )
    on = RegionConfig(pseudo_anchor_think=True)
    assert _adv(2.0, [1, 3], [5, 6], ["pseudo_anchor"], on) == pytest.approx(
        [0, 0.01 / 1.01, 0.01 / 1.01, 0, 0, 2 / 1.01, 0], rel=1e-6
    )
    assert think_weighted(["anchor", "rgr_positive", "pseudo_anchor", "negative", "none", "none"],
                          [1, 1, 1, -1, 0.5, 0.0]).tolist() == [True, True, False, False, True, False]  # fmt: skip


def test_no_region_broadcasts() -> None:
    """region=None (GRPO, or CARE with region.enable=false): A on every response token."""
    out = region_token_advantages(torch.tensor([1.5]), torch.tensor([[1, 1, 1, 0]]), torch.tensor([[0, 1]]),
                                  torch.tensor([[2, 3]]), ["none"], None)  # fmt: skip
    assert out[0].tolist() == [1.5, 1.5, 1.5, 0.0]
