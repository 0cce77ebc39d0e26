"""Property tests: the vectorised CARE estimator against a plain-Python re-implementation.

The reference below follows docs/method.md §2-6 literally, one group at a time, with Python lists
and explicit loops (brute-force nearest pool and farthest-first). It shares only the pairwise
distance matrix with the code under test (``cosine_distances``, itself checked against numpy).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from care_core.algorithms import (
    ROLE,
    GroupBatch,
    care_advantages,
    cosine_distances,
    hard_negatives_from_distances,
    select_hard_negatives,
)
from care_core.config import CareConfig, RescueConfig, RGRConfig

SETTINGS = settings(max_examples=60, deadline=None)


def brute_farthest_first(dist, pool: list[int], k: int, first: int | None, seed: int | None) -> list[int]:
    picked: list[int] = []
    ref = [] if seed is None else [seed]
    if first is not None:
        picked.append(first)
    while len(picked) < min(k, len(pool)):
        cands = [j for j in pool if j not in picked]
        # max of min distance to the set; ties -> lowest index
        best = max(cands, key=lambda j: (min(dist[j][p] for p in picked + ref), -j))
        picked.append(best)
    return picked


def brute_hard_negatives(d_anchor: list[float], dist, failures: list[int], K: int, M: int) -> list[int]:
    pool = sorted(failures, key=lambda j: (d_anchor[j], j))[:M]
    if not pool:
        return []
    return brute_farthest_first(dist, pool, min(K, len(pool)), first=pool[0], seed=None)


def reference_group(g: dict, p: CareConfig, dist) -> tuple[list[float], list[str]]:
    """docs/method.md §2-6 for one group, literally."""
    n = len(g["reward"])
    rule_pos = (
        (lambda i: g["accuracy"][i] >= 1) if p.positive_rule == "accuracy" else (lambda i: g["reward"][i] > 0)
    )
    rule_fail = (
        (lambda i: g["accuracy"][i] <= 0)
        if p.positive_rule == "accuracy"
        else (lambda i: g["reward"][i] <= 0)
    )
    rollouts = [i for i in range(n) if not g["is_rgr"][i]]
    pos = [i for i in rollouts if rule_pos(i)]
    fail = [i for i in rollouts if rule_fail(i)]
    adv, roles = [0.0] * n, ["none"] * n
    if pos and fail:
        anchor = min(pos, key=lambda i: (g["think"][i], g["answer"][i], i))
        negs = brute_hard_negatives([dist[anchor][j] for j in range(n)], dist, fail, p.K, p.M)
        members = {anchor: ("anchor", g["reward"][anchor])}
        for j in negs:
            members[j] = ("negative", g["reward"][j])
        if p.rgr.enable:
            for r in range(n):
                if g["is_rgr"][r] and g["replaces"][r] in negs:
                    del members[g["replaces"][r]]
                    members[r] = ("rgr_positive" if rule_pos(r) else "rgr_negative", g["reward"][r])
        k_prime = len(negs)
        rescued = False
    elif not pos and len(fail) >= 2 and p.rescue.enable:
        t = max(fail, key=lambda i: (g["logprob"][i], -i))
        others = [j for j in fail if j != t]
        if p.rescue.seeding == "authors":  # farthest from t first, then distances to the picks only
            first = max(others, key=lambda j: (dist[t][j], -j))
            negs = brute_farthest_first(dist, others, min(p.K, len(others)), first=first, seed=None)
        else:
            negs = brute_farthest_first(dist, others, min(p.K, len(others)), first=None, seed=t)
        k_prime = len(negs)
        members = {t: ("pseudo_anchor", p.rescue.delta)}
        for j in negs:
            members[j] = ("pseudo_negative", -p.rescue.delta / k_prime)
        rescued = True
    else:
        return adv, roles
    vals = [v for _, v in members.values()]
    mu = sum(vals) / len(vals)
    sigma = math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals))
    eq = math.sqrt(p.K / k_prime) if (p.equalize and k_prime < p.K) else 1.0
    for i, (role, v) in members.items():
        roles[i] = role
        raw = (v - mu) / (sigma + p.eps)
        if rescued and not p.rescue.normalize:
            adv[i] = v
            continue
        if role in ("anchor", "pseudo_anchor", "rgr_positive"):
            a = raw
        elif role == "rgr_negative":
            a = -p.reflection_scale * abs(raw)
        else:
            a = -p.s * abs(raw)
        adv[i] = a * eq
    return adv, roles


@st.composite
def groups(draw, max_groups: int = 3):
    """A padded batch of random groups (binary or partial accuracy, graded reward, optional RGR row)."""
    b = draw(st.integers(1, max_groups))
    n_roll = draw(st.integers(2, 8))
    dim = draw(st.integers(2, 5))
    tie_prone = draw(st.booleans())  # small integer embeddings -> many exact distance ties
    gs = []
    for _ in range(b):
        acc = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, 1.0, 0.5]), min_size=n_roll, max_size=n_roll))
        fmt = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n_roll, max_size=n_roll))
        reward = [0.9 * a + 0.1 * f for a, f in zip(acc, fmt, strict=True)]
        if tie_prone:
            emb = draw(
                st.lists(
                    st.lists(st.integers(-2, 2), min_size=dim, max_size=dim), min_size=n_roll, max_size=n_roll
                )
            )
            emb = [[float(x) for x in e] if any(e) else [1.0] + [0.0] * (dim - 1) for e in emb]
        else:
            emb = draw(
                st.lists(
                    st.lists(st.floats(-1, 1), min_size=dim, max_size=dim), min_size=n_roll, max_size=n_roll
                )
            )
            emb = [e if math.hypot(*e) > 1e-3 else [1.0] + [0.0] * (dim - 1) for e in emb]
        g = {
            "reward": reward, "accuracy": acc, "emb": emb,
            "think": draw(st.lists(st.integers(0, 4), min_size=n_roll, max_size=n_roll)),
            "answer": draw(st.lists(st.integers(0, 2), min_size=n_roll, max_size=n_roll)),
            "logprob": draw(st.lists(st.sampled_from([-3.0, -2.0, -1.0, -0.5]), min_size=n_roll, max_size=n_roll)),
            "is_rgr": [False] * n_roll, "replaces": [-1] * n_roll,
        }  # fmt: skip
        fails = [i for i in range(n_roll) if acc[i] == 0]
        if fails and draw(st.booleans()):
            g["is_rgr"].append(True)
            g["replaces"].append(draw(st.sampled_from(fails)))
            ra = draw(st.sampled_from([0.0, 1.0]))
            g["accuracy"].append(ra)
            g["reward"].append(0.9 * ra + 0.1 * draw(st.sampled_from([0.0, 1.0])))
            for key, value in (("emb", [1.0] * dim), ("think", 3), ("answer", 1), ("logprob", 0.0)):
                g[key].append(value)
        gs.append(g)
    return gs


def to_batch(gs: list[dict]) -> GroupBatch:
    n = max(len(g["reward"]) for g in gs)
    dim = len(gs[0]["emb"][0])

    def pad(key, fill, dtype):
        return torch.tensor([g[key] + [fill] * (n - len(g[key])) for g in gs], dtype=dtype)

    emb = torch.tensor(
        [g["emb"] + [[1.0] + [0.0] * (dim - 1)] * (n - len(g["emb"])) for g in gs], dtype=torch.float64
    )
    return GroupBatch(
        reward=pad("reward", 0.0, torch.float64), accuracy=pad("accuracy", 0.0, torch.float64),
        valid=torch.tensor([[True] * len(g["reward"]) + [False] * (n - len(g["reward"])) for g in gs]),
        is_rgr=pad("is_rgr", False, torch.bool), replaces=pad("replaces", -1, torch.long),
        think_len=pad("think", 0, torch.long), answer_len=pad("answer", 0, torch.long),
        seq_logprob=pad("logprob", 0.0, torch.float64), embeddings=emb,
    )  # fmt: skip


care_params = st.builds(
    lambda K, extra, s, rule, rescue, normalize, seeding, rgr: CareConfig(
        K=K, M=K + extra, s=s, positive_rule=rule,
        rescue=RescueConfig(enable=rescue, normalize=normalize, seeding=seeding), rgr=RGRConfig(enable=rgr),
    ),
    st.integers(1, 4), st.integers(0, 3), st.sampled_from([0.25, 0.5, 1.0]),
    st.sampled_from(["accuracy", "reward"]), st.booleans(), st.booleans(),
    st.sampled_from(["authors", "pseudo_anchor"]), st.booleans(),
)  # fmt: skip

ROLE_NAME = {v: k for k, v in ROLE.items()}


@SETTINGS
@given(gs=groups(), p=care_params)
def test_matches_reference_and_invariants(gs: list[dict], p: CareConfig) -> None:
    batch = to_batch(gs)
    res = care_advantages(batch, p)
    dist = cosine_distances(batch.embeddings).tolist()
    for b, g in enumerate(gs):
        n = len(g["reward"])
        exp_adv, exp_roles = reference_group(g, p, dist[b])
        roles = [ROLE_NAME[int(x)] for x in res.roles[b, :n]]
        assert roles == exp_roles
        np.testing.assert_allclose(res.advantages[b, :n].numpy(), exp_adv, rtol=1e-9, atol=1e-12)
        # exactly zero outside the subgroup (and on padding)
        outside = [i for i in range(n) if exp_roles[i] == "none"]
        assert all(res.advantages[b, i].item() == 0.0 for i in outside)
        assert (res.advantages[b, n:] == 0).all()
        # anchor >= 0 >= negatives (no RGR row in the subgroup: an RGR success can out-score the anchor)
        if "rgr_positive" not in roles and "rgr_negative" not in roles:
            for i, role in enumerate(roles):
                if role in ("anchor", "pseudo_anchor"):
                    assert res.advantages[b, i] >= 0
                if role in ("negative", "pseudo_negative", "rgr_negative"):
                    assert res.advantages[b, i] <= 0


@SETTINGS
@given(gs=groups(), p=care_params)
def test_equalisation_only_scales(gs: list[dict], p: CareConfig) -> None:
    batch = to_batch(gs)
    on = care_advantages(batch, p)
    p.equalize = False
    off = care_advantages(batch, p)
    assert torch.equal(on.roles, off.roles)
    kp = on.stats["k_prime"].double()
    factor = torch.where((kp > 0) & (kp < p.K), torch.sqrt(p.K / kp.clamp(min=1)), torch.ones_like(kp))
    if p.rescue.normalize:
        torch.testing.assert_close(on.advantages, off.advantages * factor[:, None], rtol=1e-12, atol=0)
    else:  # pseudo-rewards are used directly in rescued groups: no equalisation there
        keep = on.stats["rescued"][:, None]
        torch.testing.assert_close(
            on.advantages, torch.where(keep, off.advantages, off.advantages * factor[:, None])
        )


@SETTINGS
@given(
    emb=st.lists(st.lists(st.integers(-2, 2), min_size=3, max_size=3), min_size=2, max_size=10),
    fail_bits=st.lists(st.booleans(), min_size=10, max_size=10),
    K=st.integers(1, 5),
    extra=st.integers(0, 4),
    anchor_row=st.lists(st.integers(-2, 2), min_size=3, max_size=3),
)
def test_hard_negatives_are_farthest_first_of_nearest_pool(emb, fail_bits, K, extra, anchor_row) -> None:
    """Single-group primitive vs brute force (distances from numpy, same tie rule: lowest index)."""
    e = np.array([r if any(r) else [1, 0, 0] for r in emb], dtype=np.float64)
    a = np.array(anchor_row if any(anchor_row) else [0, 1, 0], dtype=np.float64)
    fail = np.array(fail_bits[: len(e)])
    picks = select_hard_negatives(torch.tensor(e), torch.tensor(a), torch.tensor(fail), K, K + extra).tolist()
    en = e / np.linalg.norm(e, axis=1, keepdims=True)
    an = a / np.linalg.norm(a)
    dist = (1 - en @ en.T).tolist()
    d_anchor = (1 - en @ an).tolist()
    expected = brute_hard_negatives(d_anchor, dist, [i for i in range(len(e)) if fail[i]], K, K + extra)
    # integer embeddings give exact ties, and numpy and torch round the same distance differently,
    # so an exact tie in either the anchor distances or the farthest-first maximin values can split
    # two ways. Those ties have measure zero: compare picks exactly only when no two candidate values
    # lie within 1e-9 of each other; otherwise check only the count and that every pick is a failure.
    fails = [i for i in range(len(e)) if fail[i]]
    values = sorted([d_anchor[i] for i in fails] + [dist[i][j] for i in fails for j in fails if i < j])
    near_tie = any(abs(x - y) < 1e-9 for x, y in zip(values, values[1:], strict=False))
    assert len(picks) == len(expected) == min(K, K + extra, len(fails))
    assert set(picks) <= set(fails)
    if not near_tie:
        assert picks == expected
    # batched primitive on the identical distances must agree exactly with the brute force
    d_t = torch.tensor(dist)[None]
    bp, kp = hard_negatives_from_distances(
        torch.tensor(d_anchor)[None], d_t, torch.tensor(fail)[None], K, K + extra
    )
    assert bp[0, : int(kp[0])].tolist() == brute_hard_negatives(
        d_anchor, dist, [i for i in range(len(e)) if fail[i]], K, K + extra
    )
    assert (bp[0, int(kp[0]) :] == -1).all()


def test_cosine_distances_match_numpy() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(size=(3, 6, 7))
    en = e / np.linalg.norm(e, axis=-1, keepdims=True)
    np.testing.assert_allclose(
        cosine_distances(torch.tensor(e)).numpy(), 1 - en @ en.transpose(0, 2, 1), atol=1e-12
    )
