"""Peak memory of the tiny demo pipeline (``care demo``: kfp.local, every stage a subprocess).

Runs the command in a child process and samples the resident memory (RSS) of its whole process
tree every ``--interval`` seconds with psutil: reports the peak of the tree's sum (what the
machine must hold at once), the largest single process (kernel ``ru_maxrss`` of the children, so
short peaks between samples are not missed) and the wall time. Baseline for scale: the RSS of a
bare ``python -c 'import torch, transformers'``, measured the same way in the same run.

    .venv/bin/python bench/memory_bench.py [--recipe recipes/tiny-care.yaml] [--work-dir DIR] [-- extra care args]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tree_rss(proc: Any) -> int:
    """Bytes of RSS of ``proc`` and all its descendants (processes that vanish are skipped)."""
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure(cmd: list[str], interval: float, cwd: Path) -> dict[str, Any]:
    """Run ``cmd``; peak tree RSS (sampled), max single-process RSS (kernel), wall seconds, exit code."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    # The child's output goes to a file, not a pipe: an unread pipe fills up (64 KiB) and blocks the child.
    with tempfile.TemporaryFile(mode="w+") as log:
        child = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        proc = psutil.Process(child.pid)
        peak, samples = 0, 0
        while child.poll() is None:
            peak = max(peak, tree_rss(proc))
            samples += 1
            time.sleep(interval)
        log.seek(0)
        output = log.read()
    wall = time.perf_counter() - start
    max_single_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "cmd": " ".join(cmd),
        "returncode": child.returncode,
        "wall_s": wall,
        "peak_tree_mib": peak / 2**20,
        "max_single_process_mib": max(max_single_kib, before) / 1024,
        "samples": samples,
        "tail": output[-2000:],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="recipes/tiny-care.yaml")
    parser.add_argument("--work-dir", default=None, help="pipeline work dir (default: a fresh temp dir)")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--json")
    parser.add_argument("extra", nargs="*", help="extra `care demo` arguments, e.g. --set train.rounds=1")
    args = parser.parse_args(argv)
    info = banner("peak memory of the tiny demo pipeline", "kfp", "mlflow", "psutil")
    python = sys.executable
    baseline = measure([python, "-c", "import torch, transformers, time; time.sleep(1)"], args.interval, REPO)
    print(f"baseline (python + import torch, transformers): peak {baseline['peak_tree_mib']:.0f} MiB")
    work = args.work_dir or tempfile.mkdtemp(prefix="care-mem-bench-")
    demo = measure(
        [python, "-m", "care_core.cli", "demo", "-c", args.recipe, "--work-dir", work, *args.extra],
        args.interval,
        REPO,
    )
    if demo["returncode"] != 0:
        print(demo["tail"])
        raise SystemExit(f"care demo failed with exit code {demo['returncode']}")
    print(
        f"care demo ({args.recipe}): wall {demo['wall_s']:.0f} s, peak process-tree RSS {demo['peak_tree_mib']:.0f} MiB, "
        f"largest single process {demo['max_single_process_mib']:.0f} MiB"
    )
    print(
        f"RATIO demo peak tree RSS / bare torch+transformers process: {demo['peak_tree_mib'] / baseline['peak_tree_mib']:.2f}x"
    )
    numbers = {
        **info,
        "baseline": {k: v for k, v in baseline.items() if k != "tail"},
        "demo": {k: v for k, v in demo.items() if k != "tail"},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    main()
