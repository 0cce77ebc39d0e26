"""Issue 17 item 7: every known fault reaches the user as ``error: <what> (<where>)`` plus a hint, non-zero
exit, no traceback (``--debug`` shows it); file-level faults name the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from care_core.cli import main
from care_core.errors import CareError, FileFault, describe, file_fault, one_line, read_json

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny-care.yaml"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(args)
    return code, capsys.readouterr().err.strip().splitlines()


def _truncated_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"group_id": [str(i) for i in range(500)]}), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_truncated_parquet_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _truncated_parquet(tmp_path / "rollouts.parquet")
    code, lines = _run(
        ["advantage", "-c", str(RECIPE), "--rollouts", str(bad), "--out", str(tmp_path / "a.parquet")], capsys
    )
    assert code == 1 and len(lines) == 2, lines
    assert lines[0].startswith("error: cannot read Parquet: ") and lines[0].endswith(f"({bad})")
    assert lines[1].startswith("hint: ") and "truncated or corrupt" in lines[1]
    assert not (tmp_path / "a.parquet").exists()


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _truncated_parquet(tmp_path / "rollouts.parquet")
    for argv in (["--debug", "advantage"], ["advantage", "--debug"]):  # before or after the subcommand
        code, lines = _run(
            [*argv, "-c", str(RECIPE), "--rollouts", str(bad), "--out", str(tmp_path / "a.parquet")], capsys
        )
        assert code == 1 and lines[0] == "Traceback (most recent call last):"
        assert any("ArrowInvalid" in line for line in lines) and lines[-2].startswith(
            "error: cannot read Parquet"
        )


def test_recipe_error_exits_2_with_key_and_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, lines = _run(
        ["ingest", "-c", str(RECIPE), "--set", "train.prompts_per_round=0", "--out", str(tmp_path / "d")],
        capsys,
    )
    assert code == 2 and lines[0] == f"error: train.prompts_per_round=0 must be >= 1 ({RECIPE})"
    assert lines[1].startswith("hint: ") and not (tmp_path / "d").exists()


def test_missing_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(
        ["sft", "-c", str(RECIPE), "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 1 and lines == [
        f"error: data folder has neither sft.parquet nor train.parquet ({tmp_path / 'nodata'})",
        "hint: give the folder `care ingest --out DIR` wrote",
    ]


def test_corrupt_safetensors_and_truncated_config_name_the_model_folder(
    micro_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from care_core.config import build_recipe
    from care_core.stages.ingest import run_ingest

    data = tmp_path / "data"
    run_ingest(build_recipe({"data": {"synthetic": {"n_train": 4, "n_test": 2}}}), data)
    model = tmp_path / "model"
    shutil.copytree(micro_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    args = [
        "rollout",
        "-c",
        str(RECIPE),
        "--set",
        "train.prompts_per_round=2",
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r.parquet"),
    ]
    code, lines = _run(args, capsys)
    assert (
        code == 1
        and len(lines) == 2
        and lines[0].startswith("error: cannot load the model weights: SafetensorError")
    )
    assert lines[0].endswith(f"({model})") and "safetensors" in lines[1]
    config = model / "config.json"
    config.write_text(config.read_text()[:25])
    code, lines = _run(args, capsys)
    assert code == 1 and lines[0].startswith("error: cannot read field 'model_type': JSONDecodeError")
    assert lines[0].endswith(f"({config})")


def test_truncated_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"round": 3, "metrics": {"a": 1}})[:12])
    with pytest.raises(FileFault) as info:
        read_json(path)
    assert info.value.where == str(path) and "JSONDecodeError" in info.value.what
    with pytest.raises(FileNotFoundError):  # a missing file is still a FileNotFoundError (and a CareError)
        read_json(tmp_path / "missing.json")


def test_unrelated_errors_pass_through_file_fault(tmp_path: Path) -> None:
    with pytest.raises(KeyError), file_fault(tmp_path / "x"):
        raise KeyError("not a file problem")


def test_describe_every_class() -> None:
    from care_core.config import RecipeError
    from care_core.schema import SchemaError
    from care_core.storage import StorageError
    from care_core.tracking import TrackingError

    for exc in (
        RecipeError("k=1 bad", "r.yaml"),
        SchemaError("f.parquet row 3: field 'answer' is empty"),
        StorageError("upload to s3://b/k failed"),
        TrackingError("MLflow get_run at http://h failed"),
    ):
        report = describe(exc)
        assert isinstance(exc, CareError) and report.known and report.code >= 1
        assert report.line.startswith("error: ") and report.hint and "\n" not in report.line
    assert describe(RecipeError("x", "r.yaml")).code == 2
    unknown = describe(ZeroDivisionError("division by zero"))
    assert not unknown.known and unknown.code == 1 and "--debug" in unknown.hint
    assert describe(KeyboardInterrupt()).code == 130
    gone = describe(FileNotFoundError(2, "No such file or directory", "/x/y.parquet"))
    assert gone.line == "error: No such file or directory (/x/y.parquet)"
    line = one_line(CareError("bad\nthing", "f.txt", hint="do x"))
    assert line == "error: bad thing (f.txt) -- hint: do x"


def test_console_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "care_core.cli",
            "advantage",
            "-c",
            str(RECIPE),
            "--rollouts",
            str(tmp_path / "missing.parquet"),
            "--out",
            str(tmp_path / "a.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-2].startswith("error: ") and "missing.parquet" in out.stderr


def test_a_deliberate_value_error_of_a_stage_is_a_known_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _run(["score", "--in", str(tmp_path / "preds.jsonl")], capsys)
    assert code == 1 and lines == [
        f"error: predictions file not found: {tmp_path / 'preds.jsonl'}",
        "hint: check the named input, file or recipe key",
    ]
    try:
        raise ValueError("raised outside the project")
    except ValueError as exc:
        assert not describe(exc).known and "--debug" in describe(exc).hint
