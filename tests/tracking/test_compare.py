"""care compare on runs logged to a real MLflow server: table with deltas, plots, report run."""

from __future__ import annotations

import json
import time

import pytest
from mlflow.tracking import MlflowClient

from care_core.config import build_recipe
from care_core.tracking import Tracker
from care_core.tracking.compare import CompareError, compare_experiment, comparison_rows
from care_core.tracking.plots import select_curve_metrics


def _log_run(
    uri: str, experiment: str, algo: str, evals: dict[str, float], rewards: list[float], finish: bool = True
) -> str:
    recipe = build_recipe({"name": f"tiny-{algo}", "algorithm": {"name": algo}})
    tracker = Tracker(uri, experiment)
    tracker.start_run(recipe)
    for step, reward in enumerate(rewards, start=1):
        tracker.log_metrics(
            {"reward/mean": reward, "accuracy/mean": reward * 0.9, "actor/kl": 0.01 * step,
             "response_length/mean": 40.0 + step},
            step=step,
        )  # fmt: skip
    metrics = {f"eval/{b}/accuracy": v for b, v in evals.items()}
    metrics["eval/macro_avg"] = sum(evals.values()) / len(evals)
    tracker.log_metrics(metrics, step=len(rewards))
    if finish:
        tracker.end_run("FINISHED")
    return tracker.run_id


def test_select_curve_metrics():
    names = [
        "reward/mean",
        "accuracy/mean",
        "actor/kl",
        "actor/kl_loss",
        "response_length/mean",
        "eval/x/accuracy",
    ]
    assert select_curve_metrics(names) == {
        "reward": "reward/mean",
        "accuracy": "accuracy/mean",
        "KL": "actor/kl",
        "response length": "response_length/mean",
    }
    prefixed = ["rollout/reward/mean", "x/rollout/reward/mean", "update/actor/kl", "sft/train_loss"]
    assert select_curve_metrics(prefixed) == {"reward": "rollout/reward/mean", "KL": "update/actor/kl"}


def test_comparison_rows_hand_computed():
    rows = comparison_rows(
        {"a": {"accuracy": 0.5}, "b": {"accuracy": 0.25}, "macro_avg": {"accuracy": 0.375}},
        {"a": {"accuracy": 0.625}, "macro_avg": {"accuracy": 0.5}},
    )
    assert rows[0] == ["a", 0.5, 0.625, "+12.50"]
    assert rows[1][0] == "b" and rows[1][3] == "n/a"
    assert rows[2] == ["macro_avg", 0.375, 0.5, "+12.50"]


def test_compare_grpo_vs_care(mlflow_server, tmp_path, capsys):
    exp = "compare-test"
    _log_run(mlflow_server, exp, "care", {"mathvista": 0.40, "synthetic": 0.30}, [0.1, 0.2])  # older CARE run
    time.sleep(0.05)
    grpo = _log_run(mlflow_server, exp, "grpo", {"mathvista": 0.50, "synthetic": 0.25}, [0.1, 0.15, 0.2])
    time.sleep(0.05)
    care = _log_run(mlflow_server, exp, "care", {"mathvista": 0.55, "synthetic": 0.375}, [0.1, 0.25, 0.4])
    _log_run(
        mlflow_server, exp, "care", {"mathvista": 0.99, "synthetic": 0.99}, [0.9], finish=False
    )  # still running

    report = compare_experiment(mlflow_server, exp, tmp_path / "cmp")
    assert report["runs"] == {"grpo": grpo, "care": care}
    assert report["rows"] == [
        ["mathvista", 0.50, 0.55, "+5.00"],
        ["synthetic", 0.25, 0.375, "+12.50"],
        ["macro_avg", pytest.approx(0.375), pytest.approx(0.4625), "+8.75"],
    ]
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| synthetic | 0.2500 | 0.3750 | +12.50 |" in md and grpo in md and care in md
    html = (tmp_path / "cmp" / "comparison.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html
    png = (tmp_path / "cmp" / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["runs"]["care"] == care
    assert "| mathvista | 0.5000 | 0.5500 | +5.00 |" in capsys.readouterr().out

    client = MlflowClient(mlflow_server)
    rep = client.get_run(report["report_run_id"])
    assert rep.data.tags["care.report"] == "compare" and rep.info.status == "FINISHED"
    assert rep.data.metrics["delta/synthetic/accuracy"] == pytest.approx(12.5)
    logged = {f.path for f in client.list_artifacts(rep.info.run_id, "comparison")}
    assert logged == {
        f"comparison/{n}"
        for n in ("comparison.md", "comparison.html", "comparison.json", "learning_curves.png")
    }
    # the report run itself is never picked as a GRPO/CARE run
    again = compare_experiment(mlflow_server, exp, tmp_path / "cmp2", log_to_mlflow=False, quiet=True)
    assert again["runs"] == report["runs"]


def test_compare_names_what_is_missing(mlflow_server, tmp_path):
    _log_run(mlflow_server, "only-care", "care", {"synthetic": 0.5}, [0.1])
    with pytest.raises(CompareError, match=r"algorithm=\['grpo'\].*found for: \['care'\]"):
        compare_experiment(mlflow_server, "only-care", tmp_path, quiet=True)
    with pytest.raises(CompareError, match="not found"):
        compare_experiment(mlflow_server, "no-such-experiment", tmp_path, quiet=True)
