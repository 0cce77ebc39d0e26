"""Shared helpers of the speed benchmarks: machine/version banner, timing, tiny-model setup."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in ("torch", "transformers", *packages):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def banner(title: str, *packages: str) -> dict[str, Any]:
    """Print and return machine + versions (the context every recorded number needs)."""
    import torch

    info = {
        "bench": title,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        **versions(*packages),
    }
    print("== " + title)
    for key, value in info.items():
        if key != "bench":
            print(f"   {key}: {value}")
    return info


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Run ``fn`` ``repeats`` times; returns wall-clock seconds per run and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_line(name: str, ours: float, baseline_name: str, baseline: float, higher_is_better: bool) -> str:
    """``name: X vs baseline Y -> ratio R (>1: ours better)``."""
    ratio = (ours / baseline) if higher_is_better else (baseline / ours)
    return f"{name}: {ours:.4g} vs {baseline_name} {baseline:.4g} -> {ratio:.2f}x {'(ours faster)' if ratio > 1 else '(baseline faster)'}"


def step_parser(doc: str | None, prompts: int = 4, g: int = 8, max_new_tokens: int | None = 64) -> Any:
    """The argument parser every RL-step bench starts from: ``--preset --prompts --g
    [--max-new-tokens] --json`` (each script adds its own options)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="tiny-model preset (micro | tiny | small)")
    parser.add_argument("--prompts", type=int, default=prompts)
    parser.add_argument("--g", type=int, default=g)
    if max_new_tokens is not None:
        parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    parser.add_argument("--json", help="write the numbers to this file")
    return parser
