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
    assert markdown_table(["a", "b"], [["x", 0.5], ["y", float("nan")]]) == "| a | b |\n|---|---|\n| x | 0.5000 |\n| y | n/a |\n"


def test_write_table_reports(tmp_path):
    text = write_table_reports(RESULT, tmp_path / "t.md", tmp_path / "r.html")
    assert "| synthetic | 0.6250 | 0.7500 | 8 |" in text and "| mathvista | 0.5000 | n/a |  |" in text
    assert (tmp_path / "t.md").read_text() == text
    assert (tmp_path / "r.html").read_text().count("<tr>") == 4
    (tmp_path / "results.md").write_text("# Evaluation <of> x\n| by family |\n")
    detailed = write_table_reports(RESULT, tmp_path / "t2.md", tmp_path / "r2.html", tmp_path / "results.md")
    assert detailed.startswith("# Evaluation <of> x")
    assert "&lt;of&gt;" in (tmp_path / "r2.html").read_text()
