"""Evaluation helpers: resumable prediction logs, batched decoding, result tables.

The stage itself is ``care_core.stages.evaluate.run_evaluate``; this package holds the pieces it
composes (no artifact layout decisions live here beyond the prediction-log file format).
"""

from care_core.evaluation.predictions import PredictionLog
from care_core.evaluation.report import BenchmarkResult, macro_average, results_markdown, summarize

__all__ = ["BenchmarkResult", "PredictionLog", "macro_average", "results_markdown", "summarize"]
