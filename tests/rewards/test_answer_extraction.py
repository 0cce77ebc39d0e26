"""Answer extraction, format rule, text and token spans, and the math-verify time guard."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from care_core.rewards import extract_answer, find_spans_text, find_spans_tokens, format_ok, last_boxed
from care_core.rewards.guard import call_with_timeout
from care_core.rewards.verifiers import verify_expression


# --------------------------------------------------------------------------- extraction
@pytest.mark.parametrize(
    ("text", "fallback", "expected"),
    [
        ("<think>a</think><answer> 42 </answer>", "none", "42"),
        ("<answer>\\boxed{7}</answer>", "none", "7"),
        ("<answer>x is \\boxed{\\frac{1}{2}} so</answer>", "none", "\\frac{1}{2}"),
        ("so \\boxed{1} then \\boxed{2}", "none", "2"),
        ("\\boxed{\\frac{\\sqrt{2}}{\\{3\\}}}", "none", "\\frac{\\sqrt{2}}{\\{3\\}}"),
        ("\\fbox{5}", "none", "5"),
        ("\\boxed{unclosed", "none", None),
        ("no answer at all 12", "none", None),
        ("values 3 and 4.5", "last_number", "4.5"),
        ("minus \u22123", "last_number", "\u22123"),
        ("total 1,234,567 items", "last_number", "1,234,567"),
        ("The answer is 12. Therefore 13 is wrong", "last_number", "12"),
        ("The answer is 2.5.", "last_number", "2.5"),
        ("line one\nline two\n\n", "last_line", "line two"),
        ("<think>the answer is 3</think>then 4", "last_number", "4"),
        ("<answer>1</answer><answer>2", "none", "1"),
        ("", "last_line", None),
    ],
)
def test_extract_answer(text: str, fallback: str, expected: str | None) -> None:
    assert extract_answer(text, fallback) == expected


def test_extract_answer_rejects_unknown_fallback() -> None:
    with pytest.raises(ValueError, match="fallback"):
        extract_answer("x", "first_number")


def test_last_boxed_nested() -> None:
    assert last_boxed("a \\boxed{x^{2}} b \\boxed{\\{a, \\{b\\}\\}}") == "\\{a, \\{b\\}\\}"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<think>r</think><answer>4</answer>", True),
        ("  <think>r</think>\n\n<answer>4</answer>\n", True),
        ("<think></think><answer>4</answer>", True),
        ("<think>r</think><answer>  </answer>", False),
        ("<think>r</think>text<answer>4</answer>", False),
        ("<think>r</think><answer>4</answer> trailing", False),
        ("lead <think>r</think><answer>4</answer>", False),
        ("<answer>4</answer><think>r</think>", False),
        ("<think>r</think><answer>4", False),
        ("<think>r<think>s</think><answer>4</answer>", False),
        ("<think>r</think><answer>4</answer><answer>5</answer>", False),
        ("r</think><answer>4</answer>", False),
        ("", False),
    ],
)
def test_format_rule(text: str, ok: bool) -> None:
    assert format_ok(text) is ok


# --------------------------------------------------------------------------- text spans
def test_text_spans_include_tags() -> None:
    text = "<think>ab</think> <answer>c</answer>"
    think, answer = find_spans_text(text)
    assert text[think[0] : think[1]] == "<think>ab</think>"
    assert text[answer[0] : answer[1]] == "<answer>c</answer>"


@pytest.mark.parametrize(
    ("text", "think", "answer"),
    [
        ("plain", (-1, -1), (-1, -1)),
        ("xy</think><answer>1</answer>", (0, 10), (10, 28)),  # <think> was in the prompt
        ("<think>a</think><answer>1", (0, 16), (-1, -1)),  # truncated answer
        ("<think><answer>0</answer></think><answer>1</answer>", (0, 33), (33, 51)),  # tag inside think
        ("<answer>1</answer>", (-1, -1), (0, 18)),
    ],
)
def test_text_span_rules(text: str, think: tuple[int, int], answer: tuple[int, int]) -> None:
    assert find_spans_text(text) == (think, answer)


# --------------------------------------------------------------------------- token spans
@pytest.fixture(scope="module")
def tokenizers_pair():
    """Two real byte-level BPE tokenizers: tags as special tokens, and tags split into pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["the answer is 42 because three plus four is seven", "think about the shapes and colours"] * 20
    out = []
    for special in (True, False):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            corpus,
            trainers.BpeTrainer(
                vocab_size=400, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
        if special:
            fast.add_special_tokens(
                {"additional_special_tokens": ["<think>", "</think>", "<answer>", "</answer>"]}
            )
        out.append(fast)
    return out


def test_token_spans_with_special_tag_tokens(tokenizers_pair) -> None:
    tok = tokenizers_pair[0]
    text = "<think>three plus four</think><answer>7</answer>"
    ids = tok.encode(text, add_special_tokens=False)
    think, answer = find_spans_tokens(ids, tok)
    tags = {
        name: tok.convert_tokens_to_ids(name) for name in ("<think>", "</think>", "<answer>", "</answer>")
    }
    assert ids[think[0]] == tags["<think>"] and ids[think[1] - 1] == tags["</think>"]
    assert ids[answer[0]] == tags["<answer>"] and ids[answer[1] - 1] == tags["</answer>"]
    assert answer[0] == think[1] and answer[1] == len(ids)
    # the same spans from explicit tag ids
    by_ids = find_spans_tokens(ids, {"think_open": [tags["<think>"]], "think_close": [tags["</think>"]],
                                     "answer_open": [tags["<answer>"]], "answer_close": [tags["</answer>"]]})  # fmt: skip
    assert by_ids == (think, answer)


def test_token_spans_with_split_tags(tokenizers_pair) -> None:
    tok = tokenizers_pair[1]
    text = "so<think>three plus four</think>\n<answer>7</answer>"
    ids = tok.encode(text, add_special_tokens=False)
    think, answer = find_spans_tokens(ids, tok)
    decoded_think = tok.decode(ids[think[0] : think[1]])
    decoded_answer = tok.decode(ids[answer[0] : answer[1]])
    assert "<think>three plus four</think>" in decoded_think
    assert decoded_answer.strip().endswith("<answer>7</answer>")
    assert think[1] <= answer[0] + 1


def test_token_spans_absent(tokenizers_pair) -> None:
    tok = tokenizers_pair[0]
    ids = tok.encode("three plus four", add_special_tokens=False)
    assert find_spans_tokens(ids, tok) == ((-1, -1), (-1, -1))


@settings(max_examples=60, deadline=None)
@given(
    before=st.text(alphabet="abc 12", max_size=6),
    think=st.text(alphabet="abc 12<>", max_size=12),
    answer=st.text(alphabet="abc 12", max_size=6),
    after=st.text(alphabet="abc ", max_size=4),
)
def test_token_spans_match_text_spans_for_tag_ids(before: str, think: str, answer: str, after: str) -> None:
    """With one id per character and tags as single ids, token spans equal the text spans' tag positions."""
    tags = {"<think>": 1001, "</think>": 1002, "<answer>": 1003, "</answer>": 1004}
    pieces = [
        before,
        "<think>",
        think,
        "</think>",
        answer and "<answer>",
        answer,
        answer and "</answer>",
        after,
    ]
    ids: list[int] = []
    text_for_ids = ""
    for piece in pieces:
        if piece in tags:
            ids.append(tags[piece])
            text_for_ids += "\x00"  # one char per token keeps index maps trivial
        else:
            ids.extend(ord(c) for c in piece)
            text_for_ids += piece
    think_span, answer_span = find_spans_tokens(ids, tags)
    assert ids[think_span[0]] == tags["<think>"] and ids[think_span[1] - 1] == tags["</think>"]
    if answer:
        assert ids[answer_span[0]] == tags["<answer>"] and ids[answer_span[1] - 1] == tags["</answer>"]
        assert answer_span[0] >= think_span[1]
    else:
        assert answer_span == (-1, -1)


# --------------------------------------------------------------------------- time guard
def _sleep_then(value: float) -> float:
    time.sleep(value)
    return value


def test_guard_main_thread_interrupts_and_restores_handler() -> None:
    import signal

    before = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    assert call_with_timeout(_sleep_then, (5.0,), 0.2) == (False, None)
    assert time.monotonic() - start < 1.0
    assert call_with_timeout(_sleep_then, (0.01,), 1.0) == (True, 0.01)
    assert signal.getsignal(signal.SIGALRM) is before


def test_guard_bounds_math_verify_in_a_worker_thread() -> None:
    """Signals cannot be used off the main thread: the child-process path must bound time too."""
    results: dict[str, object] = {}

    def work() -> None:
        start = time.monotonic()
        results["slow"] = verify_expression("x^" * 50 + "2", "x^2", timeout_s=1.0)
        results["slow_s"] = time.monotonic() - start
        results["fast"] = verify_expression("(x+1)^2", "x^2+2x+1", timeout_s=20.0)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert results["slow"] is False
    assert (
        results["slow_s"] < 25.0
    )  # 1 s limit + the one-off worker spawn (slow on a loaded box); unguarded > 30 s
    assert results["fast"] is True


def test_guard_keeps_an_outer_alarm_deadline() -> None:
    import signal

    fired: list[bool] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.6)
        assert call_with_timeout(_sleep_then, (0.3,), 2.0) == (True, 0.3)
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < remaining <= 0.31  # 0.6 s minus the 0.3 s spent inside the guard
        time.sleep(remaining + 0.1)
        assert fired == [True]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_answer_tags_inside_think_do_not_count() -> None:
    text = "<think>maybe <answer>3</answer>? no</think>so it is 4"
    assert find_spans_text(text)[1] == (-1, -1)
    assert extract_answer(text, "last_number") == "4"
    assert extract_answer(text, "none") is None
