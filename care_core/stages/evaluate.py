"""Evaluation stage: greedy batched decoding on each configured benchmark, rule-based scoring,
per-benchmark accuracy with per-category breakdowns, the macro average over the configured
subset of the paper's six benchmarks, and the synthetic held-out suite as its own entry.

Artifacts under ``out_dir``:

* ``<benchmark>/predictions.jsonl`` — one line per scored item (``id``, ``response``,
  ``correct``, ``format``, ``categories``), appended and fsynced after every batch. A killed run
  restarted with the same ``out_dir`` decodes only the items not in it (resume).
* ``<benchmark>/settings.json`` — model + decoding fingerprint; predictions made under other
  settings are discarded rather than mixed.
* ``results.json`` — the returned dict; ``results.md`` — the Markdown table.

Scoring follows ``eval.scoring`` (``official``: each benchmark's own rule; ``strict``: the project's,
see :mod:`care_core.rewards.benchmarks`); a record scored under the other mode is re-scored from its
stored response, without decoding again.

Bad benchmark rows: with ``data.bad_rows=skip`` a row that cannot be read (ingest rules) or whose
prompt cannot be built (undecodable image, marks that do not match its images) is left out and
counted: ``benchmarks.<name>.skipped`` (with the reasons under ``skipped_rows``) in
``results.json``, and ``eval/<name>/skipped_rows`` among the metrics. With ``error`` (the default)
the first bad row stops the evaluation with its file, row and field.

Metrics come back flat under ``"metrics"`` (``eval/<benchmark>/accuracy``, ``eval/macro_avg``,
...) for the caller to log to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from care_core.config import BenchmarkConfig, Recipe
from care_core.evaluation.decode import DecodeSettings, batched
from care_core.evaluation.predictions import PredictionLog
from care_core.evaluation.prompts import benchmark_row
from care_core.evaluation.report import (
    SIX_BENCHMARKS,
    BenchmarkResult,
    macro_average,
    results_markdown,
    summarize,
)

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
MAX_LISTED_SKIPS = 50  # reasons kept in results.json per benchmark (the count is always complete)
KNOWN_BENCHMARKS = (*SIX_BENCHMARKS, SYNTHETIC)

# rows (example-row dicts) -> one response string per row
GenerateFn = Callable[[list[dict[str, Any]]], list[str]]


# --------------------------------------------------------------------------- rows
def load_benchmark_rows(
    bench: BenchmarkConfig,
    recipe: Recipe,
    data_dir: str | Path | None = None,
    skipped: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Example rows of one benchmark, in a stable order, cut to ``bench.limit``.

    ``synthetic``: ``data_dir/test.parquet`` when given, else the generated test split.
    Others: the source adapter of the same name, from ``bench.path`` (hub layout) or ``bench.hub_id``;
    bad rows follow ``recipe.data.bad_rows`` (``skip``: left out, described in ``skipped``).
    """
    if bench.name == SYNTHETIC:
        rows = _synthetic_rows(bench, recipe, data_dir)
    elif bench.name in SIX_BENCHMARKS:
        from care_core.data.sources import load_source_rows  # noqa: PLC0415 (heavy, optional deps)

        if not (bench.path or bench.hub_id):
            logger.info("%s: no path given; loading its default hub id (needs the network)", bench.name)
        rows = load_source_rows(
            bench.name,
            path=bench.path,
            hub_id=bench.hub_id,
            split=bench.split,
            config_name=bench.config_name,
            limit=bench.limit,
            bad_rows=recipe.data.bad_rows,
            skipped=skipped,
        )
    else:
        raise ValueError(
            f"eval.benchmarks: unknown benchmark {bench.name!r}; known: {list(KNOWN_BENCHMARKS)}"
        )
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"benchmark {bench.name}: duplicate item id {dup!r}")
    return rows[: bench.limit] if bench.limit is not None else rows


def _synthetic_rows(
    bench: BenchmarkConfig, recipe: Recipe, data_dir: str | Path | None
) -> list[dict[str, Any]]:
    candidates = []
    if bench.path:
        candidates.append(Path(bench.path))
    if data_dir is not None:
        candidates.append(Path(data_dir) / "test.parquet")
    for path in candidates:
        if path.is_dir():
            path = path / "test.parquet"
        if path.is_file():
            from care_core.schema import read_examples  # noqa: PLC0415

            return read_examples(path).to_pylist()
        raise FileNotFoundError(f"synthetic eval data not found: {path}")
    from care_core.data.synthetic import generate_rows  # noqa: PLC0415

    return generate_rows(recipe.data.synthetic, "test", image_size=recipe.model.tiny.image_size)


# --------------------------------------------------------------------------- scoring
def score_item(name: str, row: dict[str, Any], response: str, recipe: Recipe) -> dict[str, Any]:
    """One prediction record: ``correct`` and ``format`` (0/1), ``categories`` (dimension -> values)."""
    from care_core.rewards import format_reward, get_benchmark_scorer, score_response  # noqa: PLC0415

    fmt = float(format_reward(response))
    if name == SYNTHETIC:
        meta = json.loads(row["meta"]) if row.get("meta") else {}
        scored = score_response(
            response,
            row["answer"],
            row["answer_type"],
            choices=row.get("choices"),
            precision=meta.get("precision"),
            data_source=row.get("data_source"),
            format_weight=recipe.reward.format_weight,
            fallback=recipe.reward.fallback,
            timeout_s=recipe.reward.math_verify_timeout_s,
        )
        correct = float(scored["accuracy"])
        categories = {k: [str(meta[k])] for k in ("family", "difficulty") if k in meta}
    else:
        result = get_benchmark_scorer(name)([{**row, "response": response}], recipe.eval.scoring)
        correct = float(result["per_item"][0])
        categories = {dim: sorted(cells) for dim, cells in result["by_category"].items()}
    return {
        "id": row["id"],
        "answer": row["answer"],
        "response": response,
        "correct": correct,
        "format": fmt,
        "categories": categories,
        "scoring": recipe.eval.scoring,
    }


# --------------------------------------------------------------------------- decoding
def make_generate_fn(recipe: Recipe, model_path: str, settings: DecodeSettings) -> GenerateFn:
    """Load the policy once and return a rows -> responses function (greedy unless temperature > 0).
    ``rollout.engine: vllm`` decodes on vLLM (``care_core.rollout.vllm_engine.make_generate_fn``)."""
    if recipe.rollout.engine == "vllm":
        from care_core.rollout.vllm_engine import make_generate_fn as vllm_generate_fn  # noqa: PLC0415

        return vllm_generate_fn(recipe, model_path, settings)
    from care_core.data.prompting import encode_prompts  # noqa: PLC0415
    from care_core.evaluation.decode import generate_batch  # noqa: PLC0415
    from care_core.models import load_policy  # noqa: PLC0415

    model, processor = load_policy(
        model_path,
        dtype=recipe.model.dtype,
        attn_implementation=recipe.model.attn_implementation,
        cache_dir=recipe.model.cache_dir,
    )

    def generate(rows: list[dict[str, Any]]) -> list[str]:
        batch = encode_prompts(processor, rows, recipe.data)
        return generate_batch(model, processor, batch, settings)

    return generate


def _fingerprint(model_path: str, settings: DecodeSettings, recipe: Recipe, name: str) -> dict[str, Any]:
    model_id = str(model_path)
    weights = Path(model_path) / "model.safetensors"
    if weights.is_file():  # same folder rewritten by a later round must not resume old predictions
        stat = weights.stat()
        model_id += f"@{stat.st_size}:{int(stat.st_mtime)}"
    blob = {
        "benchmark": name,
        "model": model_id,
        "decode": settings.__dict__,
        "system_prompt": recipe.data.system_prompt,
        "prompt_template": recipe.data.prompt_template,
    }
    return {**blob, "hash": hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]}


def _open_log(bench_dir: Path, fingerprint: dict[str, Any]) -> PredictionLog:
    settings_file = bench_dir / "settings.json"
    log = PredictionLog(bench_dir / "predictions.jsonl")
    if settings_file.is_file():
        old = json.loads(settings_file.read_text())
        if old.get("hash") != fingerprint["hash"]:
            logger.warning(
                "%s: settings changed (%s -> %s); discarding old predictions",
                bench_dir,
                old.get("hash"),
                fingerprint["hash"],
            )
            shutil.rmtree(bench_dir)
    bench_dir.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
    log.load()
    return log


def evaluate_benchmark(
    name: str,
    rows: Sequence[dict[str, Any]],
    generate: GenerateFn,
    log: PredictionLog,
    recipe: Recipe,
    batch_size: int,
    skipped: list[str] | None = None,
) -> tuple[BenchmarkResult, dict[str, float]]:
    """Decode and score the rows not in ``log`` (batch by batch, appended as they finish), then
    summarise over ``rows`` less the skipped ones. Returns the result and timing stats.

    With ``recipe.data.bad_rows == "skip"`` a batch whose prompts cannot be built is retried row by
    row and the rows that still fail are left out (their reasons appended to ``skipped``)."""
    done = log.done_ids()
    pending = [row for row in rows if row["id"] not in done]
    logger.info(
        "%s: %d items, %d already done, %d to decode", name, len(rows), len(rows) - len(pending), len(pending)
    )
    _rescore_other_mode(name, rows, log, recipe)
    skipped = skipped if skipped is not None else []
    dropped: set[str] = set()
    start = time.perf_counter()
    for chunk in tqdm(batched(pending, batch_size), desc=f"eval {name}", disable=not pending, leave=False):
        for part, responses in _generate_chunk(
            name, list(chunk), generate, recipe.data.bad_rows, skipped, dropped
        ):
            log.append(score_item(name, row, text, recipe) for row, text in zip(part, responses, strict=True))
    seconds = time.perf_counter() - start
    result = summarize(name, (log.records[row["id"]] for row in rows if row["id"] not in dropped))
    return result, {
        "decoded": float(len(pending) - len(dropped)),
        "resumed": float(len(rows) - len(pending)),
        "seconds": seconds,
    }


def _generate_chunk(
    name: str,
    chunk: list[dict[str, Any]],
    generate: GenerateFn,
    bad_rows: str,
    skipped: list[str],
    dropped: set[str],
) -> list[tuple[list[dict[str, Any]], list[str]]]:
    """Responses for ``chunk``: ``[(rows, responses)]``; under ``skip`` bad rows are dropped one by one."""
    from care_core.schema import SchemaError  # noqa: PLC0415

    def run(part: list[dict[str, Any]]) -> list[str]:
        responses = generate([benchmark_row(name, row) for row in part])
        if len(responses) != len(part):
            raise RuntimeError(
                f"{name}: generate returned {len(responses)} responses for {len(part)} prompts"
            )
        return responses

    try:
        return [(chunk, run(chunk))]
    except SchemaError:
        if bad_rows != "skip":
            raise
    out = []
    for row in chunk:
        try:
            out.append(([row], run([row])))
        except SchemaError as exc:
            logger.warning("%s: skipping row id=%s: %s", name, row["id"], exc)
            skipped.append(f"{name}: {exc}")
            dropped.add(row["id"])
    return out


def _rescore_other_mode(
    name: str, rows: Sequence[dict[str, Any]], log: PredictionLog, recipe: Recipe
) -> None:
    """Re-score stored predictions made under another ``eval.scoring`` mode (no decoding)."""
    wanted = recipe.eval.scoring
    stale = [
        row
        for row in rows
        if row["id"] in log.records
        and log.records[row["id"]].get("scoring", wanted) != wanted
        and name != SYNTHETIC
    ]
    if not stale:
        return
    logger.info("%s: re-scoring %d stored predictions under scoring=%s", name, len(stale), wanted)
    log.rewrite(score_item(name, row, str(log.records[row["id"]]["response"]), recipe) for row in stale)


# --------------------------------------------------------------------------- stage
def run_evaluate(
    recipe: Recipe,
    model_path: str | Path | None,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    generate_fn: GenerateFn | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_path`` (local folder, hub id or ``tiny://``; None: ``recipe.model``) on every
    ``recipe.eval.benchmarks`` entry. ``generate_fn`` replaces model decoding (tests, external engines).

    Returns ``{"benchmarks": {name: result}, "macro_avg", "metrics": {flat}, "timing", ...}`` and
    writes it to ``out_dir/results.json`` plus ``out_dir/results.md``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = recipe.eval
    settings = DecodeSettings(
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=recipe.train.seed,
    )
    if model_path is None:
        from care_core.models import resolve_model_path  # noqa: PLC0415

        model_path = resolve_model_path(recipe.model)
    model_path = str(model_path)
    if generate_fn is None:
        from care_core.models.loading import check_model_path  # noqa: PLC0415

        check_model_path(model_path, "--model")  # before any benchmark is read or model loaded
    names = [b.name for b in cfg.benchmarks]
    if len(set(names)) != len(names):
        raise ValueError(f"eval.benchmarks: a benchmark is listed twice: {names}")

    results: dict[str, BenchmarkResult] = {}
    timing: dict[str, dict[str, float]] = {}
    generate = generate_fn
    for bench in cfg.benchmarks:
        skipped: list[str] = []
        rows = load_benchmark_rows(bench, recipe, data_dir, skipped=skipped)
        log = _open_log(
            out_dir / bench.name,
            _fingerprint(model_path if generate_fn is None else "injected", settings, recipe, bench.name),
        )
        if generate is None and len(log.done_ids() & {r["id"] for r in rows}) < len(rows):
            generate = make_generate_fn(recipe, model_path, settings)
        results[bench.name], timing[bench.name] = evaluate_benchmark(
            bench.name, rows, generate or _unused, log, recipe, cfg.batch_size, skipped=skipped
        )
        results[bench.name].skipped = len(skipped)
        results[bench.name].skipped_rows = skipped[:MAX_LISTED_SKIPS]
        if skipped:
            logger.warning("%s: %d bad row(s) skipped (data.bad_rows=skip)", bench.name, len(skipped))
        logger.info(
            "%s: accuracy %.4f over %d items", bench.name, results[bench.name].accuracy, results[bench.name].n
        )

    macro = macro_average(results)
    metrics: dict[str, float] = {}
    for name, result in results.items():
        metrics[f"eval/{name}/accuracy"] = result.accuracy
        metrics[f"eval/{name}/format_rate"] = result.format_rate
        metrics[f"eval/{name}/n"] = float(result.n)
        metrics[f"eval/{name}/skipped_rows"] = float(result.skipped)
    if macro is not None:
        metrics["eval/macro_avg"] = macro
    summary = {
        "model_path": model_path,
        "decode": settings.__dict__,
        "benchmarks": {name: r.to_dict() for name, r in results.items()},
        "macro_avg": macro,
        "macro_over": [n for n in SIX_BENCHMARKS if n in results],
        "scoring": cfg.scoring,
        "skipped_rows": sum(r.skipped for r in results.values()),
        "metrics": metrics,
        "timing": timing,
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    (out_dir / "results.md").write_text(results_markdown(results, macro, title=f"Evaluation of {model_path}"))
    return summary


def _unused(rows: list[dict[str, Any]]) -> list[str]:
    raise RuntimeError("internal: decoding requested although every item was already predicted")
