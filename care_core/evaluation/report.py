"""Aggregate scored predictions into per-benchmark accuracy, per-category breakdowns and tables.

A prediction record (one line of ``predictions.jsonl``) carries ``correct`` (0/1 float),
``format`` (0/1 float) and ``categories`` (dimension -> value, or list of values for
multi-label dimensions such as MathVista's skills). Accuracies here are fractions in [0, 1];
the Markdown table shows percentages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# The paper's six benchmarks, in its table's order; the macro average is their mean.
SIX_BENCHMARKS = ("mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_standard", "mmmu_pro_vision")
DISPLAY_NAMES = {
    "mathvista": "MathVista",
    "mathverse": "MathVerse",
    "mathvision": "MATH-Vision",
    "mmmu": "MMMU",
    "mmmu_pro_standard": "MMMU-Pro std",
    "mmmu_pro_vision": "MMMU-Pro vision",
    "synthetic": "Synthetic (held-out)",
}


@dataclass
class BenchmarkResult:
    """``accuracy``/``format_rate`` are fractions over ``n`` scored items; ``categories`` maps a
    dimension to ``{value: {"n": int, "accuracy": float}}``; ``skipped`` counts the bad rows left
    out under ``data.bad_rows=skip`` (``skipped_rows``: their reasons, the first ones)."""

    name: str
    n: int
    correct: float
    accuracy: float
    format_rate: float
    categories: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    skipped: int = 0
    skipped_rows: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(name: str, records: Iterable[Mapping[str, Any]]) -> BenchmarkResult:
    """Accuracy, format rate and per-category accuracy of scored prediction records."""
    n = 0
    correct = 0.0
    formatted = 0.0
    cells: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for record in records:
        n += 1
        value = float(record["correct"])
        correct += value
        formatted += float(record.get("format", 0.0))
        for dimension, labels in (record.get("categories") or {}).items():
            if labels is None or labels == "":
                continue
            for label in labels if isinstance(labels, list) else [labels]:
                cell = cells[str(dimension)][str(label)]
                cell[0] += 1
                cell[1] += value
    categories = {
        dim: {label: {"n": int(c[0]), "accuracy": c[1] / c[0]} for label, c in sorted(values.items())}
        for dim, values in sorted(cells.items())
    }
    return BenchmarkResult(
        name=name,
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        format_rate=formatted / n if n else 0.0,
        categories=categories,
    )


def macro_average(results: Mapping[str, BenchmarkResult]) -> float | None:
    """Mean accuracy over those of the six benchmarks present in ``results`` (None if none is)."""
    values = [results[name].accuracy for name in SIX_BENCHMARKS if name in results]
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def results_markdown(
    results: Mapping[str, BenchmarkResult], macro: float | None, title: str = "Evaluation"
) -> str:
    """A Markdown report: the summary table (six benchmarks, macro average, synthetic), then one
    per-category table per benchmark and dimension."""
    lines = [f"# {title}", "", "| benchmark | n | accuracy (%) | format (%) |", "|---|---:|---:|---:|"]
    ordered = [n for n in SIX_BENCHMARKS if n in results] + [n for n in results if n not in SIX_BENCHMARKS]
    for name in ordered:
        if name in SIX_BENCHMARKS:
            r = results[name]
            lines.append(
                f"| {DISPLAY_NAMES.get(name, name)} | {r.n} | {_pct(r.accuracy)} | {_pct(r.format_rate)} |"
            )
    if macro is not None:
        count = sum(1 for n in SIX_BENCHMARKS if n in results)
        lines.append(f"| **macro average ({count} of 6)** | | **{_pct(macro)}** | |")
    for name in ordered:
        if name not in SIX_BENCHMARKS:
            r = results[name]
            lines.append(
                f"| {DISPLAY_NAMES.get(name, name)} | {r.n} | {_pct(r.accuracy)} | {_pct(r.format_rate)} |"
            )
    skips = [f"{DISPLAY_NAMES.get(n, n)}: {results[n].skipped}" for n in ordered if results[n].skipped]
    if skips:
        lines += ["", "Bad rows skipped (data.bad_rows=skip; not in n): " + ", ".join(skips)]
    for name in ordered:
        for dimension, values in results[name].categories.items():
            lines += [
                "",
                f"## {DISPLAY_NAMES.get(name, name)} by {dimension}",
                "",
                f"| {dimension} | n | accuracy (%) |",
                "|---|---:|---:|",
            ]
            lines += [
                f"| {label} | {cell['n']} | {_pct(cell['accuracy'])} |" for label, cell in values.items()
            ]
    return "\n".join(lines) + "\n"
