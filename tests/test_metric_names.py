"""One metric vocabulary (docs/interfaces.md §5): stages name their metrics ``namespace/quantity``
in the namespaces that table lists, and the KFP components and ``care train`` log them unchanged."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pytest

from care_core.config import build_recipe
from care_core.schema import ROLLOUT_SCHEMA
from care_core.stages.advantage import compute_advantages
from care_core.tracking.stage_log import stage_metrics

INTERFACES = Path(__file__).resolve().parents[1] / "docs" / "interfaces.md"


def documented_namespaces(text: str | None = None) -> set[str]:
    """Namespaces in the first column of the §5 table (```reward/`, `accuracy/` ...``)."""
    text = INTERFACES.read_text() if text is None else text
    section = text.split("## 5. Metrics", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)/`", row.split("|")[1])}


def _row(group: str, i: int, accuracy: float, direction: tuple[float, float]) -> dict:
    norm = math.hypot(*direction)
    return {
        "group_id": group, "sample_index": i, "source": "rollout", "replaces": -1, "prompt_ids": [1, 2],
        "response_ids": [3, 4, 5, 6], "response_text": "<think>a</think><answer>b</answer>",
        "old_logprobs": [-0.5 - 0.1 * i] * 4, "loss_mask": [1] * 4, "think_span": [0, 2], "answer_span": [2, 4],
        "embedding": [direction[0] / norm, direction[1] / norm], "reward": 0.9 * accuracy + 0.1, "accuracy": accuracy,
        "format": 1.0, "truncated": False,
    }  # fmt: skip


def _rollouts() -> pa.Table:
    mixed = [_row("g-mixed", i, acc, (1.0, 0.3 * i)) for i, acc in enumerate([1.0, 0.0, 0.0, 0.0])]
    wrong = [_row("g-wrong", i, 0.0, (0.2 * i, 1.0)) for i in range(4)]
    return pa.Table.from_pylist(mixed + wrong, schema=ROLLOUT_SCHEMA)


def test_the_table_lists_namespaces():
    names = documented_namespaces()
    assert {"reward", "actor", "advantages", "roles", "care", "perf", "eval"} <= names
    assert documented_namespaces(
        "## 5. Metrics\n| `a/`, `b/` | x |\n| `c/` | `not_this/` |\n## 6. x\n| `d/` |"
    ) == {"a", "b", "c"}


@pytest.mark.parametrize("algorithm", ["care", "grpo", "dr_grpo"])
def test_advantage_stage_metrics_use_the_vocabulary(algorithm):
    _, diag = compute_advantages(_rollouts(), build_recipe({"algorithm": {"name": algorithm}}), "r.parquet")
    metrics = diag["metrics"]
    assert all("/" in key for key in metrics), sorted(metrics)
    assert {key.split("/")[0] for key in metrics} <= documented_namespaces(), sorted(metrics)
    assert {"advantages/mean", "advantages/std", "roles/anchor", "perf/advantage_s"} <= set(metrics)
    if algorithm == "care":
        assert metrics["care/rescued_groups"] == 1 and metrics["roles/anchor"] == 1
        assert metrics["roles/pseudo_anchor"] == 1 and metrics["care/k_prime_mean"] == pytest.approx(3.0)


def test_care_train_and_the_components_log_the_same_names():
    """Both paths call ``stage_metrics``: a stage's ``metrics`` as they are, else its namespaced keys."""
    _, diag = compute_advantages(_rollouts(), build_recipe({}), "r.parquet")
    logged = stage_metrics("advantage", diag)
    assert set(logged) == {
        k for k, v in diag["metrics"].items() if v is not None and not isinstance(v, dict)
    } | {f"{k}/{sub}" for k, v in diag["metrics"].items() if isinstance(v, dict) for sub in v}
    assert stage_metrics("rollout", {"reward/mean": 0.5, "rollout/rows": 8}) == {
        "reward/mean": 0.5,
        "rollout/rows": 8.0,
    }
