"""Byte-level BPE tokenizer for the tiny offline VLM, trained with ``tokenizers`` on a generated corpus.

Qwen special tokens are added as special tokens; the reasoning tags ``<think>``, ``</think>``,
``<answer>``, ``</answer>`` are added as *normal* single tokens so that
``decode(..., skip_special_tokens=True)`` keeps them (tag-based rewards read them).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Order fixes the ids right after the BPE merges; <|endoftext|> doubles as pad.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Qwen2-style pre-tokenisation: digits are split one by one, words keep a leading space/punctuation.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def base_corpus(seed: int, n_random: int = 2000) -> list[str]:
    """Digits, letters, punctuation and random alphanumeric strings (so any short answer tokenises)."""
    rng = random.Random(seed)
    lines = [string.digits, string.ascii_lowercase, string.ascii_uppercase, string.punctuation]
    lines += [" ".join(str(i) for i in range(0, 101))]
    lines += [f"({letter}) option {letter}. Answer: {letter}" for letter in string.ascii_uppercase[:10]]
    alphabet = string.ascii_letters + string.digits + " .,:;+-*/=()"
    for _ in range(n_random):
        lines.append("".join(rng.choice(alphabet) for _ in range(rng.randint(4, 24))))
    return lines


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with ``vocab_size`` merges+alphabet, then add Qwen specials and the tags.

    The resulting vocabulary is ``vocab_size + len(SPECIAL_TOKENS) + len(TAG_TOKENS)`` at most.
    Training is deterministic for a fixed corpus.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
    )
    return fast
