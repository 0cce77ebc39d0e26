"""Hand-computed CARE advantages (docs/method.md §4-6); each test shows its arithmetic."""

from __future__ import annotations

import math

import pytest
import torch
from alg_helpers import one_group

from care_core.algorithms import ROLE, care_advantages, select_anchor
from care_core.config import CareConfig, RescueConfig

EPS = 1e-6


def roles_of(res) -> list[str]:
    names = {v: k for k, v in ROLE.items()}
    return [names[int(x)] for x in res.roles[0]]


@pytest.mark.parametrize("k_prime", [1, 2, 3, 4])
def test_binary_rewards_check_values(k_prime: int) -> None:
    """G = 8: (8 - K') positives, K' failures, K = 4, M = 6 -> subgroup = anchor + all K' failures.

    S rewards (1, 0 x K'): mu = 1/(K'+1), sigma = sqrt(K')/(K'+1), so
    raw+ = (K'/(K'+1)) / sigma = sqrt(K'), raw- = -(1/(K'+1)) / sigma = -1/sqrt(K').
    A+ = sqrt(K') * sqrt(K/K') = 2, A- = -s/sqrt(K') * sqrt(K/K') = -1/K' (s = 0.5, K = 4).
    """
    n_pos = 8 - k_prime
    reward = [1.0] * n_pos + [0.0] * k_prime
    think = [30, 20, 25, 40, 50, 60, 70, 80]  # positive with think 20 (column 1) is the anchor
    res = care_advantages(one_group(reward, think=think), CareConfig(K=4, M=6, s=0.5))
    adv = res.advantages[0]
    mu = 1 / (k_prime + 1)
    sigma = math.sqrt(k_prime) / (k_prime + 1)
    eq = math.sqrt(4 / k_prime)
    assert adv[1].item() == pytest.approx((1 - mu) / (sigma + EPS) * eq, rel=1e-12)
    assert adv[1].item() == pytest.approx(math.sqrt(k_prime) * eq, rel=1e-5)  # = 2
    assert adv[1].item() == pytest.approx(2.0, rel=1e-5)
    for j in range(n_pos, 8):
        assert adv[j].item() == pytest.approx(-0.5 * mu / (sigma + EPS) * eq, rel=1e-12)
        assert adv[j].item() == pytest.approx(-0.5 / math.sqrt(k_prime) * eq, rel=1e-5)  # = -1/K'
        assert adv[j].item() == pytest.approx(-1.0 / k_prime, rel=1e-5)
    others = [i for i in range(n_pos) if i != 1]
    assert all(adv[i].item() == 0.0 for i in others)  # correct non-anchor rollouts: A = 0
    assert roles_of(res) == ["none", "anchor"] + ["none"] * (n_pos - 2) + ["negative"] * k_prime
    assert int(res.stats["k_prime"][0]) == k_prime


def test_graded_reward_group_by_hand() -> None:
    """Rewards r = 0.9 acc + 0.1 format, K = 4, M = 6, s = 0.5.

    rows: 0 (acc 1, fmt 1, r 1.0, think 50)  1 (acc 1, fmt 0, r 0.9, think 30) <- anchor (shortest)
          2 (acc 0, fmt 1, r 0.1)  3 (acc 0, fmt 0, r 0.0)  4 (acc 0, fmt 1, r 0.1)
          5 (acc 1, fmt 1, r 1.0, think 40)
    Failures {2, 3, 4} -> K' = 3, S = {1, 2, 3, 4} with rewards (0.9, 0.1, 0.0, 0.1):
    mu = 1.1 / 4 = 0.275; deviations 0.625, -0.175, -0.275, -0.175;
    var = (0.390625 + 0.030625 + 0.075625 + 0.030625) / 4 = 0.5275 / 4 = 0.131875; sigma = 0.3631460
    raw: anchor 0.625 / 0.3631460 = 1.7210710; r=0.1: -0.175 / 0.3631460 = -0.4818999;
    r=0.0: -0.275 / 0.3631460 = -0.7572712
    sqrt(K/K') = sqrt(4/3) = 1.1547005
    A(1) = 1.7210710 * 1.1547005 = 1.9873216
    A(2) = A(4) = -0.5 * 0.4818999 * 1.1547005 = -0.2782250
    A(3) = -0.5 * 0.7572712 * 1.1547005 = -0.4372107
    (the eps = 1e-6 in sigma + eps moves these by < 1e-5.)
    A(0) = A(5) = 0 (correct, not the anchor).
    """
    reward = [1.0, 0.9, 0.1, 0.0, 0.1, 1.0]
    accuracy = [1, 1, 0, 0, 0, 1]
    think = [50, 30, 20, 10, 25, 40]  # failures' think lengths are irrelevant to the anchor
    res = care_advantages(one_group(reward, accuracy, think=think), CareConfig())
    expected = [0.0, 1.9873216, -0.2782250, -0.4372107, -0.2782250, 0.0]
    assert res.advantages[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert roles_of(res) == ["none", "anchor", "negative", "negative", "negative", "none"]


def test_anchor_tie_breaks() -> None:
    """Fewest think tokens, then fewest answer tokens, then lowest index; failures never anchor."""
    pos = torch.tensor([True, True, True, True, False])
    think = torch.tensor([12, 10, 10, 10, 1])
    answer = torch.tensor([1, 7, 4, 4, 1])
    assert select_anchor(pos, think, answer) == 2  # 10 think ties 1,2,3; 4 answer ties 2,3; lowest = 2
    assert select_anchor(pos, think, torch.tensor([1, 7, 5, 4, 1])) == 3
    assert select_anchor(pos, torch.tensor([9, 10, 10, 10, 1]), answer) == 0
    assert select_anchor(torch.zeros(5, dtype=torch.bool), think, answer) == -1
    # in the estimator: identical positives -> column 0 anchors, column 1 gets 0
    res = care_advantages(one_group([1.0, 1.0, 0.0], think=[10, 10, 10], answer=[3, 3, 3]), CareConfig())
    assert roles_of(res) == ["anchor", "none", "negative"]


def _rescue_group():
    """All-wrong group of 4 (K = 4 -> K' = min(4, 3) = 3); sum log-probs -5, -2, -3, -9 -> t = 1."""
    emb = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.8, 0.6], [0.0, 0.0, 1.0]]
    return one_group([0.0, 0.1, 0.0, 0.0], [0, 0, 0, 0], emb=emb, logprob=[-5.0, -2.0, -3.0, -9.0])


def test_rescue_normalized_equals_real_anchor_values() -> None:
    """normalize=True: pseudo-rewards (+0.1, -0.1/3 x 3) have mu = 0, sigma = 0.1/sqrt(3), so
    raw_t = sqrt(3), raw_j = -1/sqrt(3); with equalisation sqrt(4/3): A_t = 2, A_j = -0.5/sqrt(3)*sqrt(4/3) = -1/3.
    (delta cancels: exactly the binary real-anchor values.)"""
    res = care_advantages(_rescue_group(), CareConfig(rescue=RescueConfig(delta=0.1, normalize=True)))
    sigma = 0.1 / math.sqrt(3)
    eq = math.sqrt(4 / 3)
    expected = [-0.5 * (0.1 / 3) / (sigma + EPS) * eq, 0.1 / (sigma + EPS) * eq] + [
        -0.5 * (0.1 / 3) / (sigma + EPS) * eq
    ] * 2
    assert res.advantages[0].tolist() == pytest.approx(expected, rel=1e-10)
    assert res.advantages[0].tolist() == pytest.approx([-1 / 3, 2.0, -1 / 3, -1 / 3], rel=1e-4)
    assert roles_of(res) == ["pseudo_negative", "pseudo_anchor", "pseudo_negative", "pseudo_negative"]
    assert bool(res.stats["rescued"][0])
    # delta cancels: another delta gives the same advantages up to eps
    other = care_advantages(_rescue_group(), CareConfig(rescue=RescueConfig(delta=0.7))).advantages
    assert other[0].tolist() == pytest.approx(res.advantages[0].tolist(), rel=1e-4)


def test_rescue_unnormalized_uses_pseudo_rewards() -> None:
    """normalize=False: A = pseudo-reward: +delta on t, -delta/K' = -0.1/3 on each pseudo-negative."""
    res = care_advantages(_rescue_group(), CareConfig(rescue=RescueConfig(delta=0.1, normalize=False)))
    assert res.advantages[0].tolist() == pytest.approx([-0.1 / 3, 0.1, -0.1 / 3, -0.1 / 3], rel=1e-12)
    res2 = care_advantages(_rescue_group(), CareConfig(rescue=RescueConfig(delta=0.4, normalize=False)))
    assert res2.advantages[0].tolist() == pytest.approx([-0.4 / 3, 0.4, -0.4 / 3, -0.4 / 3], rel=1e-12)


def _seeding_group():
    """5 failures, t = argmax log-prob = 0 at e0; e4 = -e0 (distance 2 from t), e1 orthogonal to e0.
    Cosine distances to e4: d(e1) = 1, d(e2) = 1 + 0.9/|(0.9, 0.1, 0)| = 1.9939, d(e3) = 1 + 0.8/|(0.8, 0, 0.2)| = 1.9701;
    to t: d(e1) = 1, d(e2) = 0.0061, d(e3) = 0.0299."""
    emb = [[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0.8, 0, 0.2], [-1, 0, 0]]
    return one_group([0.0] * 5, [0] * 5, emb=emb, logprob=[-1.0, -4.0, -3.0, -2.0, -6.0])


def test_rescue_seeding_authors() -> None:
    """Default (the authors' code): K = 2, first pick = farthest from t = e4 (distance 2); the second
    maximises its distance to the picked {e4} only (t not counted): e2 (1.9939) beats e3 (1.9701), e1 (1)."""
    res = care_advantages(_seeding_group(), CareConfig(K=2, M=2))
    assert roles_of(res) == ["pseudo_anchor", "none", "pseudo_negative", "none", "pseudo_negative"]
    assert int(res.stats["k_prime"][0]) == 2  # equalisation factor sqrt(2/2) = 1
    # binary-equivalent values (delta cancels): A_t = sqrt(2), A_j = -0.5/sqrt(2)
    assert res.advantages[0].tolist() == pytest.approx(
        [math.sqrt(2), 0, -0.5 / math.sqrt(2), 0, -0.5 / math.sqrt(2)], rel=1e-4
    )


def test_rescue_seeding_pseudo_anchor() -> None:
    """``rescue.seeding=pseudo_anchor``: t stays in the picked set. First pick e4 again; the second
    maximises min(d(., t), d(., e4)): e1 min(1, 1) = 1 beats e2 min(0.0061, 1.99) and e3 min(0.0299, 1.97)."""
    res = care_advantages(
        _seeding_group(), CareConfig(K=2, M=2, rescue=RescueConfig(seeding="pseudo_anchor"))
    )
    assert roles_of(res) == ["pseudo_anchor", "pseudo_negative", "none", "none", "pseudo_negative"]
    assert res.advantages[0].tolist() == pytest.approx(
        [math.sqrt(2), -0.5 / math.sqrt(2), 0, 0, -0.5 / math.sqrt(2)], rel=1e-4
    )


def test_rescue_seeding_picks_with_k3() -> None:
    """K = 3 over {e1, e2, e3, e4}. authors: e4, then e2 (farthest from e4), then the candidate
    maximising min(d(., e4), d(., e2)): e1 min(1, 0.8896) vs e3 min(1.9701, 0.0357) -> e1.
    (d(e1, e2) = 1 - 0.1/0.9055 = 0.8896, d(e3, e2) = 1 - 0.72/(0.8246 * 0.9055) = 0.0357.)"""
    from care_core.algorithms import cosine_distances, select_pseudo_negatives

    g = _seeding_group()
    dist = cosine_distances(g.embeddings)
    fail = torch.ones(1, 5, dtype=torch.bool)
    t = torch.tensor([0])
    authors, kp = select_pseudo_negatives(dist, fail, t, 3, "authors")
    seeded, _ = select_pseudo_negatives(dist, fail, t, 3, "pseudo_anchor")
    assert authors.tolist() == [[4, 2, 1]] and int(kp[0]) == 3
    # seeded at t: e4, e1 (as above), then max of min(d(., t), d(., e4), d(., e1)): e3 0.0299 > e2 0.0061
    assert seeded.tolist() == [[4, 1, 3]]
    with pytest.raises(ValueError, match="seeding"):
        select_pseudo_negatives(dist, fail, t, 3, "nope")


def _rgr_group(rgr_reward: float, rgr_acc: float):
    """Rollouts 0 (r 1, anchor) and 1, 2, 3 (r 0); RGR row 4 repairs rollout 2 (the nearest failure)."""
    emb = [[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0, 0, 1], [0.2, 0.2, 0.2]]
    return one_group(
        [1.0, 0.0, 0.0, 0.0, rgr_reward], [1, 0, 0, 0, rgr_acc], emb=emb,
        is_rgr=[False, False, False, False, True], replaces=[-1, -1, -1, -1, 2],
    )  # fmt: skip


def test_rgr_success() -> None:
    """K' = 3, S = {0, 4 (for 2), 1, 3}, rewards (1, 1, 0, 0): mu = 0.5, sigma = 0.5, raw = +-1.
    sqrt(4/3) = 1.1547005: A(0) = A(4) = 1.1547005 (success: A = raw), A(1) = A(3) = -0.5 * 1.1547005,
    A(2) = 0 (replaced)."""
    res = care_advantages(_rgr_group(1.0, 1.0), CareConfig())
    e = 0.5 / (0.5 + EPS) * math.sqrt(4 / 3)
    assert res.advantages[0].tolist() == pytest.approx([e, -0.5 * e, 0.0, -0.5 * e, e], rel=1e-12)
    assert res.advantages[0].tolist() == pytest.approx(
        [1.1547005, -0.5773503, 0.0, -0.5773503, 1.1547005], abs=1e-5
    )
    assert roles_of(res) == ["anchor", "negative", "none", "negative", "rgr_positive"]


def test_rgr_failure() -> None:
    """RGR reward 0.1 (formatted but wrong). S rewards (1, 0.1, 0, 0): mu = 0.275,
    deviations 0.725, -0.175, -0.275, -0.275; var = (0.525625 + 0.030625 + 2 * 0.075625) / 4 = 0.176875,
    sigma = sqrt(0.176875) = 0.4205651. raw: 0.725 / 0.4205651 = 1.7238711, -0.175 / 0.4205651 = -0.4161068,
    -0.275 / 0.4205651 = -0.6538821. sqrt(4/3) = 1.1547005.
    A(0) = 1.7238711 * 1.1547005 = 1.9905548; A(4) = -s_refl * 0.4161068 * 1.1547005 = -0.25 * 0.4804787 = -0.1201197;
    A(1) = A(3) = -0.5 * 0.6538821 * 1.1547005 = -0.3775190; A(2) = 0. (eps = 1e-6 moves these by < 1e-5.)"""
    res = care_advantages(_rgr_group(0.1, 0.0), CareConfig(s=0.5, s_refl=None))
    assert res.advantages[0].tolist() == pytest.approx(
        [1.9905548, -0.3775190, 0.0, -0.3775190, -0.1201197], abs=1e-5
    )
    assert roles_of(res) == ["anchor", "negative", "none", "negative", "rgr_negative"]


def test_rgr_of_unchosen_negative_is_ignored() -> None:
    """K = 1 picks only the nearest failure (2); an RGR row repairing failure 3 is not in S: A = 0."""
    g = _rgr_group(1.0, 1.0)
    g.replaces[0, 4] = 3
    res = care_advantages(g, CareConfig(K=1, M=1))
    assert roles_of(res) == ["anchor", "none", "negative", "none", "none"]
    assert res.advantages[0, 4].item() == 0.0
