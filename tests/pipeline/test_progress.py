"""``care run`` / ``care demo`` console: one line per step, the log file gets everything, a failed
step's own error line reaches the user."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.progress import StepProgress, error_line, step_label

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def _kfp_task(name: str, body: list[str], status: str = "SUCCESS") -> str:
    """What kfp.local prints for one task: banners (coloured), the component's output indented by 4."""
    colour = GREEN if status == "SUCCESS" else RED
    out = [
        f"01:04:37.827 - INFO - Executing task {CYAN}'{name}'{RESET}\n",
        "01:04:37.827 - INFO - Streamed logs:\n\n",
    ]
    out += [f"    {line}\n" for line in body]
    out += [
        f"01:04:47.752 - INFO - Task {CYAN}'{name}'{RESET} finished with status {colour}{status}{RESET}\n",
        "-" * 80 + "\n",
    ]
    return "".join(out)


class _Console(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_line_per_step_and_everything_in_the_log():
    log, console = io.StringIO(), io.StringIO()
    stream = StepProgress(log, console, total_steps=3)
    text = (
        _kfp_task("resolve-recipe", ["[KFP Executor] Got executor_input:", "{", '    "inputs": {}', "}"])
        + _kfp_task(
            "sft",
            ["\r 10%|#         | 15/150 [00:01<00:09, 15.0it/s]\r 20%|##        | 30/150 [00:02<00:08]"],
        )
        + _kfp_task("rollout-3", ["rollout: 100%|##########| 2/2 [00:01<00:00]"])
    )
    for start in range(0, len(text), 7):  # kfp prints in pieces (indentation, then the line)
        stream.write(text[start : start + 7])
    assert log.getvalue() == text
    lines = console.getvalue().splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["[", "1/3]", "resolve"],
        ["[", "2/3]", "sft"],
        ["[", "3/3]", "round"],
    ]
    assert "round 2: rollout" in lines[2] and all(" done " in line and line.endswith(" s") for line in lines)
    assert stream.failure(Path("x.log")) is None


def test_a_bar_follows_the_steps_own_tqdm_lines_on_a_terminal():
    console = _Console()
    stream = StepProgress(io.StringIO(), console, total_steps=1)
    # no end banner yet: the step is still running
    running = _kfp_task("sft", [" 40%|####      | 60/150 [00:04<00:06, 15.0it/s]"])[:-100]
    stream.write(running)
    assert stream._bar is not None and (stream._bar.n, stream._bar.total) == (60, 150)
    assert "sft" in console.getvalue() and "60/150" in console.getvalue()
    plain = StepProgress(io.StringIO(), io.StringIO(), total_steps=1)  # not a terminal: no bar
    plain.write(_kfp_task("sft", [" 40%|####      | 60/150 [00:04<00:06, 15.0it/s]"])[:-100])
    assert plain._bar is None


def test_a_failed_step_carries_its_own_error_line():
    console = io.StringIO()
    stream = StepProgress(io.StringIO(), console, total_steps=2)
    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
                 "care_core.errors.InputError: data/x.parquet: no rows"]  # fmt: skip
    stream.write(
        _kfp_task(
            "ingest", ["error: no rows (data/x.parquet) -- hint: run ingest first", *traceback], "FAILURE"
        )
    )
    assert "FAILED" in console.getvalue().splitlines()[-1]
    failure = stream.failure(Path("/w/logs/run.log"))
    assert failure is not None
    assert (failure.what, failure.where) == ("no rows (data/x.parquet)", "kfp.local step 'ingest'")
    assert failure.hint == "run ingest first; full log: /w/logs/run.log"


def test_error_line_falls_back_to_the_traceback_then_the_last_line():
    tb = ["Traceback (most recent call last):", '  File "x.py", line 3, in f', "    raise ValueError('bad K')",
          "ValueError: bad K", "", "[KFP Executor] exiting"]  # fmt: skip
    assert error_line(tb) == ("ValueError: bad K", None)
    assert error_line(["something odd", "  "]) == ("something odd", None)
    assert error_line([]) == ("the step failed without output", None)


@pytest.mark.parametrize(
    ("task", "label"),
    [("rollout", "round 0: rollout"), ("advantage-2", "round 1: advantage"), ("update-10", "round 9: update"),
     ("resolve-recipe", "resolve recipe"), ("evaluate", "evaluate")],
)  # fmt: skip
def test_step_labels(task, label):
    assert step_label(task) == label


@pytest.mark.slow
def test_care_run_failing_step_prints_its_error_last(tmp_path):
    """A real kfp.local run whose ingest fails: step lines, then the ingest error as the last lines."""
    empty = tmp_path / "geometry3k"
    empty.mkdir()
    cmd = [sys.executable, "-m", "care_core.cli", "run", "-c", "recipes/tiny-care.yaml", "--work-dir", str(tmp_path / "w"),
           "--set", "data.sources=[{name: geometry3k, path: " + str(empty) + "}]"]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2]
    )
    assert out.returncode != 0, out.stdout + out.stderr
    stdout = out.stdout.splitlines()
    assert stdout[0].startswith("Running pipeline") and "Full log: " in stdout[0]
    assert "ingest" in stdout[-1] and "FAILED" in stdout[-1], out.stdout
    assert len(stdout) <= 4, (
        out.stdout
    )  # the banner, resolve recipe, ingest: the executor JSON went to the log
    err = out.stderr.strip().splitlines()
    assert err[-2].startswith("error: ") and "kfp.local step 'ingest'" in err[-2], out.stderr
    assert "geometry3k" in err[-2] and "full log: " in err[-1], out.stderr
    log = Path(stdout[0].split("Full log: ")[1])
    assert "Executing task" in log.read_text()
