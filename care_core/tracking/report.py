"""Human-readable tables (Markdown + HTML) for the eval results and the comparison report."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_EVAL_METRIC = re.compile(r"^eval/(?P<bench>[^/]+)/(?P<field>[^/]+)$")


def eval_scores(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{"eval/<bench>/<field>": v}`` -> ``{bench: {field: v}}`` (plus ``macro_avg`` if logged)."""
    out: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        match = _EVAL_METRIC.match(name)
        if match:
            out.setdefault(match["bench"], {})[match["field"]] = float(value)
    if "eval/macro_avg" in metrics:
        out.setdefault("macro_avg", {})["accuracy"] = float(metrics["eval/macro_avg"])
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats with 4 decimals."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table border='1' cellpadding='4' style='border-collapse:collapse'><tr>{head}</tr>{body}</table>"


def html_page(title: str, sections: Sequence[str]) -> str:
    """A standalone HTML page (no external assets)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )


def eval_table_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """Rows ``[benchmark, accuracy, format_rate, n]`` from an evaluate result's flat ``metrics``."""
    scores = eval_scores(result.get("metrics", {}))
    rows = []
    for bench, fields in scores.items():
        n = fields.get("n")
        rows.append(
            [
                bench,
                fields.get("accuracy", float("nan")),
                fields.get("format_rate", float("nan")),
                "" if n is None else int(n),
            ]
        )
    return rows


def write_table_reports(
    result: Mapping[str, Any],
    md_path: str | Path,
    html_path: str | Path,
    stage_markdown: str | Path | None = None,
) -> str:
    """Write the eval table as Markdown and HTML (for the KFP UI); return the Markdown.

    ``stage_markdown``: the evaluate stage's own ``results.md`` (per-category breakdowns); used as the
    Markdown when present and appended to the HTML page.
    """
    headers = ["benchmark", "accuracy", "format_rate", "n"]
    rows = eval_table_rows(result)
    detail = Path(stage_markdown).read_text() if stage_markdown and Path(stage_markdown).is_file() else ""
    text = detail or "# Evaluation\n\n" + markdown_table(headers, rows)
    Path(md_path).parent.mkdir(parents=True, exist_ok=True)
    Path(md_path).write_text(text)
    sections = [html_table(headers, rows)]
    if detail:
        sections.append(f"<h2>Details</h2><pre>{html.escape(detail)}</pre>")
    Path(html_path).parent.mkdir(parents=True, exist_ok=True)
    Path(html_path).write_text(html_page("Evaluation", sections))
    return text
