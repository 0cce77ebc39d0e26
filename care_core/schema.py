"""Row contracts between stages (``docs/interfaces.md`` §1 and §2) as Arrow schemas, with validation.

Example rows: one Parquet file per split, one row per example, images inline.
Rollout rows: one Parquet file per round, one row per sampled response.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from care_core.errors import CareError, file_fault

ANSWER_TYPES = ("choice", "integer", "float", "expression", "text")

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

EXAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("data_source", pa.string()),
        ("images", pa.list_(IMAGE_TYPE)),
        ("problem", pa.string()),
        ("answer", pa.string()),
        ("answer_type", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("solution", pa.string()),
        ("meta", pa.string()),
    ]
)

ROLLOUT_SCHEMA = pa.schema(
    [
        ("group_id", pa.string()),
        ("sample_index", pa.int64()),
        ("source", pa.string()),
        ("replaces", pa.int64()),
        ("prompt_ids", pa.list_(pa.int64())),
        ("response_ids", pa.list_(pa.int64())),
        ("response_text", pa.string()),
        ("old_logprobs", pa.list_(pa.float32())),
        ("loss_mask", pa.list_(pa.int8())),
        ("think_span", pa.list_(pa.int64())),
        ("answer_span", pa.list_(pa.int64())),
        ("embedding", pa.list_(pa.float32())),
        ("reward", pa.float64()),
        ("accuracy", pa.float64()),
        ("format", pa.float64()),
        ("truncated", pa.bool_()),
    ]
)

ADVANTAGE_COLUMNS = pa.schema(
    [("advantage", pa.float64()), ("role", pa.string()), ("group_kind", pa.string())]
)

# ``role`` and ``group_kind`` values: care_core.algorithms.types.ROLE_NAMES / GROUP_KIND_NAMES (one place).


class SchemaError(CareError, ValueError):
    """A row or file that breaks a stage contract; the message names file, row and field."""

    default_hint = "fix or remove that row/file (at ingest, data.bad_rows=skip drops bad rows and lists them)"


def check_columns(table: pa.Table, schema: pa.Schema, where: str) -> None:
    """Raise ``SchemaError`` if ``table`` lacks a column of ``schema``."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; have {table.column_names}")


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Select and cast the contract's columns (in order); extra columns are kept after them."""
    check_columns(table, schema, where)
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"{where}: column {field.name!r} has type {column.type}, expected {field.type}: {exc}"
                ) from None
        columns.append(column)
    extra = [name for name in table.column_names if name not in schema.names]
    names = list(schema.names) + extra
    columns += [table.column(name) for name in extra]
    return pa.Table.from_arrays(columns, names=names)


def validate_example(row: dict[str, Any], where: str) -> None:
    """Check one example row's values (not just types); ``where`` names file and row."""
    for key in ("id", "data_source", "problem", "answer", "answer_type"):
        if not isinstance(row.get(key), str):
            raise SchemaError(f"{where}: field {key!r} must be a string, got {type(row.get(key)).__name__}")
    if not row["id"]:
        raise SchemaError(f"{where}: field 'id' is empty")
    if not row["answer"].strip():
        raise SchemaError(f"{where} (id={row['id']}): field 'answer' is empty")
    if row["answer_type"] not in ANSWER_TYPES:
        raise SchemaError(
            f"{where} (id={row['id']}): field 'answer_type'={row['answer_type']!r} not in {ANSWER_TYPES}"
        )
    if row["answer_type"] == "choice" and not row.get("choices"):
        raise SchemaError(f"{where} (id={row['id']}): field 'choices' is empty for a choice item")
    for index, image in enumerate(row.get("images") or []):
        if not image or not image.get("bytes"):
            raise SchemaError(f"{where} (id={row['id']}): field 'images[{index}].bytes' is empty")


def write_examples(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write example rows to Parquet under the contract schema; returns the row count."""
    rows = list(rows)
    table = pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return len(rows)


def read_parquet(path: str | Path) -> pa.Table:
    """``pq.read_table``; a missing, truncated or non-Parquet file is an error naming the file."""
    with file_fault(path, "cannot read Parquet"):
        return pq.read_table(path)


def read_examples(path: str | Path) -> pa.Table:
    table = read_parquet(path)
    return conform(table, EXAMPLE_SCHEMA, str(path))


def read_rollouts(path: str | Path) -> pa.Table:
    table = read_parquet(path)
    return conform(table, ROLLOUT_SCHEMA, str(path))


def write_rollouts(rows: Iterable[dict[str, Any]] | pa.Table, path: str | Path) -> int:
    """Write rollout rows (contract columns first; extra columns such as ``advantage`` kept)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    table = conform(table, ROLLOUT_SCHEMA, str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows
