"""The `care` command surface: every subcommand has --help; bad recipes exit 2 with the key named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from care_core.cli import build_parser, main

SUBCOMMANDS = [
    "demo",
    "run",
    "ingest",
    "sft",
    "rollout",
    "advantage",
    "update",
    "evaluate",
    "score",
    "train",
    "compile",
    "submit",
    "schedule",
    "compare",
]


def test_every_subcommand_of_the_contract_exists() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(SUBCOMMANDS) <= set(choices)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "usage: care " + name in capsys.readouterr().out


def test_invalid_recipe_exits_2_naming_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algorithm:\n  name: care\n")
    code = main(
        ["advantage", "-c", str(recipe), "--set", "algorithm.care.Q=1", "--rollouts", "x", "--out", "y"]
    )
    assert code == 2
    assert "algorithm.care.Q" in capsys.readouterr().err


def test_console_script_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "care_core.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "advantage" in out.stdout and "demo" in out.stdout
