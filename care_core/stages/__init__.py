"""One module per pipeline stage, each with one entry point ``run_<stage>``: read artifacts, call the
layers below (docs/architecture.md), write artifacts, return metrics (docs/interfaces.md §5).

ingest, sft, rollout, advantage, update, evaluate (``care_core.constants.STAGES``), plus score
(saved predictions), train (the in-process loop) and the retraining steps. The ``care`` command, the
KFP components and ``care train`` call the same functions. Nothing here is imported eagerly: a
stage's heavy dependencies load only when that stage runs.
"""
