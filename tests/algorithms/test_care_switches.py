"""Each CARE switch changes the output exactly as docs/method.md says when it is turned off."""

from __future__ import annotations

import math

import pytest
import torch
from alg_helpers import one_group

from care_core.algorithms import ROLE, care_advantages, token_advantages
from care_core.config import CareConfig, RescueConfig, RGRConfig

NONE = ROLE["none"]


def test_rescue_off_zeroes_all_wrong_groups() -> None:
    g = one_group([0.0, 0.1, 0.0, 0.1], [0, 0, 0, 0], logprob=[-1.0, -2.0, -3.0, -4.0])
    on = care_advantages(g, CareConfig())
    off = care_advantages(g, CareConfig(rescue=RescueConfig(enable=False)))
    assert (on.advantages != 0).sum() == 4  # t + K' = min(4, 3) pseudo-negatives
    assert (off.advantages == 0).all() and (off.roles == NONE).all()
    assert not bool(off.stats["rescued"][0]) and int(off.stats["k_prime"][0]) == 0


def test_rescue_logprob_norm_picks_pseudo_anchor() -> None:
    """sum vs mean: token log-probs (-1,-1,-1) sum -3 / mean -1 vs (-2.5) sum -2.5 / mean -2.5."""
    from care_core.algorithms import select_pseudo_anchor, sequence_logprob

    lengths = torch.tensor([3, 1])
    flat = torch.tensor([-1.0, -1.0, -1.0, -2.5])
    fail = torch.tensor([[True, True]])
    by_sum = sequence_logprob(flat, lengths, "sum")
    by_mean = sequence_logprob(flat, lengths, "mean")
    assert by_sum.tolist() == [-3.0, -2.5] and by_mean.tolist() == [-1.0, -2.5]
    assert int(select_pseudo_anchor(by_sum[None], fail)[0]) == 1
    assert int(select_pseudo_anchor(by_mean[None], fail)[0]) == 0


def _rgr_group():
    emb = [[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0, 0, 1], [0.3, 0.3, 0.3]]
    return one_group(
        [1.0, 0.0, 0.0, 0.0, 0.1], [1, 0, 0, 0, 0], emb=emb,
        is_rgr=[False, False, False, False, True], replaces=[-1, -1, -1, -1, 2],
    )  # fmt: skip


def test_rgr_off_keeps_original_negative() -> None:
    """rgr.enable=False: the RGR row gets A = 0 and the group equals the same group without it."""
    off = care_advantages(_rgr_group(), CareConfig(rgr=RGRConfig(enable=False)))
    plain = care_advantages(
        one_group([1.0, 0.0, 0.0, 0.0], [1, 0, 0, 0], emb=[[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0, 0, 1]]),
        CareConfig(),
    )
    assert off.advantages[0, 4].item() == 0.0 and int(off.roles[0, 4]) == NONE
    torch.testing.assert_close(off.advantages[0, :4], plain.advantages[0])
    on = care_advantages(_rgr_group(), CareConfig(rgr=RGRConfig(enable=True)))
    assert on.advantages[0, 2].item() == 0.0 and int(on.roles[0, 4]) == ROLE["rgr_negative"]


def test_reflection_scale_only_scales_failed_repair() -> None:
    """s_refl = s/2 (default) vs s_refl = s: only the failed RGR row changes, by the factor 2."""
    half = care_advantages(_rgr_group(), CareConfig(s=0.5))
    full = care_advantages(_rgr_group(), CareConfig(s=0.5, s_refl=0.5))
    assert full.advantages[0, 4].item() == pytest.approx(2 * half.advantages[0, 4].item(), rel=1e-12)
    torch.testing.assert_close(full.advantages[0, :4], half.advantages[0, :4], rtol=0, atol=0)


def test_equalisation_off() -> None:
    """K' = 2 < K = 4: with equalisation A+ = 2, A- = -0.5; without it A+ = sqrt(2), A- = -0.5/sqrt(2)."""
    g = one_group([1.0, 1.0, 0.0, 0.0], think=[5, 9, 9, 9])
    on = care_advantages(g, CareConfig()).advantages[0].tolist()
    off = care_advantages(g, CareConfig(equalize=False)).advantages[0].tolist()
    assert on == pytest.approx([2.0, 0.0, -0.5, -0.5], rel=1e-5)
    assert off == pytest.approx([math.sqrt(2), 0.0, -0.5 / math.sqrt(2), -0.5 / math.sqrt(2)], rel=1e-5)


def test_positive_rule_reward_makes_formatted_wrong_answer_a_positive() -> None:
    """rows: 0 acc 1 r 1.0 (think 30); 1 acc 0 fmt 1 r 0.1 (think 5); 2, 3 r 0.
    accuracy rule: anchor 0, failures {1, 2, 3} (K' = 3).
    reward rule (r > 0): row 1 is positive and shortest -> anchor 1; failures {2, 3} (K' = 2), row 0 gets 0."""
    g = one_group([1.0, 0.1, 0.0, 0.0], [1, 0, 0, 0], think=[30, 5, 8, 8])
    acc_rule = care_advantages(g, CareConfig(positive_rule="accuracy"))
    rew_rule = care_advantages(g, CareConfig(positive_rule="reward"))
    names = {v: k for k, v in ROLE.items()}
    assert [names[int(r)] for r in acc_rule.roles[0]] == ["anchor", "negative", "negative", "negative"]
    assert [names[int(r)] for r in rew_rule.roles[0]] == ["none", "anchor", "negative", "negative"]
    # reward rule: S rewards (0.1, 0, 0): mu = 1/30, sigma = 0.1*sqrt(2)/3; raw+ = sqrt(2), raw- = -1/sqrt(2); eq = sqrt(2)
    assert rew_rule.advantages[0].tolist() == pytest.approx([0.0, 2.0, -0.5, -0.5], rel=1e-4)


def test_region_weights_off_broadcasts() -> None:
    """enable=False: every response token carries A; enable=True: the answer span carries A."""
    adv = torch.tensor([2.0, -1.0])
    mask = torch.ones(2, 6)
    think = torch.tensor([[0, 3], [0, 3]])
    answer = torch.tensor([[4, 6], [4, 6]])
    pos = torch.tensor([True, False])
    off = token_advantages(adv, mask, think, answer, pos, tau_pos=0.005, enable=False)
    assert off.tolist() == [[2.0] * 6, [-1.0] * 6]
    on = token_advantages(adv, mask, think, answer, pos, tau_pos=0.005, enable=True)
    # positive: weights (.005 x3, 0, 1, 1) sum 2.015; negative: (0 x4, 1, 1) sum 2
    w = 2.0 / 2.015
    assert on[0].tolist() == pytest.approx([0.005 * w] * 3 + [0.0, w, w], rel=1e-6)
    assert on[1].tolist() == pytest.approx([0, 0, 0, 0, -0.5, -0.5], rel=1e-6)
