"""``care score``: score saved predictions (JSON Lines) without a model.

Each input line is an object with ``response``, ``answer``, ``answer_type`` and optionally
``choices``, ``precision``, ``data_source``, ``id``, ``meta`` (and benchmark category fields).
Every line is written back (to ``out_path``) with ``reward``, ``accuracy`` and ``format`` added.
When ``benchmark`` is given, or a line's ``data_source`` names one of the six benchmarks
(``mathvista`` or ``mathvista/...``), that line's ``accuracy`` follows the benchmark's rules
(:mod:`care_core.rewards.benchmarks`) and the aggregate holds the benchmark's score with its
category breakdown; otherwise the answer-type verifiers decide. Benchmark lines are scored under
``scoring`` (``official``: the benchmark's own rule, the default; ``strict``: the project's), else
``recipe.eval.scoring``. Reward settings come from ``recipe.reward`` when a recipe is given. A
malformed line raises ``ValueError`` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from care_core.config import Recipe, RewardConfig
from care_core.rewards import score_response
from care_core.rewards.benchmarks import (
    BENCHMARKS,
    benchmark_name,
    check_scoring,
    get_benchmark_scorer,
    judge_item,
    macro_average,
)
from care_core.schema import ANSWER_TYPES


def _check_line(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("response", "answer", "answer_type"):
        if key not in record:
            raise ValueError(f"{where}: missing field {key!r}")
    if not isinstance(record["response"], str):
        raise ValueError(f"{where}: field 'response' must be a string")
    if not isinstance(record["answer"], str | int | float) or isinstance(record["answer"], bool):
        raise ValueError(f"{where}: field 'answer' must be a string or number")
    if record["answer_type"] not in ANSWER_TYPES:
        raise ValueError(f"{where}: field 'answer_type'={record['answer_type']!r} not in {ANSWER_TYPES}")
    choices = record.get("choices")
    if choices is not None and not (
        isinstance(choices, list) and all(isinstance(c, str | int | float) for c in choices)
    ):
        raise ValueError(f"{where}: field 'choices' must be a list of strings")
    precision = record.get("precision")
    if precision is not None and (not isinstance(precision, int | float) or isinstance(precision, bool)):
        raise ValueError(f"{where}: field 'precision' must be a number")
    return record


def read_predictions(in_path: str | Path) -> list[dict[str, Any]]:
    """Parse and check every line of a predictions file (blank lines are skipped)."""
    path = Path(in_path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON: {exc}") from None
            records.append(_check_line(record, where))
    return records


def run_score(
    in_path: str | Path,
    out_path: str | Path | None = None,
    benchmark: str | None = None,
    recipe: Recipe | None = None,
    scoring: str | None = None,
) -> dict[str, Any]:
    """Score ``in_path``; write scored lines to ``out_path`` (if given); return the aggregate dict."""
    if benchmark is not None and benchmark not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {sorted(BENCHMARKS)}")
    scoring = check_scoring(scoring or (recipe.eval.scoring if recipe is not None else "official"))
    reward_cfg = recipe.reward if recipe is not None else RewardConfig()
    records = read_predictions(in_path)
    scored: list[dict[str, Any]] = []
    per_benchmark: dict[str, list[dict[str, Any]]] = {}
    by_source: dict[str, dict[str, float]] = {}
    for record in records:
        answer = str(record["answer"])
        choices = [str(c) for c in record.get("choices") or []] or None
        precision = record.get("precision")
        scores = score_response(
            record["response"],
            answer,
            record["answer_type"],
            choices=choices,
            precision=int(precision) if precision is not None else None,
            data_source=record.get("data_source"),
            format_weight=reward_cfg.format_weight,
            fallback=reward_cfg.fallback,
            timeout_s=reward_cfg.math_verify_timeout_s,
        )
        bench = benchmark or benchmark_name(record.get("data_source"))
        if bench is not None:
            item = {**record, "answer": answer, "choices": choices or []}
            accuracy = float(judge_item(bench, record["response"], item, scoring))
            lam = reward_cfg.format_weight
            scores = {"reward": (1 - lam) * accuracy + lam * scores["format"], "accuracy": accuracy,
                      "format": scores["format"]}  # fmt: skip
            per_benchmark.setdefault(bench, []).append(item)
        scored.append({**record, **scores})
        cell = by_source.setdefault(
            str(record.get("data_source") or bench or "unknown"), {"n": 0, "correct": 0.0}
        )
        cell["n"] += 1
        cell["correct"] += scores["accuracy"]
    if out_path is not None:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as handle:
            for row in scored:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    n = len(scored)
    aggregate: dict[str, Any] = {
        "n": n,
        "accuracy": sum(r["accuracy"] for r in scored) / n if n else 0.0,
        "reward": sum(r["reward"] for r in scored) / n if n else 0.0,
        "format": sum(r["format"] for r in scored) / n if n else 0.0,
        "by_data_source": {k: {**v, "accuracy": v["correct"] / v["n"]} for k, v in sorted(by_source.items())},
    }
    if per_benchmark:
        results = {}
        for name, items in per_benchmark.items():
            result = get_benchmark_scorer(name)(items, scoring)
            results[name] = {k: v for k, v in result.items() if k not in ("per_item", "ids")}
        aggregate["benchmarks"] = results
        aggregate["macro_average"] = macro_average(results)
        aggregate["scoring"] = scoring
    if out_path is not None:
        aggregate["out_path"] = str(out_path)
    return aggregate
