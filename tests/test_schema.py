"""Row contracts (docs/interfaces.md §1-2): round trips, casting and errors that name file/row/field."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from care_core.schema import (
    EXAMPLE_SCHEMA,
    ROLLOUT_SCHEMA,
    SchemaError,
    read_examples,
    read_rollouts,
    validate_example,
    write_examples,
    write_rollouts,
)


def example(**overrides: object) -> dict:
    row = {
        "id": "ex-1",
        "data_source": "synthetic/count",
        "images": [{"bytes": b"\x89PNG..", "path": "a.png"}],
        "problem": "<image>How many red squares?",
        "answer": "3",
        "answer_type": "integer",
        "choices": [],
        "solution": "<think>1, 2, 3</think><answer>3</answer>",
        "meta": "{}",
    }
    row.update(overrides)
    return row


def rollout(index: int) -> dict:
    return {
        "group_id": "ex-1/r0",
        "sample_index": index,
        "source": "rollout",
        "replaces": -1,
        "prompt_ids": [1, 2],
        "response_ids": [5, 6, 7],
        "response_text": "abc",
        "old_logprobs": [-0.5, -0.25, -1.0],
        "loss_mask": [1, 1, 1],
        "think_span": [0, 1],
        "answer_span": [1, 3],
        "embedding": [0.6, 0.8],
        "reward": 1.0,
        "accuracy": 1.0,
        "format": 1.0,
        "truncated": False,
    }


def test_examples_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    assert write_examples([example(), example(id="ex-2", images=[])], path) == 2
    table = read_examples(path)
    assert table.schema.equals(EXAMPLE_SCHEMA)
    rows = table.to_pylist()
    assert rows[0]["images"][0]["bytes"] == b"\x89PNG.."
    assert rows[1]["images"] == []


def test_rollouts_round_trip_keeps_extra_columns_and_casts(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    rows = [dict(rollout(i), advantage=0.5 * i) for i in range(3)]
    write_rollouts(rows, path)
    table = read_rollouts(path)
    assert table.schema.names[: len(ROLLOUT_SCHEMA)] == ROLLOUT_SCHEMA.names
    assert table.column("advantage").to_pylist() == [0.0, 0.5, 1.0]
    assert table.schema.field("old_logprobs").type == pa.list_(pa.float32())


def test_missing_column_names_the_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    rows = [rollout(0)]
    del rows[0]["embedding"]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(SchemaError, match=r"broken\.parquet.*embedding"):
        read_rollouts(path)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"answer": "  "}, "answer"),
        ({"answer_type": "date"}, "answer_type"),
        ({"id": ""}, "id"),
        ({"answer_type": "choice", "choices": []}, "choices"),
        ({"images": [{"bytes": b"", "path": "x"}]}, "images[0].bytes"),
        ({"problem": None}, "problem"),
    ],
)
def test_validate_example_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate_example(example(**overrides), "data.parquet row 7")
    assert "data.parquet row 7" in str(info.value)
    assert field in str(info.value)


def test_valid_example_passes() -> None:
    validate_example(example(), "row 0")
    validate_example(example(answer_type="choice", choices=["1", "2"], answer="A"), "row 1")
