"""Answer extraction and think/answer span detection.

Rules (stable contract; the rollout stage stores the spans in rollout rows):

* **Spans include their tags** by default. The think span covers ``<think>…</think>`` and the
  answer span covers ``<answer>…</answer>``, tags included, as half-open ``[start, end)`` intervals
  (characters for :func:`find_spans_text`, tokens for :func:`find_spans_tokens`); ``(-1, -1)`` when
  absent. With ``include_tags=False`` they cover the content between the tags only (the rollout
  stage stores those unless ``algorithm.care.region.include_tags`` is on).
* Think span: the first ``<think>`` and the first ``</think>`` after it. When the response has no
  ``<think>`` but has a ``</think>`` (the opening tag was part of the prompt), it starts at 0.
* Answer span: the last complete ``<answer>…</answer>`` pair that starts after the think span's
  end (anywhere when there is no think span). An unclosed ``<answer>`` (truncation) is absent.
* :func:`format_ok` (format reward 1): after stripping surrounding whitespace the response is
  exactly ``<think>T</think>`` + optional whitespace + ``<answer>A</answer>``, each of the four
  tags occurs exactly once, and ``A`` is not blank (``T`` may be empty).
* :func:`extract_answer`: the content of the answer span's pair (the same pair as above: answer
  tags inside the think block do not count; if the content holds a ``\\boxed{}``, the last box
  inside it, else if it says "the answer is X", that X); else the last ``\\boxed{}``/``\\fbox{}``
  in the text (nested braces); else the configured fallback (``none``: nothing; ``last_number``:
  the last "answer is X"/"Answer: X" phrase (X up to the end of its sentence; the LAST phrase wins,
  even on one line), else the last number (scientific notation included); ``last_line``: that
  phrase, else the last non-empty line), searched after ``</think>`` if present.
  With ``numeric=False`` (the gold is not a number: text, option, expression, tuple) ``last_number``
  does not cut the answer down to a number: it takes the phrase, else the final expression of the
  last line (its last ``$…$``/``\\(…\\)`` math span, else the text after its last ``=`` or `` is ``,
  else a bracketed group ending it, else the whole line), see :func:`final_expression`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
FALLBACKS = ("none", "last_number", "last_line")

Span = tuple[int, int]
ABSENT: Span = (-1, -1)

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER_RE = re.compile(
    r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?%?|[-+\u2212]?\.\d+(?:[eE][-+]?\d+)?%?"
)
# "the (final) answer is X", "Answer: X", "the correct option is X": keep the text after the last one.
# No capture of the rest: a greedy ``(.+)`` would swallow a later phrase on the same line.
_PHRASE_RE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer|correct\s+(?:option|choice)(?:\s+letter)?)\s*(?:is|:|=)\s*[:\s]*",
    re.IGNORECASE,
)
_MATH_SPAN_RE = re.compile(r"\$([^$]+)\$|\\\((.+?)\\\)")
_TRAILING_GROUP_RE = re.compile(r"([\(\[][^()\[\]]*[\)\]])\s*\.?\s*$")  # "... meet at (-3,-3)."
_FORMAT_RE = re.compile(r"<think>(.*)</think>\s*<answer>(.*)</answer>", re.DOTALL)


def _find_all(text: str, needle: str) -> list[int]:
    out, start = [], text.find(needle)
    while start != -1:
        out.append(start)
        start = text.find(needle, start + 1)
    return out


def find_spans_text(text: str, include_tags: bool = True) -> tuple[Span, Span]:
    """Character spans ``[start, end)`` of ``<think>…</think>`` and ``<answer>…</answer>``.

    ``include_tags=False``: the content between the tags only (a think span without an opening
    tag starts at 0); an empty block gives an empty span ``(k, k)``, not an absent one.
    """
    think, answer = _tag_spans_text(text)
    if include_tags:
        return think, answer
    if think != ABSENT:
        think = (think[0] + len(THINK_OPEN) if text.startswith(THINK_OPEN, think[0]) else think[0],
                 think[1] - len(THINK_CLOSE))  # fmt: skip
    if answer != ABSENT:
        answer = (answer[0] + len(ANSWER_OPEN), answer[1] - len(ANSWER_CLOSE))
    return think, answer


def _tag_spans_text(text: str) -> tuple[Span, Span]:
    think: Span = ABSENT
    close = -1
    open_ = text.find(THINK_OPEN)
    if open_ != -1:
        close = text.find(THINK_CLOSE, open_ + len(THINK_OPEN))
        if close != -1:
            think = (open_, close + len(THINK_CLOSE))
    else:
        close = text.find(THINK_CLOSE)
        if close != -1:
            think = (0, close + len(THINK_CLOSE))
    search_from = think[1] if think != ABSENT else 0
    answer: Span = ABSENT
    for start in reversed(_find_all(text, ANSWER_OPEN)):
        if start < search_from:
            break
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
        if end != -1:
            answer = (start, end + len(ANSWER_CLOSE))
            break
    return think, answer


def format_ok(text: str) -> bool:
    """True when ``text`` is exactly ``<think>…</think><answer>…</answer>`` (see module rules)."""
    stripped = text.strip()
    if any(stripped.count(tag) != 1 for tag in TAGS):
        return False
    match = _FORMAT_RE.fullmatch(stripped)
    return bool(match) and bool(match.group(2).strip())


def format_reward(text: str) -> float:
    return 1.0 if format_ok(text) else 0.0


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` / ``\\fbox{…}`` with balanced (nested) braces, or None."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for begin in reversed(starts):
        depth = 1
        for index in range(begin, len(text)):
            char = text[index]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[begin:index].strip()
    return None


def _answer_content(text: str) -> str | None:
    """Content of the answer span's ``<answer>…</answer>`` pair (see :func:`find_spans_text`), or None."""
    _, (start, end) = find_spans_text(text)
    if start == -1:
        return None
    return text[start + len(ANSWER_OPEN) : end - len(ANSWER_CLOSE)].strip()


def _phrase(text: str) -> str | None:
    """Text after the last "answer is"/"Answer:" phrase (first line of it), trailing period dropped."""
    matches = [m for m in _PHRASE_RE.finditer(text) if text[m.end() :].strip()]
    if not matches:
        return None
    value = text[matches[-1].end() :].strip().splitlines()[0].strip()
    value = re.split(r"\.\s", value, maxsplit=1)[0].rstrip(".").strip()  # first sentence only
    return value or None


def final_expression(text: str) -> str | None:
    """The final answer of an untagged response whose gold is not a number (module rules)."""
    phrase = _phrase(text)
    if phrase is not None:
        return phrase
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    spans = [a or b for a, b in _MATH_SPAN_RE.findall(line)]
    if spans:
        value = spans[-1]
    elif "=" in line:
        value = line.rsplit("=", 1)[1]
    elif " is " in line:
        value = line.rsplit(" is ", 1)[1]
    elif _TRAILING_GROUP_RE.search(line):
        value = _TRAILING_GROUP_RE.search(line).group(1)
    else:
        value = line
    value = value.strip().rstrip(".").strip()
    return value or None


def last_number(text: str) -> str | None:
    matches = _NUMBER_RE.findall(text)
    return matches[-1] if matches else None


def extract_answer(text: str, fallback: str = "last_number", numeric: bool = True) -> str | None:
    """The response's final answer string (module rules), or None when nothing is found.

    ``numeric``: whether the gold is a number; ``False`` keeps ``last_number`` from reducing a
    non-numeric answer (``\\frac{\\sqrt{30}}{2}``, ``(-3,-3)``, ``light blue``) to its last number.
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback={fallback!r} not in {FALLBACKS}")
    content = _answer_content(text)
    if content is not None:
        boxed = last_boxed(content)
        if boxed is not None:
            return boxed
        phrase = _phrase(content)  # "<answer>The answer is 7.</answer>" reads as 7
        return phrase if phrase is not None else content
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if fallback == "none":
        return None
    tail = text.rsplit(THINK_CLOSE, 1)[-1] if THINK_CLOSE in text else text
    # bound the work on adversarial input: conclusions live at the end of a response
    tail = tail[-4000:]
    if fallback == "last_number" and not numeric:
        return final_expression(tail)
    phrase = _phrase(tail)
    if phrase is not None:
        return phrase
    if fallback == "last_number":
        return last_number(tail)
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


# --------------------------------------------------------------------------- token spans
def _pieces(token_ids: Sequence[int], tokenizer: Any) -> list[str]:
    """Decode each token on its own, keeping special tokens (tags may be special tokens).

    Each distinct id is decoded once, in one ``batch_decode`` call when the tokenizer has it.
    """
    if not hasattr(tokenizer, "decode"):
        raise TypeError("tokenizer_or_tag_ids must be a tokenizer with .decode or a dict of tag id lists")
    unique = sorted(set(token_ids))
    options = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    if hasattr(tokenizer, "batch_decode"):
        texts = tokenizer.batch_decode([[t] for t in unique], **options)
    else:
        texts = [tokenizer.decode([t], **options) for t in unique]
    table = dict(zip(unique, texts, strict=True))
    return [table[t] for t in token_ids]


def _char_to_token_spans(pieces: list[str], spans: tuple[Span, Span]) -> tuple[Span, Span]:
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    out = []
    for start, end in spans:
        if (start, end) == ABSENT:
            out.append(ABSENT)
            continue
        if start == end:  # empty content: an empty span at the first token after it
            k = sum(1 for e in ends if e <= start)
            out.append((k, k))
            continue
        # first token whose end passes `start`, last token whose start is before `end`
        first = next(i for i, e in enumerate(ends) if e > start)
        last = next(i for i, e in enumerate(ends) if e >= end)
        out.append((first, last + 1))
    return out[0], out[1]


def _subseq_positions(ids: list[int], pattern: list[int]) -> list[int]:
    n = len(pattern)
    if n == 0:
        return []
    return [i for i in range(len(ids) - n + 1) if ids[i : i + n] == pattern]


def _spans_from_tag_ids(
    ids: list[int], tag_ids: dict[str, Sequence[int]], include_tags: bool = True
) -> tuple[Span, Span]:
    def seq(key: str, default_tag: str) -> list[int]:
        value = tag_ids.get(key, tag_ids.get(default_tag))
        if value is None:
            raise KeyError(f"tag ids lack {key!r} (or {default_tag!r})")
        return [int(value)] if isinstance(value, int) else [int(v) for v in value]

    t_open, t_close = seq("think_open", THINK_OPEN), seq("think_close", THINK_CLOSE)
    a_open, a_close = seq("answer_open", ANSWER_OPEN), seq("answer_close", ANSWER_CLOSE)
    think: Span = ABSENT
    opens = _subseq_positions(ids, t_open)
    closes = _subseq_positions(ids, t_close)
    if opens:
        after = [c for c in closes if c >= opens[0] + len(t_open)]
        if after:
            think = (
                (opens[0], after[0] + len(t_close)) if include_tags else (opens[0] + len(t_open), after[0])
            )
    elif closes:
        think = (0, closes[0] + len(t_close)) if include_tags else (0, closes[0])
    search_from = (think[1] + (0 if include_tags else len(t_close))) if think != ABSENT else 0
    answer: Span = ABSENT
    a_closes = _subseq_positions(ids, a_close)
    for start in reversed(_subseq_positions(ids, a_open)):
        if start < search_from:
            break
        after = [c for c in a_closes if c >= start + len(a_open)]
        if after:
            answer = (start, after[0] + len(a_close)) if include_tags else (start + len(a_open), after[0])
            break
    return think, answer


def find_spans_tokens(
    token_ids: Sequence[int], tokenizer_or_tag_ids: Any, include_tags: bool = True
) -> tuple[Span, Span]:
    """Token spans ``[start, end)`` of the think and answer blocks, ``(-1, -1)`` if absent.

    ``include_tags``: the spans cover the tag tokens too (default, the text contract above), or
    only the content between the tags (``False``: what CARE's region weights use by default, as the
    authors' code masks; a token that merges a tag with content still counts as content).

    ``tokenizer_or_tag_ids``: a tokenizer (each token is decoded on its own and the text rules of
    :func:`find_spans_text` are applied; a span covers every token overlapping its characters, so
    tags merged into neighbouring BPE tokens still count), or a dict mapping ``think_open``,
    ``think_close``, ``answer_open``, ``answer_close`` (or the tag strings) to token-id lists.
    """
    ids = [int(t) for t in token_ids]
    if isinstance(tokenizer_or_tag_ids, dict):
        return _spans_from_tag_ids(ids, tokenizer_or_tag_ids, include_tags)
    pieces = _pieces(ids, tokenizer_or_tag_ids)
    return _char_to_token_spans(pieces, find_spans_text("".join(pieces), include_tags))
