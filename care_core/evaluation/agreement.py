"""Agreement of ``eval.scoring: official`` with verdicts recorded by the benchmarks' own scripts.

The benchmark repositories publish model outputs scored by their own code: MathVista's
``results/*/output_*.json`` (``response``, the GPT ``extraction``, ``true_false``), MMMU-Pro's
``mmmu-pro/output/*.jsonl`` (``response``, ``options``, the parsed ``pred_indexs``), MATH-V's
``outputs/**/*.jsonl`` (``response``, ``model_answer``, ``correct``; golds in ``data/test.jsonl``) and MMMU's
``mmmu/example_outputs/<model>/<Subject>/output.json`` with ``total_val_output.json`` (the parsed
predictions). Download them yourself (nothing here reaches the network) and run::

    python -m care_core.evaluation.agreement mathvista results/*/output_*.json
    python -m care_core.evaluation.agreement mmmu_pro mmmu-pro/output/*.jsonl
    python -m care_core.evaluation.agreement mmmu mmmu/example_outputs/qwen_vl
    python -m care_core.evaluation.agreement mathvision data/test.jsonl outputs/*/*/*.jsonl

Items where the official script guessed a random option are left out of the MMMU counts (the
guess cannot be compared). Numbers measured with these files are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any

from care_core.rewards import official
from care_core.rewards.benchmarks import judge_item
from care_core.rewards.verifiers import LETTERS

_GUESS = "<guess>"


def _no_guess(item_id: Any, letters: list[str]) -> str:
    return _GUESS


def mathvista_agreement(files: list[Path]) -> dict[str, Any]:
    """``normalisation``: our official rule on the recorded GPT extraction vs ``true_false``;
    ``end_to_end``: our official mode from the raw response (the stand-in extractor) vs ``true_false``."""
    n = norm_ok = e2e_ok = strict_ok = 0
    for file in files:
        for pid, r in json.loads(Path(file).read_text()).items():
            if "true_false" not in r or "extraction" not in r or not isinstance(r.get("response"), str):
                continue
            choices = [str(c) for c in (r.get("choices") or [])]
            precision = int(float(r["precision"])) if r.get("precision") else None
            extraction = None if r["extraction"] is None else str(r["extraction"])
            pred = official.mathvista_normalize(
                extraction, choices, r["question_type"], r["answer_type"], precision
            )
            truth = bool(r["true_false"])
            mc = r["question_type"] == "multi_choice"
            item = {"id": f"mathvista/{pid}", "answer": LETTERS[choices.index(r["answer"])] if mc else r["answer"],
                    "answer_type": "choice" if mc else {"list": "text"}.get(r["answer_type"], r["answer_type"]),
                    "choices": choices if mc else [],
                    "meta": {"native_answer_type": r["answer_type"], "precision": precision,
                             "question_type": r["question_type"], "answer_text": r["answer"]}}  # fmt: skip
            n += 1
            norm_ok += (pred == r["answer"]) == truth
            e2e_ok += judge_item("mathvista", r["response"], item, "official") == truth
            strict_ok += judge_item("mathvista", r["response"], item, "strict") == truth
    return {"n": n, "normalisation": norm_ok, "end_to_end": e2e_ok, "strict_end_to_end": strict_ok}


def mmmu_pro_agreement(files: list[Path]) -> dict[str, Any]:
    """Our official parse vs the recorded ``pred_indexs`` (random guesses left out)."""
    n = ok = guessed = 0
    original = official.seeded_guess
    official.seeded_guess = _no_guess
    try:
        for file in files:
            for line in Path(file).read_text(encoding="utf-8").splitlines():
                r = json.loads(line) if line.strip() else {}
                if not isinstance(r.get("response"), str) or "pred_indexs" not in r:
                    continue
                choices = [str(c) for c in ast.literal_eval(str(r["options"]))]
                ours = official.mmmu_pro_choice(r["response"], choices, r["id"])
                if ours == _GUESS:
                    guessed += 1
                    continue
                n += 1
                ok += ours == r["pred_indexs"]
    finally:
        official.seeded_guess = original
    return {"n": n, "agree": ok, "guessed": guessed}


def mmmu_agreement(folders: list[Path]) -> dict[str, Any]:
    """Multiple choice: our official parse vs the recorded prediction; open: the recorded prediction
    is among our official candidates."""
    mc = mc_ok = guessed = open_n = open_ok = 0
    original = official.seeded_guess
    official.seeded_guess = _no_guess
    try:
        for folder in folders:
            parsed = json.loads((Path(folder) / "total_val_output.json").read_text())
            for file in sorted(Path(folder).glob("*/output.json")):
                for r in json.loads(file.read_text()):
                    theirs = parsed.get(r["id"])
                    if theirs is None:
                        continue
                    if r["question_type"] == "multiple-choice":
                        ours = official.mmmu_choice(
                            r["response"], [r["index2ans"][c] for c in r["all_choices"]], r["id"]
                        )
                        if ours == _GUESS:
                            guessed += 1
                            continue
                        mc += 1
                        mc_ok += ours == theirs
                    else:
                        open_n += 1
                        open_ok += str(theirs) in [str(c) for c in official.mmmu_open_parse(r["response"])]
    finally:
        official.seeded_guess = original
    return {
        "multiple_choice": mc,
        "multiple_choice_agree": mc_ok,
        "guessed": guessed,
        "open": open_n,
        "open_agree": open_ok,
    }


def mathvision_agreement(paths: list[Path]) -> dict[str, Any]:
    """``paths[0]``: MATH-V's ``data/test.jsonl`` (golds); the rest: output files. Our official
    extraction vs ``model_answer`` and our official verdict vs ``correct``."""
    gold = {}
    for line in Path(paths[0]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            gold[record["id"]] = record
    n = extraction_ok = verdict_ok = 0
    for file in paths[1:]:
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            r = json.loads(line) if line.strip() else {}
            if not isinstance(r.get("response"), str) or "correct" not in r or r.get("id") not in gold:
                continue
            g = gold[r["id"]]
            answer = str(g["answer"])
            value = g["options"][ord(answer) - ord("A")] if g["options"] else ""
            ours = official.mathvision_extract(r["response"])
            n += 1
            extraction_ok += ours == r.get("model_answer")
            verdict_ok += (
                official.mathvision_equal(ours, answer) or official.mathvision_equal(ours, value)
            ) == bool(r["correct"])
    return {"n": n, "extraction": extraction_ok, "verdict": verdict_ok}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=["mathvista", "mathvision", "mmmu_pro", "mmmu"])
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    fn = {
        "mathvista": mathvista_agreement,
        "mathvision": mathvision_agreement,
        "mmmu_pro": mmmu_pro_agreement,
        "mmmu": mmmu_agreement,
    }[args.benchmark]
    result = fn(args.paths)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
