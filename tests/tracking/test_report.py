"""Eval tables for the KFP UI (Markdown + HTML) from an evaluate result."""

from __future__ import annotations

from care_core.tracking.report import eval_scores, markdown_table, write_table_reports

RESULT = {
    "metrics": {
        "eval/synthetic/accuracy": 0.625,
        "eval/synthetic/format_rate": 0.75,
        "eval/synthetic/n": 8.0,
        "eval/mathvista/accuracy": 0.5,
        "eval/macro_avg": 0.5625,
        "rollout/reward": 1.0,
    }
}


def test_eval_scores_groups_by_benchmark():
    assert eval_scores(RESULT["metrics"]) == {
        "synthetic": {"accuracy": 0.625, "format_rate": 0.75, "n": 8.0},
        "mathvista": {"accuracy": 0.5},
        "macro_avg": {"accuracy": 0.5625},
    }


def test_markdown_table_formats_floats():
    assert (
        markdown_table(["a", "b"], [["x", 0.5], ["y", float("nan")]])
        == "| a | b |\n|---|---|\n| x | 0.5000 |\n| y | n/a |\n"
    )


def test_write_table_reports(tmp_path):
    text = write_table_reports(RESULT, tmp_path / "t.md", tmp_path / "r.html")
    assert "| synthetic | 0.6250 | 0.7500 | 8 |" in text and "| mathvista | 0.5000 | n/a |  |" in text
    assert (tmp_path / "t.md").read_text() == text
    assert (tmp_path / "r.html").read_text().count("<tr>") == 4
    (tmp_path / "results.md").write_text("# Evaluation <of> x\n| by family |\n")
    detailed = write_table_reports(RESULT, tmp_path / "t2.md", tmp_path / "r2.html", tmp_path / "results.md")
    assert detailed.startswith("# Evaluation <of> x")
    assert "&lt;of&gt;" in (tmp_path / "r2.html").read_text()


def test_stage_metrics_namespacing():
    from care_core.tracking.stage_log import stage_metrics

    assert stage_metrics("ingest", {"metrics": {"rows_train": 32, "rejected": 0}, "sources": ["x"]}) == {
        "ingest/rows_train": 32.0,
        "ingest/rejected": 0.0,
    }
    got = stage_metrics(
        "update",
        {"actor/kl": 0.1, "update/rows": 4, "history": [1], "group_kinds": {"mixed": 2}, "name": "x"},
    )
    assert got == {"actor/kl": 0.1, "update/rows": 4.0, "update/group_kinds/mixed": 2.0}
    assert stage_metrics("evaluate", {"metrics": {"eval/synthetic/accuracy": 0.5}, "benchmarks": {}}) == {
        "eval/synthetic/accuracy": 0.5
    }
