"""Random-initialised tiny Qwen2.5-VL built fully offline, saved as a normal HF folder, cached by hash.

Architecture: ``Qwen2_5_VLForConditionalGeneration`` (the paper's model family) with small sizes,
8-pixel patches and 2x2 merging, so a 64x64 image becomes 16 image tokens. The tokenizer is a
byte-level BPE trained on the synthetic-task corpus (``tokenizer.py``); the processor is the
image-only Qwen2.5-VL processor (``processor.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from care_core.models.processor import CHAT_TEMPLATE, ImageOnlyQwen2_5_VLProcessor
from care_core.models.tokenizer import base_corpus, train_tokenizer

logger = logging.getLogger(__name__)

BUILDER_VERSION = 3  # bump when the build recipe changes (invalidates caches)
TINY_SCHEME = "tiny://"


@dataclass(frozen=True)
class TinyArch:
    """Sizes of one preset. Text head_dim = hidden / heads; ``mrope_section`` sums to head_dim / 2."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    mrope_section: tuple[int, int, int]
    patch_size: int = 8
    merge_size: int = 2


PRESETS: dict[str, TinyArch] = {
    # < 1M params: unit tests only (learns the format, ignores the image)
    "micro": TinyArch(64, 2, 2, 1, 128, 32, 1, 2, 64, (4, 6, 6)),
    # ~3.5M params: learns the synthetic counting tasks on 2 CPU cores in minutes
    "tiny": TinyArch(256, 4, 4, 2, 512, 128, 2, 4, 256, (8, 12, 12)),
    # ~30M params
    "small": TinyArch(512, 8, 8, 4, 1536, 256, 4, 4, 768, (8, 12, 12)),
}


@dataclass(frozen=True)
class TinySpec:
    """Everything that determines the built folder (its hash names the cache entry)."""

    preset: str = "tiny"
    seed: int = 0
    vocab_size: int = 1024
    image_size: int = 64

    def key(self) -> str:
        blob = json.dumps(
            {"v": BUILDER_VERSION, **asdict(self), "arch": asdict(PRESETS[self.preset])}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _corpus(seed: int) -> list[str]:
    """Tokenizer training text: synthetic problems/solutions + prompt text + digits/letters."""
    from care_core.config import DataConfig

    lines = base_corpus(seed)
    lines.append(DataConfig().system_prompt)
    try:  # the synthetic suite supplies the task vocabulary
        from care_core.data.synthetic import corpus_texts
    except ImportError:  # pragma: no cover - only while synthetic.py is absent
        corpus_texts = None
    if corpus_texts is not None:
        # as the chat template lays them out, so role names become single tokens
        lines += [
            f"system\n{DataConfig().system_prompt}\nuser\n{text}\nassistant\n"
            for text in corpus_texts(n=3000, seed=seed)
        ]
    return lines


def build_processor(spec: TinySpec) -> ImageOnlyQwen2_5_VLProcessor:
    """Tokenizer (trained) + Qwen2-VL PIL image processor wrapped in the image-only processor."""
    arch = PRESETS[spec.preset]
    tokenizer = train_tokenizer(_corpus(spec.seed), spec.vocab_size)
    factor = arch.patch_size * arch.merge_size
    # Images up to 2x the synthetic side keep their size; larger ones are downscaled.
    max_pixels = max(factor * factor, (2 * spec.image_size) ** 2)
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=arch.patch_size,
        merge_size=arch.merge_size,
        temporal_patch_size=2,
        min_pixels=factor * factor,
        max_pixels=max_pixels,
    )
    return ImageOnlyQwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """Ids of the Qwen-VL special tokens a model config names (bos/eos/pad, image, video, vision span)."""
    names = (
        "<|endoftext|>",
        "<|im_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
        "<|vision_start|>",
        "<|vision_end|>",
    )
    return {name: tokenizer.convert_tokens_to_ids(name) for name in names}


def build_config(spec: TinySpec, processor: ImageOnlyQwen2_5_VLProcessor) -> Qwen2_5_VLConfig:
    arch = PRESETS[spec.preset]
    tok = processor.tokenizer
    ids = special_token_ids(tok)
    vocab = ((len(tok) + 63) // 64) * 64  # pad the embedding to a multiple of 64
    window = arch.patch_size * arch.merge_size * 2  # 2x2 merged tokens per attention window
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": arch.hidden,
            "intermediate_size": arch.intermediate,
            "num_hidden_layers": arch.layers,
            "num_attention_heads": arch.heads,
            "num_key_value_heads": arch.kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": list(arch.mrope_section),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": arch.vision_depth,
            "hidden_size": arch.vision_hidden,
            "intermediate_size": arch.vision_intermediate,
            "num_heads": arch.vision_heads,
            "patch_size": arch.patch_size,
            "spatial_merge_size": arch.merge_size,
            "temporal_patch_size": 2,
            "window_size": window,
            "out_hidden_size": arch.hidden,
            "fullatt_block_indexes": [arch.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_vlm(spec: TinySpec, out_dir: str | Path) -> dict[str, Any]:
    """Build the model + processor for ``spec`` into ``out_dir`` (created); returns build info."""
    if spec.preset not in PRESETS:
        raise ValueError(f"model.tiny.preset={spec.preset!r} is not one of {sorted(PRESETS)}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    processor = build_processor(spec)
    config = build_config(spec, processor)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    info = {
        "spec": asdict(spec),
        "key": spec.key(),
        "builder_version": BUILDER_VERSION,
        "architecture": "Qwen2_5_VLForConditionalGeneration",
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(processor.tokenizer),
        "build_seconds": round(time.perf_counter() - start, 3),
    }
    (out_dir / "tiny_model.json").write_text(json.dumps(info, indent=2))
    return info


def parse_tiny_uri(uri: str) -> str:
    """``tiny://tiny`` -> ``"tiny"``."""
    if not uri.startswith(TINY_SCHEME):
        raise ValueError(f"not a tiny model id: {uri!r} (expected {TINY_SCHEME}<preset>)")
    preset = uri[len(TINY_SCHEME) :].strip("/") or "tiny"
    if preset not in PRESETS:
        raise ValueError(
            f"model.path={uri!r}: unknown tiny preset {preset!r}; choose one of {sorted(PRESETS)}"
        )
    return preset


def ensure_tiny_vlm(spec: TinySpec, cache_dir: str | Path) -> Path:
    """Return ``cache_dir/<hash>``, building it first if missing (atomic: temp dir + rename)."""
    cache_dir = Path(cache_dir)
    target = cache_dir / spec.key()
    if (target / "tiny_model.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key()}-", dir=cache_dir))
    try:
        info = build_tiny_vlm(spec, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; its folder is equivalent
            if not (target / "tiny_model.json").is_file():
                raise
        logger.info(
            "built tiny VLM %s (%d params, %.1fs) at %s",
            spec.preset,
            info["params"],
            info["build_seconds"],
            target,
        )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
