"""Reflection-Guided Resampling (docs/method.md §6): repair the nearest hard negative once.

Pure pieces: the repair cue, the repair prefix built from a failed response, which negative a
group repairs, and how the re-decoded continuation becomes a trained sequence. The rollout stage
does the decoding, scoring and row writing.

Prefix rules (``build_repair_prefix``):

* with ``</think>``: the cue goes right before the first ``</think>``;
* with ``<think>`` but no ``</think>`` (e.g. truncated): the think text runs up to ``<answer>``
  (or the end); the cue and ``</think>`` are appended there;
* without ``<think>``: the text before ``<answer>`` is kept and a ``<think>`` holding only the
  cue is opened and closed after it;
* then the text is cut right after the ``<answer>`` that follows ``</think>`` (``<answer>`` is
  appended when there is none).

Template ``none`` is the promptless-resampling control: same prefix, no cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from care_core.algorithms.selection import failure_mask, positive_mask, select_anchor, select_hard_negatives

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN = "<answer>"

SENTENCE_CUE = (
    "Your previous reasoning had an error. Find the mistake, correct it, and re-derive. Keep it concise."
)
STRUCTURED_CUE = (
    "<repair>\nMistake: the reasoning above contains an error.\n"
    "Fix: find the mistake, correct it, and re-derive it concisely.\n"
    "Corrected final answer:\n</repair>"
)
MAX_CUE_TOKENS = 64
TEMPLATES = ("structured", "sentence", "none")


def repair_cue(template: str, tokenizer: Any | None = None, max_tokens: int = MAX_CUE_TOKENS) -> str:
    """The cue text for ``template``; the structured block is capped at ``max_tokens`` tokens of
    ``tokenizer`` (when given). ``none`` -> empty string."""
    if template not in TEMPLATES:
        raise ValueError(f"algorithm.care.rgr.template={template!r} is not one of {list(TEMPLATES)}")
    if template == "none":
        return ""
    if template == "sentence":
        return SENTENCE_CUE
    cue = STRUCTURED_CUE
    if tokenizer is not None:
        ids = tokenizer(cue, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            cue = tokenizer.decode(ids[:max_tokens], skip_special_tokens=False)
    return cue


def build_repair_prefix(response: str, cue: str) -> str:
    """Repair prefix of a failed ``response`` (rules in the module docstring); ends with ``<answer>``."""
    close = response.find(THINK_CLOSE)
    open_ = response.find(THINK_OPEN)
    if close != -1 and (open_ == -1 or open_ < close):
        head = response[:close] + cue + THINK_CLOSE
        rest = response[close + len(THINK_CLOSE) :]
    elif open_ != -1:
        ans = response.find(ANSWER_OPEN, open_)
        think = response[: ans if ans != -1 else len(response)]
        head = think + cue + THINK_CLOSE
        rest = response[ans:] if ans != -1 else ""
    else:
        ans = response.find(ANSWER_OPEN)
        before = response[: ans if ans != -1 else len(response)]
        head = before + THINK_OPEN + cue + THINK_CLOSE
        rest = response[ans:] if ans != -1 else ""
    ans = rest.find(ANSWER_OPEN)
    if ans == -1:
        return head + ANSWER_OPEN
    return head + rest[: ans + len(ANSWER_OPEN)]


@dataclass
class GroupView:
    """What repair targeting needs from one group of G rollouts (tensors of length G)."""

    reward: torch.Tensor
    accuracy: torch.Tensor
    embeddings: torch.Tensor  # [G, D]
    think_len: torch.Tensor
    answer_len: torch.Tensor


def repair_target(group: GroupView, K: int, M: int, positive_rule: str = "accuracy") -> int:
    """Column of the negative to repair: the nearest hard negative to the anchor (first
    farthest-first pick), or -1 when the group has no positive or no failure."""
    valid = torch.ones_like(group.reward, dtype=torch.bool)
    pos = positive_mask(group.reward, group.accuracy, valid, positive_rule)
    fail = failure_mask(group.reward, group.accuracy, valid, positive_rule)
    if not bool(pos.any()) or not bool(fail.any()):
        return -1
    anchor = select_anchor(pos, group.think_len, group.answer_len)
    picks = select_hard_negatives(group.embeddings, group.embeddings[anchor], fail, K, M)
    return int(picks[0]) if len(picks) else -1


@dataclass
class RepairedSequence:
    """A trained RGR sequence: ``response_ids`` after the original prompt, ``loss_mask`` (0 on
    copied/cue tokens), and ``scored_text`` (prefix + continuation, what the verifier reads)."""

    response_ids: list[int]
    loss_mask: list[int]
    scored_text: str


def assemble_repair(
    prefix_ids: Sequence[int],
    prefix_text: str,
    continuation_ids: Sequence[int],
    continuation_text: str,
    train_on: str,
) -> RepairedSequence:
    """``continuation``: train on prompt + continuation only (reference code);
    ``repaired_response``: prompt + prefix + continuation with the prefix masked out of the loss."""
    cont = [int(t) for t in continuation_ids]
    if train_on == "continuation":
        return RepairedSequence(cont, [1] * len(cont), prefix_text + continuation_text)
    if train_on == "repaired_response":
        pre = [int(t) for t in prefix_ids]
        return RepairedSequence(pre + cont, [0] * len(pre) + [1] * len(cont), prefix_text + continuation_text)
    raise ValueError(
        f"algorithm.care.rgr.train_on={train_on!r} is not one of ['continuation', 'repaired_response']"
    )
