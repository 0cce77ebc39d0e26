"""Evaluation past bad benchmark rows (data.bad_rows=skip) and across scoring modes (issue 12 items 2, 5).

A bad row at load time (unknown answer type) or at prompt time (the batch's prompts cannot be
built) is skipped and counted in results.json, results.md and the metrics logged to a real MLflow
server; with data.bad_rows=error the first one stops the run naming file, row and field. Changing
eval.scoring re-scores stored predictions without decoding again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_evaluate import Recorder, gold_response  # same folder (pytest rootdir-less import)

from care_core.config import build_recipe
from care_core.schema import SchemaError
from care_core.stages.evaluate import run_evaluate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


@pytest.fixture(scope="module", autouse=True)
def source_fixtures() -> None:
    if not (FIXTURES / "bad_mathvista").is_dir():  # generated files (deterministic)
        subprocess.run([sys.executable, str(FIXTURES.parent / "make_source_fixtures.py")], check=True)


@pytest.fixture
def mixed_mathvista(tmp_path: Path) -> Path:
    """MathVista in the hub layout: the 5 good fixture rows plus a file holding one bad row."""
    root = tmp_path / "MathVista" / "data"
    root.mkdir(parents=True)
    shutil.copy(
        FIXTURES / "mathvista" / "data" / "testmini-00000-of-00001.parquet",
        root / "testmini-00000-of-00002.parquet",
    )
    shutil.copy(
        FIXTURES / "bad_mathvista" / "data" / "testmini-00000-of-00001.parquet",
        root / "testmini-00001-of-00002.parquet",
    )
    return root.parent


def _recipe(path: Path, bad_rows: str, scoring: str = "official", tracking: str | None = None) -> Any:
    data: dict[str, Any] = {
        "data": {"bad_rows": bad_rows},
        "eval": {
            "benchmarks": [{"name": "mathvista", "path": str(path), "split": "testmini"}],
            "batch_size": 2,
            "scoring": scoring,
        },
    }
    if tracking:
        data["tracking"] = {"uri": tracking, "experiment": "eval-skips"}
    return build_recipe(data)


def test_bad_rows_error_names_file_row_and_field(mixed_mathvista: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        run_evaluate(
            _recipe(mixed_mathvista, "error"),
            "injected",
            tmp_path / "out",
            generate_fn=Recorder(gold_response),
        )
    message = str(info.value)
    assert "testmini-00001-of-00002.parquet: row 0" in message and "'answer_type'" in message


def test_bad_rows_skip_keeps_going_and_counts_them(mixed_mathvista: Path, tmp_path: Path) -> None:
    result = run_evaluate(
        _recipe(mixed_mathvista, "skip"), "injected", tmp_path / "out", generate_fn=Recorder(gold_response)
    )
    bench = result["benchmarks"]["mathvista"]
    assert (bench["n"], bench["accuracy"], bench["skipped"]) == (5, 1.0, 1)
    assert "row 0" in bench["skipped_rows"][0] and "answer_type" in bench["skipped_rows"][0]
    assert result["metrics"]["eval/mathvista/skipped_rows"] == 1.0 and result["skipped_rows"] == 1
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["benchmarks"]["mathvista"]["skipped"] == 1
    assert (
        "Bad rows skipped (data.bad_rows=skip; not in n): MathVista: 1"
        in (tmp_path / "out" / "results.md").read_text()
    )


class PromptFailure(Recorder):
    """Raises SchemaError, as encode_prompts does for an undecodable image, for batches holding ``bad``."""

    def __init__(self, bad: str) -> None:
        super().__init__(gold_response)
        self.bad = bad

    def __call__(self, rows: list[dict[str, Any]]) -> list[str]:
        if any(r["id"] == self.bad for r in rows):
            raise SchemaError(f"row id={self.bad}: field 'images[0].bytes' is not a decodable image")
        return super().__call__(rows)


def test_prompt_time_bad_row_is_skipped_and_the_batch_kept(tmp_path: Path) -> None:
    path = FIXTURES / "mathvista"
    with pytest.raises(SchemaError):
        run_evaluate(
            _recipe(path, "error"), "injected", tmp_path / "a", generate_fn=PromptFailure("mathvista/2")
        )
    generate = PromptFailure("mathvista/2")
    result = run_evaluate(_recipe(path, "skip"), "injected", tmp_path / "b", generate_fn=generate)
    bench = result["benchmarks"]["mathvista"]
    assert (bench["n"], bench["accuracy"], bench["skipped"]) == (4, 1.0, 1)
    assert "mathvista/2" in bench["skipped_rows"][0]
    assert ["mathvista/1"] in generate.calls  # its batch-mate was decoded on its own


def test_skipped_rows_reach_mlflow(mixed_mathvista: Path, tmp_path: Path, mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient

    from care_core.tracking.stage_log import record_stage

    recipe = _recipe(mixed_mathvista, "skip", tracking=mlflow_server)
    result = run_evaluate(recipe, "injected", tmp_path / "out", generate_fn=Recorder(gold_response))
    run_id = record_stage(recipe, "evaluate", result, {"eval": tmp_path / "out"}, kfp_run_id="eval-skips-1")
    metrics = MlflowClient(tracking_uri=mlflow_server).get_run(run_id).data.metrics
    assert metrics["eval/mathvista/skipped_rows"] == 1.0 and metrics["eval/mathvista/n"] == 5.0


def test_changing_the_scoring_mode_rescores_without_decoding(tmp_path: Path) -> None:
    """mathvista/2 is an integer item (gold 7): 7.4 counts officially (MathVista truncates), not strictly."""

    def rule(row: dict[str, Any]) -> str:
        return "<think>r</think><answer>7.4</answer>" if row["id"] == "mathvista/2" else gold_response(row)

    path = FIXTURES / "mathvista"
    first = Recorder(rule)
    official = run_evaluate(_recipe(path, "error", "official"), "injected", tmp_path, generate_fn=first)
    again = Recorder(rule)
    strict = run_evaluate(_recipe(path, "error", "strict"), "injected", tmp_path, generate_fn=again)
    assert official["benchmarks"]["mathvista"]["accuracy"] == 1.0 and official["scoring"] == "official"
    assert (
        strict["benchmarks"]["mathvista"]["accuracy"] == pytest.approx(4 / 5)
        and strict["scoring"] == "strict"
    )
    assert first.calls and again.calls == []  # no decoding the second time
    records = [
        json.loads(line) for line in (tmp_path / "mathvista" / "predictions.jsonl").read_text().splitlines()
    ]
    assert {r["scoring"] for r in records} == {"strict"} and len(records) == 5
