"""Rule-based scorers of the six evaluation benchmarks (no GPT judge).

Each scorer takes items (dicts holding ``response`` plus the example-row fields ``id``,
``answer``, ``answer_type``, ``choices``, ``meta`` (JSON string or dict); a top-level
``precision`` or category field also counts) and returns::

    {"benchmark", "n", "correct", "accuracy", "per_item": [0/1, ...], "ids": [...],
     "by_category": {dimension: {value: {"n", "correct", "accuracy"}}}}

Rules chosen (answers are first taken from ``<answer>``/``\\boxed{}`` by
:func:`care_core.rewards.extraction.extract_answer`, which replaces the GPT extractors):

* ``mathvista``: multiple choice: the named letter, else the option text, else the option closest
  by edit distance (MathVista's own fallback); integer: an integral reading equal to the answer;
  float: both rounded to the item's ``precision``; text: normalised exact match; list: element-wise.
  Categories: ``task``, ``skills`` (an item counts once per skill), ``question_type``.
* ``mathverse``: multiple choice by letter or option text; free form by number / math-verify
  equivalence. Categories: ``problem_version``, ``subject``.
* ``mathvision``: the last ``\\boxed{}`` (else the extracted answer) compared with both the letter
  and the option text; numeric/LaTeX answers by equivalence. Categories: ``subject``, ``level``.
* ``mmmu``, ``mmmu_pro_standard``, ``mmmu_pro_vision``: MMMU's rule-based multiple-choice parse
  (``(A)``, then a bare ``A``, then option text for responses over five words; several candidates:
  the one mentioned last) and its open-answer match (numbers and normalised strings after
  "answer/is/so/thus/therefore" indicators; a gold string contained in a candidate counts).
  Deterministic: where MMMU picks a random option, the item is wrong. MMMU-Pro first reads an
  ``Answer: X`` line as its official CoT protocol does. Categories: ``subject``, ``discipline``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from typing import Any

from care_core.rewards.extraction import _answer_content, extract_answer, last_boxed
from care_core.rewards.verifiers import (
    LETTERS,
    choice_letter,
    normalize_text,
    number_readings,
    numbers_equal,
    truth_letter,
    verify_expression,
)

MMMU_DISCIPLINES: dict[str, tuple[str, ...]] = {
    "Art & Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health & Medicine": (
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ),
    "Humanities & Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech & Engineering": (
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ),
}
_SUBJECT_TO_DISCIPLINE = {s.lower(): d for d, subjects in MMMU_DISCIPLINES.items() for s in subjects}


# --------------------------------------------------------------------------- item helpers
def item_meta(item: dict[str, Any]) -> dict[str, Any]:
    """The item's ``meta`` as a dict (JSON string or dict), with top-level extras layered on top."""
    raw = item.get("meta")
    if isinstance(raw, str) and raw.strip():
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"item {item.get('id')!r}: field 'meta' is not JSON: {exc}") from None
    elif isinstance(raw, dict):
        meta = dict(raw)
    else:
        meta = {}
    for key in ("precision", "category", "subject", "task", "skills", "problem_version", "level", "question_type"):
        if item.get(key) is not None:
            meta[key] = item[key]
    return meta


def _choices(item: dict[str, Any]) -> list[str]:
    return [str(c) for c in (item.get("choices") or [])]


def _precision(meta: dict[str, Any]) -> int | None:
    value = meta.get("precision")
    if value is None or value == "":
        return None
    return int(float(value))


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _closest_option(pred: str, choices: list[str]) -> str | None:
    """MathVista's fallback: the option with the smallest edit distance (first on ties)."""
    if not choices:
        return None
    norm = normalize_text(pred)[:500]
    distances = [_edit_distance(norm, normalize_text(c)[:500]) for c in choices]
    return LETTERS[distances.index(min(distances))]


def _parse_list(text: str) -> list[float] | None:
    s = text.strip().strip("[]()")
    parts = [p for p in re.split(r"\s*,\s*", s) if p]
    values = []
    for part in parts:
        readings = number_readings(part)
        if not readings:
            return None
        values.append(readings[0])
    return values or None


# --------------------------------------------------------------------------- judges
def judge_mathvista(response: str, item: dict[str, Any]) -> bool:
    meta = item_meta(item)
    choices = _choices(item)
    native = meta.get("native_answer_type") or item.get("answer_type")
    if item.get("answer_type") == "choice" or meta.get("question_type") == "multi_choice":
        pred = extract_answer(response, "last_line")
        if pred is None:
            return False
        letter = choice_letter(pred, choices) or _closest_option(pred, choices)
        return letter is not None and letter == truth_letter(str(item["answer"]), choices)
    answer = str(item["answer"])
    pred = extract_answer(response, "last_number" if native in ("integer", "float") else "last_line")
    if pred is None:
        return False
    if native == "integer":
        return any(abs(v - round(v)) < 1e-9 for v in number_readings(pred)) and numbers_equal(
            pred, answer, integer=True
        )
    if native == "float":
        return numbers_equal(pred, answer, precision=_precision(meta))
    if native == "list":
        truth, guess = _parse_list(answer), _parse_list(pred)
        return truth is not None and guess is not None and len(truth) == len(guess) and all(
            abs(a - b) < 1e-9 for a, b in zip(truth, guess, strict=True)
        )
    return normalize_text(pred) == normalize_text(answer)


def judge_mathverse(response: str, item: dict[str, Any]) -> bool:
    choices = _choices(item)
    answer = str(item["answer"])
    if item.get("answer_type") == "choice":
        pred = extract_answer(response, "last_line")
        return pred is not None and choice_letter(pred, choices) == truth_letter(answer, choices)
    pred = extract_answer(response, "last_number")
    return verify_expression(pred, answer)


def judge_mathvision(response: str, item: dict[str, Any]) -> bool:
    choices = _choices(item)
    answer = str(item["answer"])
    pred = last_boxed(response)
    if pred is None:
        pred = extract_answer(response, "last_line" if choices else "last_number")
    if pred is None:
        return False
    if choices:
        truth = truth_letter(answer, choices)
        if truth is None:
            return normalize_text(pred) == normalize_text(answer)
        if choice_letter(pred, choices) == truth:
            return True
        return normalize_text(pred) == normalize_text(choices[LETTERS.index(truth)])
    return verify_expression(pred, answer)


def mmmu_parse_choice(response: str, choices: list[str]) -> str | None:
    """MMMU's rule-based multiple-choice parse, deterministic (None where MMMU would guess)."""
    letters = LETTERS[: len(choices)] if choices else LETTERS[:4]
    text = " " + response.strip().strip(",.!?;:'\"") + " "
    text = re.sub(r"([,.!?;:'\"])", r" \1 ", text)
    positions: dict[str, int] = {}
    for letter in letters:
        index = text.rfind(f"({letter})")
        if index != -1:
            positions[letter] = index
    if not positions:
        for letter in letters:
            index = text.rfind(f" {letter} ")
            if index != -1:
                positions[letter] = index
    if not positions and len(response.split()) > 5:
        lowered = text.lower()
        for letter, option in zip(letters, choices, strict=False):
            index = lowered.rfind(option.lower().strip()) if option.strip() else -1
            if index != -1:
                positions[letter] = index
    if not positions:
        return None
    return max(positions, key=lambda letter: positions[letter])


_OPEN_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def mmmu_open_candidates(response: str) -> list[Any]:
    """MMMU-style open-answer candidates: key phrases after indicators, and the numbers in them."""
    text = response.strip().strip(".").lower()
    sentences = [s for s in re.split(r"\.\s+|\n", text) if s.strip()] or [text]
    keys: list[str] = []
    for index, sentence in enumerate(sentences):
        indicators = _OPEN_INDICATORS + (("=",) if index == len(sentences) - 1 else ())
        best = None
        for indicator in indicators:
            at = sentence.rfind(indicator)
            if at != -1:
                tail = sentence[at + len(indicator) :].strip()
                if tail and (best is None or len(tail) < len(best)):
                    best = tail
        if best and best not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(best)
    if not keys:
        keys = [text]
    candidates: list[Any] = []
    for key in keys:
        candidates.append(normalize_text(key))
        for number in re.findall(r"-?\d+(?:,\d{3})*(?:\.\d+)?", key):
            readings = number_readings(number)
            if readings:
                candidates.append(round(readings[0], 2))
    return candidates


def _gold_list(answer: str) -> list[str]:
    s = answer.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            value = ast.literal_eval(s)
            if isinstance(value, list):
                return [str(v) for v in value]
        except (ValueError, SyntaxError):
            pass
    return [s]


def mmmu_open_match(response: str, answer: str) -> bool:
    candidates = mmmu_open_candidates(response)
    for gold in _gold_list(answer):
        readings = number_readings(gold)
        if readings:
            if round(readings[0], 2) in [c for c in candidates if isinstance(c, float)]:
                return True
            continue
        norm = normalize_text(gold)
        if norm and any(isinstance(c, str) and norm in c for c in candidates):
            return True
    return False


def _mmmu_region(response: str) -> str:
    content = _answer_content(response)
    if content is not None:
        return last_boxed(content) or content
    return last_boxed(response) or response


def judge_mmmu(response: str, item: dict[str, Any]) -> bool:
    choices = _choices(item)
    region = _mmmu_region(response)
    if item.get("answer_type") == "choice":
        letter = mmmu_parse_choice(region, choices)
        return letter is not None and letter == truth_letter(str(item["answer"]), choices)
    return mmmu_open_match(region, str(item["answer"]))


_ANSWER_LINE_RE = re.compile(r"Answer\s*:\s*\(?([A-J])\)?(?![A-Za-z])")


def judge_mmmu_pro(response: str, item: dict[str, Any]) -> bool:
    choices = _choices(item)
    truth = truth_letter(str(item["answer"]), choices)
    if _answer_content(response) is None and last_boxed(response) is None:
        lines = _ANSWER_LINE_RE.findall(response)
        if lines:
            return lines[-1] == truth
    letter = mmmu_parse_choice(_mmmu_region(response), choices)
    return letter is not None and letter == truth


# --------------------------------------------------------------------------- categories
def _mmmu_subject(item: dict[str, Any], meta: dict[str, Any]) -> str:
    subject = meta.get("subject")
    if not subject:
        parts = str(item.get("id", "")).rsplit("/", 1)[-1].split("_")
        subject = "_".join(parts[1:-1]) if len(parts) > 2 else "unknown"
    return str(subject)


def _mmmu_categories(item: dict[str, Any], meta: dict[str, Any]) -> dict[str, list[str]]:
    subject = _mmmu_subject(item, meta)
    discipline = _SUBJECT_TO_DISCIPLINE.get(subject.replace(" ", "_").lower(), "unknown")
    return {"subject": [subject], "discipline": [discipline]}


def _categories_from(keys: tuple[str, ...]) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, list[str]]]:
    def categorize(item: dict[str, Any], meta: dict[str, Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key in keys:
            value = meta.get(key)
            if value is None or value == "" or value == []:
                continue
            out[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        return out

    return categorize


# --------------------------------------------------------------------------- scorers
def _score(
    name: str,
    judge: Callable[[str, dict[str, Any]], bool],
    categorize: Callable[[dict[str, Any], dict[str, Any]], dict[str, list[str]]],
    items: list[dict[str, Any]],
) -> dict[str, Any]:
    per_item: list[int] = []
    ids: list[str] = []
    by_category: dict[str, dict[str, dict[str, Any]]] = {}
    for index, item in enumerate(items):
        if "response" not in item or "answer" not in item:
            raise ValueError(f"{name} item {index} (id={item.get('id')!r}): needs fields 'response' and 'answer'")
        correct = int(bool(judge(str(item["response"] or ""), item)))
        per_item.append(correct)
        ids.append(str(item.get("id", index)))
        for dimension, values in categorize(item, item_meta(item)).items():
            for value in values:
                cell = by_category.setdefault(dimension, {}).setdefault(value, {"n": 0, "correct": 0})
                cell["n"] += 1
                cell["correct"] += correct
    for cells in by_category.values():
        for cell in cells.values():
            cell["accuracy"] = cell["correct"] / cell["n"]
    n = len(per_item)
    return {
        "benchmark": name,
        "n": n,
        "correct": sum(per_item),
        "accuracy": sum(per_item) / n if n else 0.0,
        "per_item": per_item,
        "ids": ids,
        "by_category": by_category,
    }


def score_mathvista(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _score("mathvista", judge_mathvista, _categories_from(("task", "skills", "question_type")), items)


def score_mathverse(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _score("mathverse", judge_mathverse, _categories_from(("problem_version", "subject")), items)


def score_mathvision(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _score("mathvision", judge_mathvision, _categories_from(("subject", "level")), items)


def score_mmmu(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _score("mmmu", judge_mmmu, _mmmu_categories, items)


def score_mmmu_pro_standard(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _score("mmmu_pro_standard", judge_mmmu_pro, _mmmu_categories, items)


def score_mmmu_pro_vision(items: list[dict[str, Any]]) -> dict[str, Any]:
    return _score("mmmu_pro_vision", judge_mmmu_pro, _mmmu_categories, items)


BENCHMARKS: dict[str, Callable[[list[dict[str, Any]]], dict[str, Any]]] = {
    "mathvista": score_mathvista,
    "mathverse": score_mathverse,
    "mathvision": score_mathvision,
    "mmmu": score_mmmu,
    "mmmu_pro_standard": score_mmmu_pro_standard,
    "mmmu_pro_vision": score_mmmu_pro_vision,
}
JUDGES: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "mathvista": judge_mathvista,
    "mathverse": judge_mathverse,
    "mathvision": judge_mathvision,
    "mmmu": judge_mmmu,
    "mmmu_pro_standard": judge_mmmu_pro,
    "mmmu_pro_vision": judge_mmmu_pro,
}


def benchmark_name(data_source: str | None) -> str | None:
    """The benchmark a ``data_source`` names (``mathvista`` or ``mathvista/...``), else None."""
    if not data_source:
        return None
    head = data_source.split("/", 1)[0].lower()
    return head if head in BENCHMARKS else None


def get_benchmark_scorer(name: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}") from None


def judge_item(benchmark: str, response: str, item: dict[str, Any]) -> bool:
    """Per-item correctness of ``response`` under ``benchmark``'s rules."""
    if benchmark not in JUDGES:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {sorted(JUDGES)}")
    return bool(JUDGES[benchmark](response, item))


def score_benchmark(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return get_benchmark_scorer(name)(items)


def macro_average(results: dict[str, dict[str, Any]]) -> float:
    """Mean of the benchmarks' accuracies (the paper's macro average)."""
    if not results:
        return 0.0
    return sum(r["accuracy"] for r in results.values()) / len(results)
