"""bench/blind_ceiling.py: the best text-only rule, on hand-made tables with hand-computed values."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bc():
    spec = importlib.util.spec_from_file_location("blind_ceiling", REPO / "bench" / "blind_ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(problem, answer, family="count", answer_type="integer", choices=None):
    return {
        "problem": problem,
        "answer": answer,
        "answer_type": answer_type,
        "choices": choices or [],
        "data_source": "synthetic",
        "meta": json.dumps({"family": family}),
    }


TRAIN = [
    _row("<image>How many red shapes are there?", "2"),
    _row("How many  RED shapes are there?", "2"),  # same question once normalised
    _row("How many red shapes are there?", "3"),
    _row("How many blue shapes are there?", "1"),
    _row("How many blue shapes are there?", "4"),  # tie 1 vs 4: the first seen (1) wins
    _row("Which is taller?", "A", family="choice", answer_type="choice", choices=["A", "B"]),
    _row("Which is taller?", "A", family="choice", answer_type="choice", choices=["A", "B"]),
    _row("Which is wider?", "B", family="choice", answer_type="choice", choices=["A", "B"]),
]

TEST = [
    _row("How many red shapes are there?", "2"),  # rule says 2: right
    _row("How many red shapes are there?", "0"),  # rule says 2: wrong
    _row("How many blue shapes are there?", "1"),  # rule says 1 (tie -> first seen): right
    _row("How many green shapes are there?", "2"),  # unseen: count family majority is 2: right
    _row("Which is taller?", "B", family="choice", answer_type="choice", choices=["A", "B"]),  # A: wrong
    _row(
        "Which is heavier?", "A", family="choice", answer_type="choice", choices=["A", "B"]
    ),  # unseen: A: right
]


def test_rule_per_question_then_family_then_global():
    bc = _bc()
    predict = bc.blind_rule(TRAIN)
    assert [predict(r) for r in TEST] == ["2", "2", "1", "2", "A", "A"]
    unseen_family = _row("What colour?", "red", family="colour", answer_type="text")
    assert predict(unseen_family) == "2"  # global majority: "2" x2, "A" x2, tie -> first seen


def test_ceiling_is_hand_computed_accuracy():
    assert _bc().blind_ceiling(TRAIN, TEST) == pytest.approx(4 / 6)


def test_ceiling_reads_parquet_tables(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, rows in (("train", TRAIN), ("test", TEST)):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
    bc = _bc()
    assert bc.blind_ceiling(tmp_path / "train.parquet", tmp_path / "test.parquet") == pytest.approx(4 / 6)
    assert bc.main([str(tmp_path)]) == pytest.approx(4 / 6)
