"""care_core.evaluation.agreement reads the benchmarks' published output formats (tiny files in
those formats, our own records) and counts agreement with the recorded official verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from care_core.evaluation.agreement import main


def test_mathvista_agreement(tmp_path: Path) -> None:
    records = {
        "1": {"choices": None, "precision": None, "answer": "7", "question_type": "free_form", "answer_type": "integer",
              "response": "There are 7 cubes.", "extraction": "7.4", "true_false": True},  # official truncation
        "2": {"choices": ["red", "blue"], "precision": None, "answer": "blue", "question_type": "multi_choice",
              "answer_type": "text", "response": "The answer is (B).", "extraction": "B", "true_false": True},
        "3": {"choices": None, "precision": 1.0, "answer": "1.5", "question_type": "free_form", "answer_type": "float",
              "response": "so 1.4", "extraction": "1.4", "true_false": False},
    }  # fmt: skip
    path = tmp_path / "output_x.json"
    path.write_text(json.dumps(records))
    assert main(["mathvista", str(path)]) == {
        "n": 3,
        "normalisation": 3,
        "end_to_end": 3,
        "strict_end_to_end": 3,
    }


def test_mmmu_pro_agreement_leaves_guesses_out(tmp_path: Path) -> None:
    options = str(["a", "b", "c", "d"])
    lines = [
        {"id": "test_Art_1", "options": options, "response": "Reasoning.\nAnswer: C", "pred_indexs": "C"},
        {"id": "test_Art_2", "options": options, "response": "Answer: **B**", "pred_indexs": "B"},
        {"id": "test_Art_3", "options": options, "response": "no idea", "pred_indexs": "A"},  # a random guess
        {"id": "test_Art_4", "options": options, "response": "(A)", "pred_indexs": "D"},  # disagrees
    ]
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["mmmu_pro", str(path)]) == {"n": 3, "agree": 2, "guessed": 1}


def test_mmmu_agreement(tmp_path: Path) -> None:
    (tmp_path / "Math").mkdir()
    records = [
        {"id": "validation_Math_1", "question_type": "multiple-choice", "answer": "B", "all_choices": ["A", "B"],
         "index2ans": {"A": "$3,000", "B": "$4,500"}, "response": "(B)"},
        {"id": "validation_Math_2", "question_type": "open", "answer": "1/64", "all_choices": [], "index2ans": {},
         "response": "so the ratio is 1/64"},
    ]  # fmt: skip
    (tmp_path / "Math" / "output.json").write_text(json.dumps(records))
    (tmp_path / "total_val_output.json").write_text(
        json.dumps({"validation_Math_1": "B", "validation_Math_2": "1/64"})
    )
    assert main(["mmmu", str(tmp_path)]) == {
        "multiple_choice": 1,
        "multiple_choice_agree": 1,
        "guessed": 0,
        "open": 1,
        "open_agree": 1,
    }


def test_mathvision_agreement(tmp_path: Path) -> None:
    gold = [
        {"id": "1", "answer": "C", "options": ["1", "2", "3", "4", "5"]},
        {"id": "2", "answer": "12", "options": []},
    ]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold))
    outputs = [
        {"id": "1", "response": "The third one.\n\\boxed{C}", "model_answer": "c", "correct": True},
        {
            "id": "2",
            "response": "so it is \\boxed{12.004}",
            "model_answer": "12.004",
            "correct": True,
        },  # 2 decimals
        {
            "id": "2",
            "response": "\\boxed{12 \\text{ cm}}",
            "model_answer": "12{cm}",
            "correct": True,
        },  # disagrees
    ]
    (tmp_path / "out.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outputs))
    assert main(["mathvision", str(tmp_path / "test.jsonl"), str(tmp_path / "out.jsonl")]) == {
        "n": 3,
        "extraction": 3,
        "verdict": 2,
    }
