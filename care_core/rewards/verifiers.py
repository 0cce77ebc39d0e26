"""Answer verifiers by answer type (``choice``, ``integer``, ``float``, ``expression``, ``text``).

Rules (deterministic; a prediction that cannot be read is wrong, never a random guess):

* numbers (:func:`parse_number`): ``$``/LaTeX wrappers, thousands separators (``1,234``), unicode
  minus, degree signs, a leading ``x =`` and trailing unit words are stripped; ``\\frac{a}{b}`` and
  ``a/b`` are read as fractions. A trailing ``%`` gives two readings, ``v/100`` and ``v`` (so
  ``12%`` matches ``0.12`` and ``12``).
* ``integer``: some reading equals the truth exactly. ``float``: with ``precision`` p, both
  rounded to p decimals are equal (MathVista); without, ``isclose(rel=1e-4)``.
* ChartQA (``data_source`` starting with ``chartqa``): relaxed accuracy, a numeric truth is matched
  within 5 % relative error (exact when the truth is 0), other answers by normalised exact match.
* ``choice``: the predicted letter (A-J) from ``B``, ``(B)``, ``B.``, ``Option B``, ``answer is B``,
  ``B. text``; else the option whose text equals the prediction (or equals it numerically); else
  the single option whose text occurs in the prediction. Several different letters: wrong.
* ``expression``: normalised string equality, numeric equality, else math-verify under a hard
  wall-clock limit (:mod:`care_core.rewards.guard`); predictions over 2,000 characters skip it.
* ``text``: normalised exact match (case, spaces, surrounding punctuation, ``\\text{}``), or
  numeric equality when both sides are numbers.
"""

from __future__ import annotations

import math
import re
import string

from care_core.rewards.guard import call_with_timeout

LETTERS = "ABCDEFGHIJ"
MAX_MATH_VERIFY_CHARS = 2000

_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\ufe63": "-", "\uff0d": "-"})
_TEXT_WRAP_RE = re.compile(r"\\(?:text|mathrm|textbf|mathbf|operatorname)\s*\{([^{}]*)\}")
_FRAC_RE = re.compile(
    r"^([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+(?:\.\d+)?)\s*\}\s*\{\s*([-+]?\d+(?:\.\d+)?)\s*\}$"
)
_SLASH_RE = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)$")
_NUM_RE = re.compile(
    r"^(?P<sign>[-+]?)\s*(?P<cur>\$)?\s*"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"\s*(?P<pct>%)?\s*(?P<unit>(?:[a-zA-Z\u00b5\u03bc]+\.?(?:\^?\d)?(?:\s*/\s*[a-zA-Z]+(?:\^?\d)?)?\s*){0,3})$"
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree|°|\\circ")
_SUPERSCRIPTS = str.maketrans({"\u00b2": "^2", "\u00b3": "^3", "\u00b9": "^1"})
_ROOT_RE = re.compile(r"\u221a\s*(\d+(?:\.\d+)?|[A-Za-z]|\{[^{}]*\}|\([^()]*\))")
_BRACED_EXPONENT_RE = re.compile(r"\^\s*\{\s*(-?\d+)\s*\}")


def _root(match: re.Match[str]) -> str:
    body = match.group(1)
    if body[0] in "{(":
        body = body[1:-1]
    return "\\sqrt{" + body + "}"


def _strip_latex(text: str) -> str:
    s = text.strip()
    for _ in range(3):
        s = _TEXT_WRAP_RE.sub(r"\1", s)
    s = s.replace("\\$", "\x00").replace("\\%", "%").replace("\\!", "").replace("\\,", "").replace("~", " ")
    s = s.replace("\\left", "").replace("\\right", "")
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s).strip()
    # ``$`` pairs delimit math anywhere in the string ("Volume $=904.78 \mathrm{~cm}^{3}$"); a lone
    # ``$`` (or an escaped ``\$``) is a currency sign and stays
    if s.count("$") >= 2 and s.count("$") % 2 == 0:
        s = s.replace("$", " ")
    s = s.replace("\x00", "$")
    s = _BRACED_EXPONENT_RE.sub(r"^\1", s.translate(_SUPERSCRIPTS))
    s = _ROOT_RE.sub(_root, s)
    return " ".join(s.translate(_MINUS).split())


def number_readings(text: str | None) -> list[float]:
    """All numeric readings of ``text`` (empty when it is not a single number); see module rules."""
    if text is None:
        return []
    s = _strip_latex(text)
    if "=" in s:
        s = s.rsplit("=", 1)[1].strip()
    s = _DEGREE_RE.sub("", s).strip().rstrip(".").strip()
    if not s or len(s) > 64:
        return []
    frac = _FRAC_RE.match(s) or _SLASH_RE.match(s)
    if frac:
        groups = frac.groups()
        sign, num, den = groups if len(groups) == 3 else ("", *groups)
        den_value = float(den)
        if den_value == 0:
            return []
        value = float(num) / den_value
        return [-value if sign == "-" else value]
    match = _NUM_RE.match(s)
    if not match:
        return []
    try:
        value = float(match.group("num").replace(",", ""))
    except ValueError:
        return []
    if not math.isfinite(value):
        return []
    if match.group("sign") == "-":
        value = -value
    if match.group("pct"):
        return [value / 100.0, value]
    return [value]


def parse_number(text: str | None) -> float | None:
    """The primary numeric reading of ``text`` (``12%`` → 0.12), or None."""
    readings = number_readings(text)
    return readings[0] if readings else None


def normalize_text(text: str) -> str:
    """Lower-case, strip LaTeX text wrappers, quotes, surrounding punctuation and extra spaces."""
    s = _strip_latex(text).lower()
    s = s.replace("**", "")
    s = " ".join(s.split())
    s = s.strip(
        string.punctuation.replace("%", "").replace("(", "").replace(")", "") + " \"'\u201c\u201d\u2018\u2019"
    )
    if s.startswith("(") and s.endswith(")") and s.count("(") == 1:
        s = s[1:-1].strip()
    for article in ("the ", "a ", "an "):
        if s.startswith(article) and len(s) > len(article) + 1:
            s = s[len(article) :]
            break
    return s


# --------------------------------------------------------------------------- numbers
def numbers_equal(pred: str | None, truth: str, precision: int | None = None, integer: bool = False) -> bool:
    """Numeric equality under the module rules (``precision``: decimals to round both to)."""
    preds, truths = number_readings(pred), number_readings(truth)
    for p in preds:
        for t in truths:
            if precision is not None:
                if round(p, int(precision)) == round(t, int(precision)):
                    return True
            elif integer:
                if abs(p - t) < 1e-9:
                    return True
            elif math.isclose(p, t, rel_tol=1e-4, abs_tol=1e-9):
                return True
    return False


def relaxed_match(pred: str | None, truth: str, tolerance: float = 0.05) -> bool:
    """ChartQA relaxed accuracy: numeric truth within ``tolerance`` relative error, else exact text."""
    truths = number_readings(truth)
    if truths:
        for p in number_readings(pred):
            for t in truths:
                if (t == 0 and p == 0) or (t != 0 and abs(p - t) / abs(t) <= tolerance):
                    return True
        return False
    return pred is not None and normalize_text(pred) == normalize_text(truth)


# --------------------------------------------------------------------------- multiple choice
_BARE_LETTER_RE = re.compile(r"^[\(\[\{]?\s*([A-Ja-j])\s*[\)\]\}]?\s*[.:)]?$")
_LEAD_LETTER_RE = re.compile(r"^(?:option|choice)?\s*[\(\[]?([A-J])\s*(?:[\)\].:]|\s-)\s*\S")
_PAREN_LETTER_RE = re.compile(r"\(([A-J])\)")
# keywords in any case; the letter itself must be upper case ("the answer is a square" names no option)
_KEYWORD_LETTER_RE = re.compile(
    r"(?i:option|choice|answer(?:\s+is)?|answer\s*:)\s*[:\-]?\s*[\(\[]?([A-J])(?![A-Za-z])"
)


def _valid_letters(choices: list[str] | None) -> str:
    return LETTERS[: len(choices)] if choices else LETTERS


def choice_letter(pred: str | None, choices: list[str] | None) -> str | None:
    """The option letter a prediction names (module rules), or None when unreadable or ambiguous."""
    if pred is None:
        return None
    valid = _valid_letters(choices)
    s = _strip_latex(pred).replace("**", "").strip()
    if not s:
        return None
    match = _BARE_LETTER_RE.match(s)
    if match and match.group(1).upper() in valid:
        return match.group(1).upper()
    match = _LEAD_LETTER_RE.match(s)
    if match and match.group(1) in valid:
        return match.group(1)
    found = {m.group(1) for m in _PAREN_LETTER_RE.finditer(s)} | {
        m.group(1) for m in _KEYWORD_LETTER_RE.finditer(s)
    }
    found &= set(valid)
    if len(found) == 1:
        return found.pop()
    if len(found) > 1 or not choices:
        return None
    norm = normalize_text(s)
    equal = [i for i, c in enumerate(choices) if normalize_text(str(c)) == norm]
    if len(equal) == 1:
        return LETTERS[equal[0]]
    numeric = [i for i, c in enumerate(choices) if number_readings(str(c)) and numbers_equal(s, str(c))]
    if len(numeric) == 1:
        return LETTERS[numeric[0]]
    contained = [
        i for i, c in enumerate(choices) if normalize_text(str(c)) and normalize_text(str(c)) in norm
    ]
    # drop options that are substrings of another contained option ("5" inside "15")
    contained = [
        i
        for i in contained
        if not any(
            j != i and normalize_text(str(choices[i])) in normalize_text(str(choices[j])) for j in contained
        )
    ]
    if len(contained) == 1:
        return LETTERS[contained[0]]
    return _last_standalone_letter(s, valid)


_STANDALONE_RE = re.compile(r"(?<![A-Za-z0-9])([A-J])(?![A-Za-z0-9'\u2019])")
_CORRECTION_RE = re.compile(
    r"\b(?:no|not|wait|actually|instead|rather|correction|sorry|hmm)\b", re.IGNORECASE
)


def _last_standalone_letter(s: str, valid: str) -> str | None:
    """A letter standing alone in the prediction ("I think it's B... no, D" names D).

    ``A``/``I`` followed by a lower-case word are the article and the pronoun, not options. Several
    different letters name one option only when a correction word ("no", "wait", "actually")
    stands between the last two; otherwise ("B or C") the prediction is ambiguous.
    """
    found = [
        m
        for m in _STANDALONE_RE.finditer(s)
        if m.group(1) in valid and not (m.group(1) in "AI" and re.match(r"\s+[a-z]", s[m.end() :]))
    ]
    letters = [m.group(1) for m in found]
    if not letters:
        return None
    if len(set(letters)) == 1:
        return letters[0]
    previous = next(m for m in reversed(found) if m.group(1) != letters[-1])
    between = s[previous.end() : found[-1].start()]
    return letters[-1] if _CORRECTION_RE.search(between) else None


def truth_letter(answer: str, choices: list[str] | None) -> str | None:
    """The ground-truth letter: ``answer`` itself when it is a letter, else the option equal to it."""
    s = answer.strip().strip("().").strip()
    valid = _valid_letters(choices)
    if len(s) == 1 and s.upper() in valid:
        return s.upper()
    if choices:
        norm = normalize_text(answer)
        for i, c in enumerate(choices):
            if normalize_text(str(c)) == norm:
                return LETTERS[i]
    return None


def verify_choice(pred: str | None, answer: str, choices: list[str] | None) -> bool:
    truth = truth_letter(answer, choices)
    if truth is None:
        return pred is not None and normalize_text(pred) == normalize_text(answer)
    return choice_letter(pred, choices) == truth


# --------------------------------------------------------------------------- expressions
def _math_verify_equal(truth: str, pred: str) -> bool:
    """math-verify equivalence of two LaTeX/plain expressions (both read as the content of a box)."""
    from math_verify import parse, verify

    gold = parse("\\boxed{" + truth + "}", parsing_timeout=None)
    guess = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not gold or not guess:
        return False
    return bool(verify(gold, guess, timeout_seconds=None))


def _quiet_math_verify() -> None:
    # math-verify warns once that its own (signal) timeout is off; ours is in force instead.
    import math_verify.grader as grader
    import math_verify.parser as parser

    grader.TIMEOUT_WARNING_SHOWN = True
    parser.TIMEOUT_WARNING_SHOWN = True


def verify_expression(pred: str | None, answer: str, timeout_s: float = 3.0) -> bool:
    """Symbolic/numeric equivalence; math-verify runs for at most ``timeout_s`` seconds."""
    if pred is None or not pred.strip():
        return False
    if normalize_text(pred) == normalize_text(answer):
        return True
    if number_readings(pred) and number_readings(answer):
        return numbers_equal(pred, answer)
    if len(pred) > MAX_MATH_VERIFY_CHARS:
        return False
    _quiet_math_verify()
    pred = _ROOT_RE.sub(_root, pred.translate(_SUPERSCRIPTS))  # "4√6" -> "4\sqrt{6}" for math-verify
    ok, result = call_with_timeout(_math_verify_equal, (answer, pred), timeout_s)
    return bool(ok and result)


def verify_text(pred: str | None, answer: str) -> bool:
    if pred is None:
        return False
    if normalize_text(pred) == normalize_text(answer):
        return True
    return bool(number_readings(answer)) and numbers_equal(pred, answer)


# --------------------------------------------------------------------------- dispatch
def is_chartqa(data_source: str | None) -> bool:
    return bool(data_source) and data_source.lower().startswith("chartqa")


def verify(
    pred: str | None,
    answer: str,
    answer_type: str,
    choices: list[str] | None = None,
    precision: int | None = None,
    data_source: str | None = None,
    timeout_s: float = 3.0,
) -> float:
    """Accuracy (1.0 or 0.0) of an extracted prediction against the ground truth."""
    if pred is None:
        return 0.0
    if answer_type == "choice":
        return float(verify_choice(pred, answer, choices))
    if is_chartqa(data_source):
        return float(relaxed_match(pred, answer))
    if answer_type == "integer":
        return float(numbers_equal(pred, answer, integer=True))
    if answer_type == "float":
        return float(numbers_equal(pred, answer, precision=precision))
    if answer_type == "expression":
        return float(verify_expression(pred, answer, timeout_s))
    if answer_type == "text":
        return float(verify_text(pred, answer))
    raise ValueError(f"unknown answer_type {answer_type!r}")
