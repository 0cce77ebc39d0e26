"""Rule-based scorers of the six evaluation benchmarks (no GPT judge), in two scoring modes.

Each scorer takes items (dicts holding ``response`` plus the example-row fields ``id``,
``answer``, ``answer_type``, ``choices``, ``meta`` (JSON string or dict); a top-level
``precision`` or category field also counts) and returns::

    {"benchmark", "scoring", "n", "correct", "accuracy", "per_item": [0/1, ...], "ids": [...],
     "by_category": {dimension: {value: {"n", "correct", "accuracy"}}}}

``scoring="official"`` (the default, recipe key ``eval.scoring``) reproduces each benchmark's own
deterministic rule with its tolerances and quirks (:mod:`care_core.rewards.official`);
``scoring="strict"`` keeps the project's stricter rules below. Where the official pipeline asks an
LLM to extract (MathVista) or to judge (MathVerse), :func:`care_core.rewards.extraction.extract_answer`
stands in for the extractor and the project's equivalence check for the judge. The text a rule reads
is the content of the response's ``<answer>`` tags (or its last ``\\boxed{}``) when there is one,
else the whole response: the official prompts ask for a bare answer, ours for tags.

Strict rules:

* ``mathvista``: multiple choice: the named letter, else the option text, else the option closest
  by edit distance (normalised text); integer: an integral reading equal to the answer (no
  truncation); float: both rounded to the item's ``precision``; text: normalised exact match;
  list: element-wise. Categories: ``task``, ``skills`` (an item counts once per skill), ``question_type``.
* ``mathverse``: multiple choice by letter or option text; free form by number / math-verify
  equivalence. Categories: ``problem_version``, ``subject``.
* ``mathvision``: the last ``\\boxed{}`` (else the extracted answer) compared with both the letter
  and the option text; numeric/LaTeX answers by equivalence (relative 1e-4, not 2 decimals).
  Categories: ``subject``, ``level``.
* ``mmmu``, ``mmmu_pro_standard``, ``mmmu_pro_vision``: MMMU's multiple-choice parse with
  punctuation spaced out in both the response and the options, and no random guess (an unparsed
  item is wrong); open answers as MMMU, plus fraction golds read as numbers and one-letter golds
  matched as whole words. MMMU-Pro first reads the last ``Answer: X`` (markdown ``**X**`` too).
  Categories: ``subject``, ``discipline``.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable
from typing import Any

from care_core.rewards import official
from care_core.rewards.extraction import _answer_content, extract_answer, last_boxed, last_number
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
    for key in (
        "precision",
        "category",
        "subject",
        "task",
        "skills",
        "problem_version",
        "level",
        "question_type",
    ):
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


def _closest_option(pred: str, choices: list[str]) -> str | None:
    """MathVista's fallback: the option with the smallest edit distance (first on ties)."""
    if not choices:
        return None
    norm = normalize_text(pred)[:500]
    distances = [official.levenshtein(norm, normalize_text(c)[:500]) for c in choices]
    return LETTERS[distances.index(min(distances))]


# --------------------------------------------------------------------------- judges
SCORING_MODES = ("official", "strict")


def check_scoring(scoring: str) -> str:
    if scoring not in SCORING_MODES:
        raise ValueError(f"scoring={scoring!r} not in {SCORING_MODES}")
    return scoring


def answer_region(response: str) -> str:
    """The ``<answer>`` content (its last box if it has one), else the last box, else the response."""
    content = _answer_content(response)
    if content is not None:
        return last_boxed(content) or content
    return last_boxed(response) or response


def _gold_is_number(answer: str) -> bool:
    return bool(number_readings(answer))


_LIST_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _parse_list(text: str) -> list[float] | None:
    """Numbers of a list answer: ``[1, 2.5]``, ``1, 2.5``, ``1 and 2.5``, or a sentence naming them."""
    s = text.strip().strip("[]()").replace(" and ", ", ")
    parts = [p for p in re.split(r"\s*,\s*", s) if p]
    values = []
    for part in parts:
        readings = number_readings(part)
        if not readings:
            values = []
            break
        values.append(readings[0])
    if values:
        return values
    found = [float(v) for v in _LIST_NUMBER_RE.findall(text.replace(",", " "))]  # a list given in prose
    return found or None


def _format_list(values: list[float]) -> str:
    return "[" + ", ".join(str(int(v)) if float(v).is_integer() else str(v) for v in values) + "]"


def _mathvista_extraction(response: str, item: dict[str, Any], native: str, choices: list[str]) -> str | None:
    """Stand-in for MathVista's GPT extractor: its rule path (the response is an option, an int or a
    float), else :func:`extract_answer`, reduced to a letter or a number as the extractor would."""
    region = answer_region(response).strip()
    multi = item.get("answer_type") == "choice"
    if multi and region in choices:
        return region
    if native in ("integer", "float") and re.fullmatch(r"-?\d+(?:\.\d+)?", region):
        return region
    if multi:
        pred = extract_answer(response, "last_line", numeric=False)
        if pred is None:
            return None
        letter = choice_letter(pred, choices)
        return letter if letter is not None else pred
    if native in ("integer", "float"):
        pred = extract_answer(response, "last_number")
        readings = number_readings(pred) or number_readings(last_number(pred or ""))  # "There are 7 objects."
        return None if not readings else repr(readings[0])
    if native == "list":
        pred = extract_answer(response, "last_line", numeric=False)
        values = _parse_list(pred) if pred else None
        return _format_list(values) if values else pred
    return extract_answer(response, "last_line", numeric=False)


def _judge_mathvista_official(response: str, item: dict[str, Any]) -> bool:
    meta = item_meta(item)
    choices = _choices(item)
    native = meta.get("native_answer_type") or item.get("answer_type")
    extraction = _mathvista_extraction(response, item, native, choices)
    if item.get("answer_type") == "choice":
        if extraction is None:
            return False
        truth = truth_letter(str(item["answer"]), choices)
        gold = meta.get("answer_text") or (choices[LETTERS.index(truth)] if truth else str(item["answer"]))
        return official.mathvista_normalize(extraction, choices, "multi_choice", native, None) == gold
    pred = official.mathvista_normalize(extraction, choices, "free_form", native, _precision(meta))
    return pred is not None and pred == str(item["answer"]).strip()


def judge_mathvista(response: str, item: dict[str, Any], scoring: str = "official") -> bool:
    if check_scoring(scoring) == "official":
        return _judge_mathvista_official(response, item)
    meta = item_meta(item)
    choices = _choices(item)
    native = meta.get("native_answer_type") or item.get("answer_type")
    if item.get("answer_type") == "choice" or meta.get("question_type") == "multi_choice":
        pred = extract_answer(response, "last_line", numeric=False)
        if pred is None:
            return False
        letter = choice_letter(pred, choices) or _closest_option(pred, choices)
        return letter is not None and letter == truth_letter(str(item["answer"]), choices)
    answer = str(item["answer"])
    numeric = native in ("integer", "float")
    pred = extract_answer(response, "last_number" if numeric else "last_line", numeric=numeric)
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
        return (
            truth is not None
            and guess is not None
            and len(truth) == len(guess)
            and all(abs(a - b) < 1e-9 for a, b in zip(truth, guess, strict=True))
        )
    return normalize_text(pred) == normalize_text(answer)


def judge_mathverse(response: str, item: dict[str, Any], scoring: str = "official") -> bool:
    """Official: MathVerse's quick match (extraction equal to the gold) and, standing in for its GPT
    judge, the project's equivalence check; strict: the equivalence check alone."""
    check_scoring(scoring)
    choices = _choices(item)
    answer = str(item["answer"])
    if item.get("answer_type") == "choice":
        pred = extract_answer(response, "last_line", numeric=False)
        return pred is not None and choice_letter(pred, choices) == truth_letter(answer, choices)
    pred = extract_answer(response, "last_number", numeric=_gold_is_number(answer))
    if pred is None:
        return False
    if scoring == "official" and pred.strip() == answer.strip():
        return True
    return verify_expression(pred, answer)


def judge_mathvision(response: str, item: dict[str, Any], scoring: str = "official") -> bool:
    choices = _choices(item)
    answer = str(item["answer"])
    if check_scoring(scoring) == "official":
        content = _answer_content(response)  # the script reads boxes itself: give it the text, not the box
        pred = official.mathvision_extract(content if content is not None else response)
        truth = truth_letter(answer, choices) if choices else None
        value = choices[LETTERS.index(truth)] if truth is not None else ""
        return official.mathvision_equal(pred, answer) or official.mathvision_equal(pred, value)
    pred = last_boxed(response)
    if pred is None:
        pred = extract_answer(
            response,
            "last_line" if choices else "last_number",
            numeric=bool(not choices and _gold_is_number(answer)),
        )
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


_PUNCT_RE = re.compile(r"([,.!?;:'\"])")


def _spaced(text: str) -> str:
    return re.sub(r"\s+", " ", _PUNCT_RE.sub(r" \1 ", text))


def mmmu_parse_choice(response: str, choices: list[str]) -> str | None:
    """MMMU's rule-based multiple-choice parse, strict variant (None where MMMU would guess).

    Punctuation is spaced out in the response ("B," reads as B) and, identically, in each option, so
    options holding punctuation ("$3,000", "U.S. dollars") are still found.
    """
    letters = LETTERS[: len(choices)] if choices else LETTERS[:4]
    text = " " + _spaced(response.strip().strip(",.!?;:'\"")) + " "
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
            needle = _spaced(option.strip()).strip().lower()
            index = lowered.rfind(needle) if needle else -1
            if index != -1:
                positions[letter] = index
    if not positions:
        return None
    return max(positions, key=lambda letter: positions[letter])


_OPEN_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_OPEN_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")


def mmmu_open_candidates(response: str) -> list[Any]:
    """MMMU-style open-answer candidates (strict): key phrases after indicators, and the numbers
    (fractions and scientific notation included) in them."""
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
        for number in _OPEN_NUMBER_RE.findall(key):
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
    """Strict open match: a numeric gold (fractions too) equals a candidate to 2 decimals; a string
    gold is inside a candidate (a one-letter gold only as a whole word)."""
    candidates = mmmu_open_candidates(response)
    exact = [
        v
        for c in candidates
        if isinstance(c, str)
        for n in _OPEN_NUMBER_RE.findall(c)
        for v in number_readings(n)
    ]
    for gold in _gold_list(answer):
        readings = number_readings(gold)
        if readings and "/" in gold:  # a fraction gold: equal values, not equal to 2 decimals
            if any(math.isclose(readings[0], v, rel_tol=1e-6, abs_tol=1e-12) for v in exact):
                return True
        elif readings and round(readings[0], 2) in [c for c in candidates if isinstance(c, float)]:
            return True
        if readings and re.fullmatch(r"[-+]?[\d.,]+", gold.strip()):
            continue  # a plain number matches numerically only
        norm = normalize_text(gold)
        if not norm:
            continue
        for c in candidates:
            if not isinstance(c, str):
                continue
            if len(norm) == 1 and re.search(rf"(?<![a-z0-9]){re.escape(norm)}(?![a-z0-9])", c):
                return True
            if len(norm) > 1 and norm in c:
                return True
    return False


def judge_mmmu(response: str, item: dict[str, Any], scoring: str = "official") -> bool:
    choices = _choices(item)
    region = answer_region(response)
    if check_scoring(scoring) == "official":
        if item.get("answer_type") == "choice":
            letter = official.mmmu_choice(region, choices, item.get("id"))
            return letter == truth_letter(str(item["answer"]), choices)
        return official.mmmu_open_equal(official.mmmu_open_parse(region), _gold_list(str(item["answer"])))
    if item.get("answer_type") == "choice":
        letter = mmmu_parse_choice(region, choices)
        return letter is not None and letter == truth_letter(str(item["answer"]), choices)
    return mmmu_open_match(region, str(item["answer"]))


# "Answer: B", "Answer: (B)", "**Answer:** B", "Answer: **B**"; the letter ends its clause
# ("Answer: I think B" names no letter here: the parse below finds B)
_ANSWER_LINE_RE = re.compile(
    r"Answer\s*:\s*(?:\*\*|__)?\s*\(?\s*(?:\*\*|__)?([A-J])(?:\*\*|__)?\)?(?=\s*(?:$|[.,;:!)\]*_]))",
    re.MULTILINE,
)


def judge_mmmu_pro(response: str, item: dict[str, Any], scoring: str = "official") -> bool:
    choices = _choices(item)
    truth = truth_letter(str(item["answer"]), choices)
    tagged = _answer_content(response) is not None or last_boxed(response) is not None
    if check_scoring(scoring) == "official":
        text = answer_region(response) if tagged else response
        return official.mmmu_pro_choice(text, choices, item.get("id")) == truth
    if not tagged:
        lines = _ANSWER_LINE_RE.findall(response.replace("**Answer:**", "Answer:"))
        if lines:
            return lines[-1] == truth
    letter = mmmu_parse_choice(answer_region(response), choices)
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


def _categories_from(
    keys: tuple[str, ...],
) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, list[str]]]:
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
Judge = Callable[..., bool]
Categorize = Callable[[dict[str, Any], dict[str, Any]], dict[str, list[str]]]


def _score(
    name: str, judge: Judge, categorize: Categorize, items: list[dict[str, Any]], scoring: str = "official"
) -> dict[str, Any]:
    check_scoring(scoring)
    per_item: list[int] = []
    ids: list[str] = []
    by_category: dict[str, dict[str, dict[str, Any]]] = {}
    for index, item in enumerate(items):
        if "response" not in item or "answer" not in item:
            raise ValueError(
                f"{name} item {index} (id={item.get('id')!r}): needs fields 'response' and 'answer'"
            )
        correct = int(bool(judge(str(item["response"] or ""), item, scoring)))
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
        "scoring": scoring,
        "n": n,
        "correct": sum(per_item),
        "accuracy": sum(per_item) / n if n else 0.0,
        "per_item": per_item,
        "ids": ids,
        "by_category": by_category,
    }


JUDGES: dict[str, Judge] = {
    "mathvista": judge_mathvista,
    "mathverse": judge_mathverse,
    "mathvision": judge_mathvision,
    "mmmu": judge_mmmu,
    "mmmu_pro_standard": judge_mmmu_pro,
    "mmmu_pro_vision": judge_mmmu_pro,
}
_CATEGORIES: dict[str, Categorize] = {
    "mathvista": _categories_from(("task", "skills", "question_type")),
    "mathverse": _categories_from(("problem_version", "subject")),
    "mathvision": _categories_from(("subject", "level")),
    "mmmu": _mmmu_categories,
    "mmmu_pro_standard": _mmmu_categories,
    "mmmu_pro_vision": _mmmu_categories,
}


def _scorer(name: str) -> Callable[..., dict[str, Any]]:
    def score(items: list[dict[str, Any]], scoring: str = "official") -> dict[str, Any]:
        return _score(name, JUDGES[name], _CATEGORIES[name], items, scoring)

    score.__name__ = f"score_{name}"
    score.__doc__ = f"Score {name} items under ``scoring`` (``official`` or ``strict``)."
    return score


score_mathvista = _scorer("mathvista")
score_mathverse = _scorer("mathverse")
score_mathvision = _scorer("mathvision")
score_mmmu = _scorer("mmmu")
score_mmmu_pro_standard = _scorer("mmmu_pro_standard")
score_mmmu_pro_vision = _scorer("mmmu_pro_vision")

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "mathvista": score_mathvista,
    "mathverse": score_mathverse,
    "mathvision": score_mathvision,
    "mmmu": score_mmmu,
    "mmmu_pro_standard": score_mmmu_pro_standard,
    "mmmu_pro_vision": score_mmmu_pro_vision,
}


def benchmark_name(data_source: str | None) -> str | None:
    """The benchmark a ``data_source`` names (``mathvista`` or ``mathvista/...``), else None."""
    if not data_source:
        return None
    head = data_source.split("/", 1)[0].lower()
    return head if head in BENCHMARKS else None


def get_benchmark_scorer(name: str) -> Callable[..., dict[str, Any]]:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}") from None


def judge_item(benchmark: str, response: str, item: dict[str, Any], scoring: str = "official") -> bool:
    """Per-item correctness of ``response`` under ``benchmark``'s rules in ``scoring`` mode."""
    if benchmark not in JUDGES:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {sorted(JUDGES)}")
    return bool(JUDGES[benchmark](response, item, check_scoring(scoring)))


def score_benchmark(name: str, items: list[dict[str, Any]], scoring: str = "official") -> dict[str, Any]:
    return get_benchmark_scorer(name)(items, scoring)


def macro_average(results: dict[str, dict[str, Any]]) -> float:
    """Mean of the benchmarks' accuracies (the paper's macro average)."""
    if not results:
        return 0.0
    return sum(r["accuracy"] for r in results.values()) / len(results)
