"""The advantage stage on real Parquet files: values, contract columns, diagnostics, input errors."""

from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from care_core.config import build_recipe
from care_core.schema import ROLLOUT_SCHEMA, SchemaError, write_rollouts
from care_core.stages.advantage import run_advantage

DIM = 6


def row(
    gid: str,
    idx: int,
    acc: float,
    fmt: float = 1.0,
    *,
    emb: list[float] | None = None,
    think: int = 10,
    answer: int = 3,
    lp: float = -1.0,
    source: str = "rollout",
    replaces: int = -1,
) -> dict:
    """One rollout row: response = think tokens + 2 tag tokens + answer tokens."""
    n = think + 2 + answer
    e = emb if emb is not None else [float((idx * 7 + k * 3) % 5) - 2.0 for k in range(DIM)]
    norm = math.sqrt(sum(x * x for x in e)) or 1.0
    return {
        "group_id": gid, "sample_index": idx, "source": source, "replaces": replaces,
        "prompt_ids": [1, 2, 3], "response_ids": list(range(n)), "response_text": f"r{idx}",
        "old_logprobs": [lp / n] * n, "loss_mask": [1] * n,
        "think_span": [0, think], "answer_span": [think + 2, n],
        "embedding": [x / norm for x in e], "reward": 0.9 * acc + 0.1 * fmt, "accuracy": acc, "format": fmt,
        "truncated": False,
    }  # fmt: skip


def basis(i: int) -> list[float]:
    return [1.0 if k == i else 0.0 for k in range(DIM)]


def make_rows() -> list[dict]:
    rows = []
    # g-mixed: anchor 1 (think 5), failures 2, 3 (K' = 2 < K = 4), correct 0 -> binary check values 2, -0.5
    rows += [
        row("g-mixed", 0, 1, think=20),
        row("g-mixed", 1, 1, think=5),
        row("g-mixed", 2, 0),
        row("g-mixed", 3, 0),
    ]
    # g-correct: all correct -> 0
    rows += [row("g-correct", i, 1) for i in range(4)]
    # g-wrong: all wrong -> rescue, t = highest sequence log-prob (-0.5 at 2)
    rows += [row("g-wrong", i, 0, lp=lp) for i, lp in enumerate([-3.0, -2.0, -0.5, -4.0])]
    # g-rgr: anchor 0; failures 1 (near the anchor), 2, 3; RGR row 4 repairs 1 and succeeds
    rows += [
        row("g-rgr", 0, 1, emb=basis(0)), row("g-rgr", 1, 0, emb=[0.9, 0.1, 0, 0, 0, 0]),
        row("g-rgr", 2, 0, emb=basis(2)), row("g-rgr", 3, 0, emb=basis(3)),
        row("g-rgr", 4, 1, source="rgr", replaces=1, emb=[]),
    ]  # fmt: skip
    return rows


@pytest.fixture
def rollouts(tmp_path: Path) -> Path:
    rows = make_rows()
    random.Random(0).shuffle(rows)  # the stage must not rely on input order
    path = tmp_path / "rollouts.parquet"
    write_rollouts(rows, path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_care_stage_values_columns_and_diagnostics(rollouts: Path, tmp_path: Path) -> None:
    before = _digest(rollouts)
    out = tmp_path / "out" / "adv.parquet"
    diag = run_advantage(build_recipe({}), rollouts, out)
    assert _digest(rollouts) == before  # input untouched
    src, got = pq.read_table(rollouts), pq.read_table(out)
    assert got.column_names == src.column_names + ["advantage", "role", "group_kind"]
    assert got.select(src.column_names).equals(src)  # all input columns, same row order
    by = {(r["group_id"], r["sample_index"]): r for r in got.to_pylist()}

    def adv(g: str, i: int) -> float:
        return by[(g, i)]["advantage"]

    # g-mixed: K' = 2 -> A+ = sqrt(2) * sqrt(4/2) = 2, A- = -0.5/sqrt(2) * sqrt(2) = -0.5
    assert [adv("g-mixed", i) for i in range(4)] == pytest.approx([0.0, 2.0, -0.5, -0.5], rel=1e-5)
    assert [by[("g-mixed", i)]["role"] for i in range(4)] == ["none", "anchor", "negative", "negative"]
    assert {by[("g-correct", i)]["group_kind"] for i in range(4)} == {"all_correct"}
    assert all(adv("g-correct", i) == 0.0 for i in range(4))
    # g-wrong: rescue with K' = 3: A_t = 2, A_j = -1/3
    assert [adv("g-wrong", i) for i in range(4)] == pytest.approx([-1 / 3, -1 / 3, 2.0, -1 / 3], rel=1e-4)
    assert by[("g-wrong", 2)]["role"] == "pseudo_anchor"
    # g-rgr: S = {0, 4 (for 1), 2, 3} rewards (1, 1, 0, 0): raw +-1, eq sqrt(4/3)
    e = math.sqrt(4 / 3)
    assert [adv("g-rgr", i) for i in range(5)] == pytest.approx([e, 0.0, -0.5 * e, -0.5 * e, e], rel=1e-5)
    assert [by[("g-rgr", i)]["role"] for i in range(5)] == [
        "anchor",
        "none",
        "negative",
        "negative",
        "rgr_positive",
    ]

    json.dumps(diag)  # JSON-serialisable
    assert diag["groups"] == 4 and diag["rows"] == 17 and diag["rgr_rows"] == 1
    assert diag["group_kinds"] == {"mixed": 2, "all_correct": 1, "all_wrong": 1}
    m = diag["metrics"]  # the metric vocabulary (docs/interfaces.md §5)
    assert m["care/rescue_rate"] == 1.0 and m["care/rescued_groups"] == 1
    assert m["care/rgr_attempts"] == 1 and m["care/rgr_success_rate"] == 1.0 and m["care/rgr_used"] == 1
    assert m["care/k_prime_mean"] == pytest.approx((2 + 3 + 3) / 3)
    assert m["care/anchor_think_len_mean"] == pytest.approx(7.5)  # anchors: think 5 (g-mixed), 10 (g-rgr)
    assert m["care/mixed_think_len_mean"] == pytest.approx((20 + 5 + 10 + 10 + 4 * 10) / 8)
    assert m["roles/anchor"] == 2 and m["roles/pseudo_negative"] == 3
    assert 0 < m["care/neg_cos_distance_mean"] <= 2
    assert m["advantages/neg_pos_var_ratio"] is not None
    assert all("/" in key for key in m)
    assert diag["dynamic_sampling"] == {"kept": 2, "dropped_all_correct": 1, "dropped_all_wrong": 1}


def test_grpo_stage_and_rerun_replaces_columns(rollouts: Path, tmp_path: Path) -> None:
    """GRPO (unbiased std) on g-mixed: rewards (1, 1, 0.1, 0.1), mean 0.55, deviations +-0.45,
    unbiased std = sqrt(4 * 0.2025 / 3) = 0.5196152 -> A = +-0.8660254. RGR rows get 0."""
    first = tmp_path / "first.parquet"
    run_advantage(build_recipe({}), rollouts, first)
    out = tmp_path / "grpo.parquet"
    diag = run_advantage(build_recipe({}, ["algorithm.name=grpo"]), first, out)  # input already has advantage
    got = pq.read_table(out)
    assert got.column_names.count("advantage") == 1
    by = {(r["group_id"], r["sample_index"]): r for r in got.to_pylist()}
    assert [by[("g-mixed", i)]["advantage"] for i in range(4)] == pytest.approx(
        [0.8660254, 0.8660254, -0.8660254, -0.8660254], abs=1e-5
    )
    assert by[("g-rgr", 4)]["advantage"] == 0.0
    assert {r["role"] for r in by.values()} == {"none"}
    assert diag["algorithm"] == "grpo"


def _write(tmp_path: Path, rows: list[dict], table_edit=None) -> Path:
    path = tmp_path / "bad.parquet"
    table = pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA)
    if table_edit:
        table = table_edit(table)
    pq.write_table(table, path)
    return path


def _edit_row(group: str, index: int, **changes):
    def edit(rows: list[dict]) -> list[dict]:
        for r in rows:
            if r["group_id"] == group and r["sample_index"] == index:
                r.update(changes)
        return rows

    return edit


BAD_INPUTS = {
    "ragged span": (_edit_row("g-mixed", 2, think_span=[0, 4, 5]), r"group_id='g-mixed'.*'think_span'"),
    "span past end": (_edit_row("g-wrong", 1, answer_span=[3, 99]), r"group_id='g-wrong'.*'answer_span'"),
    "nan reward": (_edit_row("g-rgr", 3, reward=float("nan")), r"group_id='g-rgr', sample_index=3.*'reward'"),
    "embedding size": (
        _edit_row("g-correct", 1, embedding=[1.0, 0.0]),
        r"group_id='g-correct'.*'embedding'.*size",
    ),
    "zero embedding": (
        _edit_row("g-mixed", 3, embedding=[0.0] * DIM),
        r"group_id='g-mixed'.*'embedding'.*zero norm",
    ),
    "duplicate index": (
        _edit_row("g-mixed", 3, sample_index=2),
        r"group_id='g-mixed'.*'sample_index'.*duplicated",
    ),
    "rgr target": (_edit_row("g-rgr", 4, replaces=9), r"group_id='g-rgr'.*'replaces'"),
    "logprob length": (_edit_row("g-mixed", 0, old_logprobs=[-1.0]), r"group_id='g-mixed'.*'old_logprobs'"),
    "bad source": (_edit_row("g-mixed", 0, source="resample"), r"group_id='g-mixed'.*'source'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_group_and_column(case: str, tmp_path: Path) -> None:
    edit, pattern = BAD_INPUTS[case]
    path = _write(tmp_path, edit(make_rows()))
    before = _digest(path)
    with pytest.raises(SchemaError, match=pattern):
        run_advantage(build_recipe({}), path, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    assert _digest(path) == before


def test_missing_column_and_same_output_path(tmp_path: Path) -> None:
    path = _write(tmp_path, make_rows(), lambda t: t.drop_columns(["reward"]))
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['reward'\]"):
        run_advantage(build_recipe({}), path, tmp_path / "out.parquet")
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=ROLLOUT_SCHEMA), empty)
    with pytest.raises(SchemaError, match="no rollout rows"):
        run_advantage(build_recipe({}), empty, tmp_path / "out.parquet")
    good = _write(tmp_path, make_rows())
    with pytest.raises(ValueError, match="never modifies its input"):
        run_advantage(build_recipe({}), good, good)


def test_cli_prints_diagnostics(rollouts: Path, tmp_path: Path) -> None:
    """`care advantage` (the lead's CLI) calls run_advantage and prints its dict as JSON."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("algorithm:\n  name: care\n")
    out = tmp_path / "cli.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "care_core.cli", "advantage", "--rollouts", str(rollouts), "--out", str(out),
         "-c", str(recipe), "--set", "algorithm.care.equalize=false"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0 and "No module named care_core.cli.__main__" in proc.stderr:
        pytest.skip("care_core.cli has no __main__ entry")
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.index("{")
    diag = json.loads(proc.stdout[start:])
    assert diag["groups"] == 4
    by = {(r["group_id"], r["sample_index"]): r["advantage"] for r in pq.read_table(out).to_pylist()}
    # equalize off: g-mixed K' = 2 -> A+ = sqrt(2), A- = -0.5/sqrt(2)
    assert by[("g-mixed", 1)] == pytest.approx(math.sqrt(2), rel=1e-5)
    assert by[("g-mixed", 2)] == pytest.approx(-0.5 / math.sqrt(2), rel=1e-5)
