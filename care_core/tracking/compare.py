"""``care compare --experiment NAME``: GRPO vs CARE from an MLflow experiment.

Picks the latest FINISHED run of each algorithm (tag ``algorithm``), builds the per-benchmark
accuracy table with deltas (CARE - GRPO, in points) and the learning-curve plots, writes
``comparison.md``, ``comparison.html`` (PNG inlined), ``learning_curves.png`` and ``comparison.json``
to ``out_dir``, logs them to a report run in the same experiment, prints the Markdown and returns a dict.

``care compare --registered-model NAME`` (``compare_registered``): the registry's ``champion`` vs
``challenger`` versions, read through the MLflow runs that produced them, with both gate scores and
the gate's reason (README: Scheduled retraining).
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

from care_core.algorithms.registry import algorithm_label, list_algorithms
from care_core.errors import CareError
from care_core.tracking.plots import plot_learning_curves, run_history
from care_core.tracking.report import eval_scores, html_page, html_table, markdown_table
from care_core.tracking.tracker import TAG_ALGORITHM, Tracker

log = logging.getLogger(__name__)

REPORT_TAG = "care.report"


class CompareError(CareError, ValueError):
    """The experiment lacks what the comparison needs; the message says what is there."""

    default_hint = (
        "check --experiment and --tracking-uri: the experiment needs a FINISHED run of each algorithm"
    )


def latest_runs(tracker: Tracker, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """The latest FINISHED pipeline run (not a report run) per algorithm."""
    runs = tracker._call(
        "search_runs",
        lambda: tracker.client.search_runs(
            [tracker.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
        ),
    )
    chosen: dict[str, Any] = {}
    for run in runs:
        algo = run.data.tags.get(TAG_ALGORITHM)
        if run.data.tags.get(REPORT_TAG) or algo not in algorithms or algo in chosen:
            continue
        chosen[algo] = run
    return chosen


def comparison_rows(
    baseline: dict[str, dict[str, float]], candidate: dict[str, dict[str, float]]
) -> list[list[Any]]:
    """Rows ``[benchmark, baseline acc, candidate acc, delta (points)]``; macro average last."""
    names = sorted((set(baseline) | set(candidate)) - {"macro_avg"})
    if "macro_avg" in baseline or "macro_avg" in candidate:
        names.append("macro_avg")
    rows = []
    for name in names:
        b = baseline.get(name, {}).get("accuracy")
        c = candidate.get(name, {}).get("accuracy")
        delta = f"{100 * (c - b):+.2f}" if b is not None and c is not None else "n/a"
        rows.append([name, float("nan") if b is None else b, float("nan") if c is None else c, delta])
    return rows


def compare_experiment(
    tracking_uri: str,
    experiment: str,
    out_dir: str | Path,
    *,
    baseline: str = "grpo",
    candidate: str = "care",
    log_to_mlflow: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Build the ``baseline`` vs ``candidate`` report for ``experiment``; return paths, rows and run ids."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking_uri, experiment)
    if tracker.client.get_experiment_by_name(experiment) is None:
        raise CompareError(f"MLflow experiment {experiment!r} not found at {tracking_uri}")
    runs = latest_runs(tracker, (baseline, candidate))
    missing = [a for a in (baseline, candidate) if a not in runs]
    if missing:
        found = latest_runs(tracker, tuple(list_algorithms()))
        raise CompareError(
            f"experiment {experiment!r} at {tracking_uri} has no FINISHED run with algorithm={missing}; "
            f"finished runs found for: {sorted(found) or 'none'}"
        )
    b_label, c_label = algorithm_label(baseline), algorithm_label(candidate)
    scores = {algo: eval_scores(run.data.metrics) for algo, run in runs.items()}
    rows = comparison_rows(scores[baseline], scores[candidate])
    headers = [
        "benchmark",
        f"{b_label} accuracy",
        f"{c_label} accuracy",
        f"delta {c_label}-{b_label} (points)",
    ]

    histories = {
        f"{algorithm_label(algo)} ({run.info.run_id[:8]})": run_history(
            tracker.client, run.info.run_id, run.data.metrics.keys()
        )
        for algo, run in ((baseline, runs[baseline]), (candidate, runs[candidate]))
    }
    png = plot_learning_curves(
        histories, out_dir / "learning_curves.png", title=f"{c_label} vs {b_label}: {experiment}"
    )

    run_lines = [
        f"- {algorithm_label(a)}: run `{r.info.run_id}` (recipe {r.data.tags.get('recipe.name', '?')}, "
        f"hash {r.data.tags.get('recipe.hash', '?')}, commit {r.data.tags.get('git.commit', '?')[:12]})"
        for a, r in runs.items()
    ]
    markdown = (
        f"# {c_label} vs {b_label} — experiment `{experiment}`\n\n"
        + "\n".join(run_lines)
        + "\n\n"
        + markdown_table(headers, rows)
        + ("\n![learning curves](learning_curves.png)\n" if png else "\n(no per-round metrics to plot)\n")
    )
    sections = [
        f"<ul>{''.join(f'<li>{line[2:]}</li>' for line in run_lines)}</ul>",
        html_table(headers, rows),
    ]
    if png:
        encoded = base64.b64encode(png.read_bytes()).decode()
        sections.append(
            f"<h2>Learning curves</h2><img alt='learning curves' src='data:image/png;base64,{encoded}'/>"
        )
    md_path = out_dir / "comparison.md"
    html_path = out_dir / "comparison.html"
    json_path = out_dir / "comparison.json"
    md_path.write_text(markdown)
    html_path.write_text(html_page(f"{c_label} vs {b_label}: {experiment}", sections))
    report: dict[str, Any] = {
        "experiment": experiment,
        "tracking_uri": tracking_uri,
        "runs": {a: r.info.run_id for a, r in runs.items()},
        "headers": headers,
        "rows": rows,
        "markdown": str(md_path),
        "html": str(html_path),
        "png": str(png) if png else None,
    }
    json_path.write_text(json.dumps(report, indent=2, default=str))
    report["json"] = str(json_path)

    if log_to_mlflow:
        with tracker.start_run(
            None,
            run_name=f"compare-{baseline}-vs-{candidate}",
            tags={REPORT_TAG: "compare", "compared.runs": ",".join(report["runs"].values())},
        ) as rep:
            for row in rows:
                if row[3] != "n/a":
                    rep.log_metrics({f"delta/{row[0]}/accuracy": float(row[3])})
            for path in (md_path, html_path, json_path, png):
                if path:
                    rep.log_artifact(path, "comparison")
        report["report_run_id"] = tracker.run_id
    if not quiet:
        print(markdown)
    return report


# --------------------------------------------------------------------------- champion vs challenger
def compare_registered(
    tracking_uri: str,
    registered_model: str,
    out_dir: str | Path,
    *,
    baseline_alias: str = "champion",
    candidate_alias: str = "challenger",
    quiet: bool = False,
) -> dict[str, Any]:
    """``care compare --registered-model NAME``: the versions behind two aliases of a registered model
    (default: ``champion`` vs ``challenger``), read from the MLflow runs that produced them; writes
    ``registry_comparison.md`` / ``.json`` with the per-benchmark table, both gate scores and the gate's
    reason recorded on the candidate version."""
    from care_core.tracking.registry import TAG_EVAL_SCORE, TAG_PARENT_VERSION, TAG_REASON, version_by_alias

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking_uri, "care")
    versions = {
        alias: version_by_alias(tracker, registered_model, alias)
        for alias in (baseline_alias, candidate_alias)
    }
    missing = [alias for alias, v in versions.items() if v is None]
    if missing:
        try:
            present = dict(tracker.client.get_registered_model(registered_model).aliases or {})
        except Exception:  # noqa: BLE001  (the model itself is missing)
            present = None
        raise CompareError(
            f"registered model {registered_model!r} at {tracking_uri} has no alias {missing}; "
            + (f"aliases present: {present or 'none'}" if present is not None else "no such registered model")
        )
    runs = {alias: tracker.client.get_run(v.run_id) for alias, v in versions.items()}
    scores = {alias: eval_scores(run.data.metrics) for alias, run in runs.items()}
    base, cand = versions[baseline_alias], versions[candidate_alias]
    b_label, c_label = f"{baseline_alias} v{base.version}", f"{candidate_alias} v{cand.version}"
    rows = comparison_rows(scores[baseline_alias], scores[candidate_alias])
    headers = [
        "benchmark",
        f"{b_label} accuracy",
        f"{c_label} accuracy",
        f"delta {c_label}-{b_label} (points)",
    ]
    lines = [
        f"- {alias} v{v.version}: run `{v.run_id}`, gate score {(v.tags or {}).get(TAG_EVAL_SCORE, '?')}, "
        f"parent v{(v.tags or {}).get(TAG_PARENT_VERSION) or '—'}, data {(v.tags or {}).get('data.fingerprint', '?')[:12]}, "
        f"source `{v.source}`"
        for alias, v in versions.items()
    ]
    reason = (cand.tags or {}).get(TAG_REASON, "")
    markdown = (
        f"# {c_label} vs {b_label} — registered model `{registered_model}`\n\n"
        + "\n".join(lines)
        + "\n\n"
        + markdown_table(headers, rows)
        + (f"\nGate on v{cand.version}: {reason}\n" if reason else "")
    )
    report: dict[str, Any] = {
        "registered_model": registered_model,
        "tracking_uri": tracking_uri,
        "versions": {alias: str(v.version) for alias, v in versions.items()},
        "runs": {alias: v.run_id for alias, v in versions.items()},
        "gate_scores": {alias: (v.tags or {}).get(TAG_EVAL_SCORE) for alias, v in versions.items()},
        "gate_reason": reason,
        "headers": headers,
        "rows": rows,
    }
    md_path, json_path = out_dir / "registry_comparison.md", out_dir / "registry_comparison.json"
    md_path.write_text(markdown)
    report["markdown"] = str(md_path)
    json_path.write_text(json.dumps(report, indent=2, default=str))
    report["json"] = str(json_path)
    if not quiet:
        print(markdown)
    return report
