"""What ``care run`` / ``care demo`` show while kfp.local runs: one line per step, a bar, the error.

kfp.local prints everything a component writes (executor JSON, library logs, tqdm updates) plus
its own task banners to ``sys.stdout``. ``StepProgress`` stands in for ``sys.stdout`` while the
pipeline runs: every byte goes to the log file, and the console gets

* one line per finished step (``[ 4/13] round 0: rollout   done   12.3 s``),
* a tqdm bar for the running step, fed by the step's own tqdm lines (SFT steps, rollout batches,
  evaluation batches; only on a terminal),
* on failure, the step's error line: the component's ``error: ...`` line when it printed one,
  else the last line of its traceback (``StepFailed`` carries it to the ``care`` error report).
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from care_core.errors import CareError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_BAR = re.compile(r"^(?P<desc>[^|]*?):?\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*\[")
_ROUND_TASK = re.compile(r"^(rollout|advantage|update)(?:-(\d+))?$")
_TRACEBACK_LAST = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b[^:]*:")


class StepFailed(CareError):
    """A pipeline step failed under kfp.local; ``what`` is the step's own error line."""


def step_label(task: str) -> str:
    """kfp.local task name -> what the user reads: ``rollout-2`` -> ``round 1: rollout``."""
    match = _ROUND_TASK.match(task)
    if match:
        return f"round {int(match.group(2) or 1) - 1}: {match.group(1)}"
    if re.fullmatch(r"evaluate-curve(-\d+)?", task):  # train.eval_every's held-out learning-curve points
        return "evaluate (curve point)"
    return task.replace("-", " ")


def count_steps(pipeline_spec: Any) -> int:
    """Container tasks in a compiled ``PipelineSpec`` (tasks inside sub-DAGs such as ``dsl.If`` count)."""

    def count(dag: Any) -> int:
        n = 0
        for task in dag.tasks.values():
            component = pipeline_spec.components[task.component_ref.name]
            n += count(component.dag) if component.HasField("dag") else 1
        return n

    return count(pipeline_spec.root.dag)


def error_line(lines: list[str]) -> tuple[str, str | None]:
    """(what, hint) of a failed step's output: its last ``error: ... -- hint: ...`` line, else the
    last traceback line, else its last line."""
    text = [line.strip() for line in lines if line.strip()]
    for line in reversed(text):
        if line.startswith("error: "):
            what, _, hint = line[len("error: ") :].partition(" -- hint: ")
            return what, hint or None
    for line in reversed(text):
        if _TRACEBACK_LAST.match(line):
            return line, None
    return (text[-1] if text else "the step failed without output"), None


class StepProgress(io.TextIOBase):
    """A ``sys.stdout`` stand-in: everything to ``log``, step lines and a bar to ``console``."""

    def __init__(
        self, log: TextIO, console: TextIO, total_steps: int | None = None, bars: bool | None = None
    ):
        self.log, self.console, self.total = log, console, total_steps
        self.bars = console.isatty() if bars is None else bars
        self.done = 0
        self._buffer = ""
        self._task: str | None = None
        self._started = 0.0
        self._lines: list[str] = []
        self._bar: tqdm | None = None
        self.failed: tuple[str, list[str]] | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self._buffer += text
        *complete, self._buffer = re.split(r"\r\n|\r|\n", self._buffer)
        for line in complete:
            self._line(_ANSI.sub("", line))
        if complete:
            self.log.flush()  # the log can be followed while the step runs
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def _line(self, line: str) -> None:
        start, end = _START.search(line), _END.search(line)
        if start:
            self._task, self._started, self._lines = start.group(1), time.monotonic(), []
        elif end:
            self._finish(end.group(1), end.group(2))
        elif self._task is not None:
            self._lines.append(line)
            bar = _BAR.match(line.strip())
            if bar and self.bars:
                self._show_bar(bar)

    def _show_bar(self, match: re.Match[str]) -> None:
        total, n = int(match.group("total")), int(match.group("n"))
        desc = f"{step_label(self._task or '')} {match.group('desc').strip()}".strip()
        if self._bar is None or self._bar.total != total:
            self._close_bar()
            self._bar = tqdm(total=total, desc=desc, file=self.console, leave=False, dynamic_ncols=True)
        self._bar.set_description(desc, refresh=False)
        self._bar.n = n
        self._bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _finish(self, task: str, status: str) -> None:
        self._close_bar()
        self.done += 1
        count = f"[{self.done:>2}/{self.total}]" if self.total else f"[{self.done:>2}]"
        word = "done" if status == "SUCCESS" else "FAILED"
        self.console.write(
            f"  {count} {step_label(task):<24} {word:<6} {time.monotonic() - self._started:7.1f} s\n"
        )
        self.console.flush()
        if status != "SUCCESS":
            self.failed = (task, self._lines)
        self._task = None

    def failure(self, log_path: Path) -> StepFailed | None:
        """The ``StepFailed`` of the step that failed (None if none did)."""
        if self.failed is None:
            return None
        task, lines = self.failed
        what, hint = error_line(lines)
        full_log = f"full log: {log_path}"
        return StepFailed(
            what, f"kfp.local step {step_label(task)!r}", f"{hint}; {full_log}" if hint else full_log
        )
