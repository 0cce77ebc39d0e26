"""Image-blind ceiling: the best text-only answer rule learned on the training split, scored on held-out.

A policy that never looks at the image can still score by answering each question with the answer
it most often had in training. This script learns that rule on ``train.parquet`` -- the majority gold
answer per (family, normalised question text), falling back to the family's majority and then the
global majority for an unseen question -- and scores it on ``test.parquet`` with the project's own
reward (``care_core.rewards.score_response``, the ``accuracy`` the evaluation stage reports). An
image-grounded checkpoint must beat this number; one at or below it has learned the question priors
only. Ties between answers break towards the answer seen first in training.

    .venv/bin/python bench/blind_ceiling.py DATA_DIR          # DATA_DIR holds train.parquet, test.parquet
    .venv/bin/python bench/blind_ceiling.py --train T.parquet --test H.parquet
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

__all__ = ["blind_ceiling", "blind_rule", "normalise_question"]


def normalise_question(text: str) -> str:
    """Question text as the rule keys it: image placeholders dropped, lower case, single spaces."""
    text = re.sub(r"<image>|<\|image_pad\|>|<\|vision_start\|>|<\|vision_end\|>", " ", text or "")
    return " ".join(text.lower().split())


def _family(row: dict[str, Any]) -> str:
    meta = row.get("meta")
    if isinstance(meta, str) and meta:
        meta = json.loads(meta)
    if isinstance(meta, dict) and meta.get("family"):
        return str(meta["family"])
    return str(row.get("data_source") or "")


def _majority(answers: list[str]) -> str:
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)  # first seen among the tied


def blind_rule(train_rows: list[dict[str, Any]]) -> Any:
    """The text-only rule learned on ``train_rows``: a function row -> predicted answer string."""
    by_question: dict[tuple[str, str], list[str]] = {}
    by_family: dict[str, list[str]] = {}
    every: list[str] = []
    for row in train_rows:
        family, answer = _family(row), str(row["answer"])
        by_question.setdefault((family, normalise_question(row["problem"])), []).append(answer)
        by_family.setdefault(family, []).append(answer)
        every.append(answer)
    if not every:
        raise ValueError("blind_rule: no training rows")
    q_major = {k: _majority(v) for k, v in by_question.items()}
    f_major = {k: _majority(v) for k, v in by_family.items()}
    g_major = _majority(every)

    def predict(row: dict[str, Any]) -> str:
        family = _family(row)
        key = (family, normalise_question(row["problem"]))
        return q_major.get(key) or f_major.get(family) or g_major

    return predict


def _rows(table: Any) -> list[dict[str, Any]]:
    if isinstance(table, str | Path):
        import pyarrow.parquet as pq

        table = pq.read_table(table, columns=None)
    if hasattr(table, "to_pylist"):
        cols = [c for c in table.column_names if c != "images"]
        return table.select(cols).to_pylist()
    return list(table)


def blind_ceiling(train: Any, test: Any) -> float:
    """Held-out accuracy of the best text-only rule learned on ``train`` (rows, a pyarrow table or a
    parquet path), scored on ``test`` with the project's reward."""
    from care_core.rewards import score_response

    train_rows, test_rows = _rows(train), _rows(test)
    if not test_rows:
        raise ValueError("blind_ceiling: no held-out rows")
    predict = blind_rule(train_rows)
    correct = 0.0
    for row in test_rows:
        meta = row.get("meta")
        meta = json.loads(meta) if isinstance(meta, str) and meta else (meta or {})
        response = f"<think></think><answer>{predict(row)}</answer>"
        scored = score_response(
            response,
            row["answer"],
            row.get("answer_type") or "text",
            choices=row.get("choices"),
            precision=meta.get("precision"),
            data_source=row.get("data_source"),
        )
        correct += float(scored["accuracy"])
    return correct / len(test_rows)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", nargs="?", help="folder holding train.parquet and test.parquet")
    parser.add_argument("--train")
    parser.add_argument("--test")
    args = parser.parse_args(argv)
    if args.data_dir:
        train, test = Path(args.data_dir) / "train.parquet", Path(args.data_dir) / "test.parquet"
    elif args.train and args.test:
        train, test = Path(args.train), Path(args.test)
    else:
        parser.error("give DATA_DIR or both --train and --test")
    value = blind_ceiling(train, test)
    print(f"blind ceiling (best text-only rule, train -> held-out): {100 * value:.1f}%")
    return value


if __name__ == "__main__":
    main()
