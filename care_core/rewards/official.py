"""The benchmarks' own deterministic scoring rules (``eval.scoring: official``), re-implemented.

Each function reproduces what the benchmark's published evaluation script does with an
already-extracted answer or a raw response, including its tolerances and quirks, so that numbers
compare with published ones. They are written from the published rules (see docs/benchmarks.md,
"Scoring modes"), not copied. The project's own, stricter rules live in
:mod:`care_core.rewards.benchmarks` (``eval.scoring: strict``).

* MathVista (``calculate_score.py``): a multiple-choice extraction ``(X)`` or ``X`` becomes the
  option text, anything else the option nearest by Levenshtein distance; integer items compare
  ``str(int(float(x)))`` (so ``2.7`` counts as ``2``); float items ``str(round(float(x), precision))``
  (so gold ``1.50`` never matches); list and text items compare the strings exactly.
* MATH-Vision (``evaluate.py``): the answer is cut out of the response by its phrase and box rules,
  cleaned (``find_math_answer``), lower-cased and compared with both the gold letter and the gold
  option text: equal strings, equal tuples, or equal values rounded to 2 decimals.
* MMMU (``eval_utils.py``): ``(X)``, then `` X ``, then (responses over five words) option text;
  several candidates: the one found last; none: a random option. Open answers: key phrases after
  "is"/"so"/"therefore"/... (sentences split only at new lines, as the script lower-cases before
  its capital-letter split), numbers in them rounded to 2 decimals, a string gold contained in a
  candidate (one-letter golds padded with a space).
* MMMU-Pro (``evaluate.py``): the text after the last ``Answer:`` naming exactly one option letter
  wins; else ``(X)``, ``X<space>``, ``X.``, then option text, then a random option.

Random guesses are made deterministic per item: the choice is drawn from an RNG seeded with the
item id, so the expected accuracy equals the script's and reruns agree.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from typing import Any

from care_core.rewards.guard import call_with_timeout
from care_core.rewards.verifiers import LETTERS

# --------------------------------------------------------------------------- shared
_PUNCT = (",", ".", "!", "?", ";", ":", "'")


def seeded_guess(item_id: Any, letters: list[str]) -> str:
    """The benchmark's random guess, made reproducible: seeded by the item id."""
    seed = int(hashlib.sha256(str(item_id).encode()).hexdigest()[:16], 16)
    return random.Random(seed).choice(letters)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _strip_punct(text: str) -> str:
    for char in _PUNCT:
        text = text.strip(char)
    return text


def _float_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- MathVista
def mathvista_normalize(
    extraction: str | None, choices: list[str], question_type: str, answer_type: str, precision: int | None
) -> str | None:
    """MathVista's normalisation of an extracted answer to the form of the gold string."""
    if question_type == "multi_choice":
        text = (extraction or "").strip()
        bracketed = re.findall(r"\(([a-zA-Z])\)", text)
        if bracketed:
            text = bracketed[0].upper()
        letters = list(LETTERS[: len(choices)])
        if text in letters:
            return choices[letters.index(text)]
        if not choices:
            return None
        distances = [levenshtein(text, c) for c in choices]
        return choices[distances.index(min(distances))]
    if extraction is None:
        return None
    if answer_type == "integer":
        value = _float_or_none(extraction)
        return None if value is None else str(int(value))
    if answer_type == "float":
        value = _float_or_none(extraction)
        return None if value is None else str(round(value, int(precision or 0)))
    return str(extraction)


# --------------------------------------------------------------------------- MATH-Vision
_LATEX_COMMAND_RE = re.compile(r"\\[a-zA-Z]+")
_NOT_EVALUABLE_RE = re.compile(
    r"[%\u2212\u00b0\u03c0\u221a]|\\!|\\(?:mathrm|text|mbox|operatorname|mathbf|circ|degree)\b"
)


def _latex_value(text: str, timeout_s: float = 3.0) -> float | None:
    """The numeric value of a plain number or a LaTeX expression (``\\frac{1}{2}``, ``2\\sqrt{3}``), or None.

    As strict as MATH-V's ``latex2sympy`` + ``eval``: units, ``\\text{}``, a Unicode minus or any free
    letter (other than ``e``) make the expression unevaluable; ``$`` delimiters are ignored and a
    ratio ``1:4:9`` reads as divisions, as there.
    """
    text = text.replace("$", "").replace(":", "/").strip()
    plain = _float_or_none(text)
    if plain is not None:
        return plain
    if not text or len(text) > 200 or _NOT_EVALUABLE_RE.search(text):
        return None
    if set(re.findall(r"[a-zA-Z]", _LATEX_COMMAND_RE.sub("", text))) - {"e"}:
        return None

    def evaluate() -> float | None:
        from math_verify import parse

        parsed = parse("$" + text + "$", parsing_timeout=None)
        for candidate in parsed:
            try:
                value = complex(candidate.evalf())
            except (AttributeError, TypeError, ValueError):
                continue
            if value.imag == 0 and math.isfinite(value.real):
                return value.real
        return None

    ok, value = call_with_timeout(evaluate, (), timeout_s)
    return value if ok else None


def _tuple_values(text: str) -> str:
    """MATH-V's tuple rule: ``(a,b)``/``[a,b]`` with each element evaluated and rounded to 2 decimals."""
    if len(text) < 2 or (text[0], text[-1]) not in (("(", ")"), ("[", "]")):
        return text
    parts = text[1:-1].split(",")
    if len(parts) < 2:
        return text
    out = []
    for part in parts:
        if "infty" in part or part in ("a", "-a"):
            out.append(part)
            continue
        value = _latex_value(part)
        if value is None:
            return text
        out.append(str(round(value, 2)))
    return text[0] + ",".join(out) + text[-1]


def mathvision_equal(pred: str, gold: str) -> bool:
    """MATH-V's ``is_equal``: lower-cased; equal strings, equal evaluated tuples, or values equal to 2 decimals."""
    pred, gold = pred.lower(), gold.lower()
    if not pred.replace(" ", "") or not gold.replace(" ", ""):
        return False
    if pred.strip() == gold.strip():
        return True
    pred, gold = _tuple_values(pred), _tuple_values(gold)
    if pred == gold:
        return True
    a, b = _latex_value(gold), _latex_value(pred)
    return a is not None and b is not None and round(a, 2) == round(b, 2)


def _mathvision_strip(s: str) -> str:
    """MATH-V's final clean-up of an answer string (MATH-style ``_strip_string``)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    s = s.split("\\text{ ")[0]  # units written as "\text{ cm}" are dropped
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2:
        s = s.split("=")[-1]
    if len(s.split("\\approx")) == 2:
        s = s.split("\\approx")[-1]
    if "sqrt" in s:
        s = re.sub(r"\\sqrt(?!\{)(\w)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    if s == "0.5":
        s = "\\frac{1}{2}"
    match = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    if match and s == f"{int(match.group(1))}/{int(match.group(2))}":
        s = "\\frac{" + match.group(1) + "}{" + match.group(2) + "}"
    return s


def _find_math_answer(s: str) -> str:
    s = s.lower().replace("{}", "")
    boxed = re.findall(r"oxed\{(.*)\}", s, flags=re.S)  # greedy: up to the last closing brace
    ans = boxed[-1] if boxed else s
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    ans = ans.replace(" ", "").replace("\\,", "").replace("\u221e", "\\infty").replace("+\\infty", "\\infty")
    ans = ans.replace("\\\\", "\\").replace("\n", "").replace("\\text", "").replace("\\mbox", "")
    ans = ans.replace("bmatrix", "pmatrix").replace("\\left", "").replace("\\right", "")
    ans = ans.replace("^{\\circ}", "").replace("^\\circ", "").replace("{m}^3", "").replace("m^3", "")
    ans = ans.replace("{units}", "").replace("units", "").replace("{km}", "").replace("km", "")
    return _mathvision_strip(ans)


def mathvision_extract(response: str) -> str:
    """MATH-V's rule-based answer of a response (its phrase, letter and box rules)."""
    answer = response.strip()
    for c in "ABCDE":
        if (
            answer.endswith(f" {c}.")
            or answer.endswith(f" ({c}).")
            or answer.startswith(f"{c}\n")
            or answer.startswith(f"({c})\n")
            or answer.startswith(f"({c}) {c}\n")
        ):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if _float_or_none(tail) is not None:
        answer = tail
    if "oxed{" not in answer:
        for flag in ("the final answer is", "the answer is", "the correct answer is", "the answer should be"):
            for variant in (flag, flag.replace("the", "The")):
                had = variant in answer
                answer = answer.split(variant)[-1].strip()
                if had:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = _find_math_answer(answer)
    for letter in "abcde":
        answer = answer.replace(f"({letter})", letter).replace("{" + letter + "}", letter)
    return answer.rstrip(".").lstrip(":").strip()


# --------------------------------------------------------------------------- MMMU
def mmmu_choice(response: str, choices: list[str], item_id: Any) -> str:
    """MMMU's multiple-choice parse (no spacing of punctuation; random option when nothing is found)."""
    letters = list(LETTERS[: len(choices)]) if choices else list(LETTERS[:4])
    text = " " + _strip_punct(response) + " "
    found = [c for c in letters if f"({c})" in text]
    bracketed, by_text = bool(found), False
    if not found:
        found = [c for c in letters if f" {c} " in text]
    if not found and len(text.split()) > 5:
        found = [c for c, option in zip(letters, choices, strict=False) if option.lower() in text.lower()]
        by_text = bool(found)
    return _last_mentioned(found, text, letters, choices, item_id, bracketed=bracketed, by_text=by_text)


def _last_mentioned(
    found: list[str],
    text: str,
    letters: list[str],
    choices: list[str],
    item_id: Any,
    *,
    bracketed: bool,
    by_text: bool,
) -> str:
    """MMMU's tie rule: no candidate is a seeded guess, one is the answer, several: the last mentioned."""
    if not found:
        return seeded_guess(item_id, letters)
    if len(found) == 1:
        return found[0]
    if by_text:
        positions = [text.lower().rfind(choices[letters.index(c)].lower()) for c in found]
    elif bracketed:
        positions = [text.rfind(f"({c})") for c in found]
    else:
        positions = [text.rfind(f" {c} ") for c in found]
    return found[positions.index(max(positions))]


def _is_number(text: str) -> bool:
    return _float_or_none(text.replace(",", "")) is not None


def mmmu_normalize(text: str) -> list[Any]:
    """MMMU's ``normalize_str``: a number rounded to 2 decimals, else the lower-cased string
    (a one-character string becomes ``" x"`` and ``"x "`` so that it cannot match inside a word)."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


_COMMA_NUMBER_RE = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_SCI_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_SIMPLE_NUMBER_RE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def mmmu_open_parse(response: str) -> list[Any]:
    """MMMU's open-answer candidates of a response (see module rules)."""
    text = response.strip().strip(".").lower()
    # the script splits at ". " followed by a capital letter after lower-casing: only new lines split
    parts = text.split("\n")
    keys: list[str] = []
    for index, part in enumerate(parts):
        indicators = _KEY_INDICATORS + (("=",) if index == len(parts) - 1 else ())
        shortest = None
        for indicator in indicators:
            if indicator in part:
                tail = part.split(indicator)[-1].strip()
                if shortest is None or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _PUNCT:
            keys.append(shortest)
    if not keys:
        keys = [text]
    found: list[str] = list(keys)
    for key in keys:
        found += _COMMA_NUMBER_RE.findall(key) + _SCI_NUMBER_RE.findall(key) + _SIMPLE_NUMBER_RE.findall(key)
    out: list[Any] = []
    for value in found:
        for norm in mmmu_normalize(value):
            if norm not in out:
                out.append(norm)
    return out


def mmmu_open_equal(candidates: list[Any], golds: list[str]) -> bool:
    """MMMU's ``eval_open``: a float candidate equal to a numeric gold, or a string gold inside a candidate."""
    norms: list[Any] = [n for gold in golds for n in mmmu_normalize(gold)]
    for candidate in candidates:
        if isinstance(candidate, str):
            if any(isinstance(n, str) and n in candidate for n in norms):
                return True
        elif candidate in norms:
            return True
    return False


# --------------------------------------------------------------------------- MMMU-Pro
def mmmu_pro_choice(response: str, choices: list[str], item_id: Any) -> str:
    """MMMU-Pro's parse: the last ``Answer:`` naming one letter, else its own letter/text rules."""
    letters = list(LETTERS[: len(choices)]) if choices else list(LETTERS[:4])
    at = response.rfind("Answer:")
    if at != -1:
        rest = response[at + len("Answer:") :].strip()
        named = [c for c in letters if c in rest]
        if len(named) == 1:
            return named[0]
    text = " " + _strip_punct(response) + " "
    found = [c for c in letters if f"({c})" in text]
    bracketed, by_text = bool(found), False
    if not found:
        found = [c for c in letters if f"{c} " in text]
    if not found:
        found = [c for c in letters if f"{c}." in text]
    if not found and len(text.split()) > 5:
        found = [c for c, option in zip(letters, choices, strict=False) if option.lower() in text.lower()]
        by_text = bool(found)
    return _last_mentioned(found, text, letters, choices, item_id, bracketed=bracketed, by_text=by_text)
