"""Load a policy (model + processor) from a tiny id, a local HF folder, or a hub id — one code path.

``tiny://<preset>`` is first resolved to a cached local folder; everything else goes straight to
``from_pretrained``. The processor is loaded by its image-only class (never ``AutoProcessor``,
which silently degrades to a tokenizer without torchvision) and checked to really handle images.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel

from care_core.models.processor import PROCESSOR_CLASSES
from care_core.models.tiny_vlm import TINY_SCHEME, TinySpec, ensure_tiny_vlm, parse_tiny_uri

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_CACHE_DIR = ".care/models"


def resolve_model_path(model_cfg: Any, cache_dir: str | None = None) -> str:
    """``model.path`` -> a local folder or hub id. ``tiny://<preset>`` builds/caches the tiny VLM.

    ``model_cfg`` is a ``care_core.config.ModelConfig`` (uses ``path``, ``cache_dir``, ``tiny``).
    """
    path = str(model_cfg.path)
    if not path.startswith(TINY_SCHEME):
        return path
    tiny = model_cfg.tiny
    preset = parse_tiny_uri(path)
    spec = TinySpec(preset=preset, seed=tiny.seed, vocab_size=tiny.vocab_size, image_size=tiny.image_size)
    return str(ensure_tiny_vlm(spec, cache_dir or model_cfg.cache_dir or DEFAULT_CACHE_DIR))


def looks_local(path: str) -> bool:
    """True for a reference that names a folder on disk rather than a hub id (``org/name``): absolute,
    ``./``-, ``../``- or ``~``-relative, more than two segments, or an ``org/name`` whose ``org`` is a folder."""
    if path.startswith(("/", "./", "../", "~", ".\\")) or path in (".", "..") or "\\" in path:
        return True
    parts = [p for p in path.split("/") if p]
    return len(parts) > 2 or path.endswith("/") or (len(parts) == 2 and Path(parts[0]).is_dir())


def check_model_path(path: str | Path, what: str = "model") -> None:
    """Refuse a local-looking model reference that is no HF model folder, before anything is loaded.

    Raises ``ModelPathError`` naming the path: a missing folder is never looked up on the hub."""
    from care_core.errors import ModelPathError

    ref = str(path)
    if ref.startswith(TINY_SCHEME):
        return
    local = Path(ref).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelPathError(f"{what} path is a file, not a model folder", ref)
        if not (local / "config.json").is_file():
            raise ModelPathError(f"{what} folder has no config.json (not a saved HF model)", ref)
        return
    if looks_local(ref):
        raise ModelPathError(
            f"{what} folder does not exist (a local path is not looked up on the model hub)", ref
        )


def _resolve(path: str, cache_dir: str | None) -> str:
    if path.startswith(TINY_SCHEME):
        spec = TinySpec(preset=parse_tiny_uri(path))
        return str(ensure_tiny_vlm(spec, cache_dir or DEFAULT_CACHE_DIR))
    check_model_path(path)
    return str(Path(path).expanduser()) if path.startswith("~") else path


def _model_type(path: str) -> str:
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        try:
            return str(json.loads(config_file.read_text())["model_type"])
        except (KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            from care_core.errors import FileFault

            raise FileFault(
                f"cannot read field 'model_type': {type(exc).__name__}: {exc}", str(config_file)
            ) from None
    return str(AutoConfig.from_pretrained(path).model_type)


def check_processor_handles_images(processor: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``processor`` turns an image into pixel values and image tokens."""
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise TypeError(
            f"{where}: processor {type(processor).__name__} has no image processor/tokenizer; images would be ignored"
        )
    factor = processor.image_processor.patch_size * processor.image_processor.merge_size
    image = Image.new("RGB", (2 * factor, 2 * factor), "white")
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    batch = processor(text=[text], images=[image], return_tensors="pt")
    image_tokens = int((batch["input_ids"] == processor.image_token_id).sum())
    if "pixel_values" not in batch or image_tokens == 0:
        raise TypeError(
            f"{where}: processor {type(processor).__name__} does not handle images (no pixel_values/image tokens)"
        )


def load_processor(path_or_id: str, cache_dir: str | None = None) -> Any:
    """Load the image-only Qwen-VL processor for a tiny id, local folder or hub id; fails loudly."""
    path = _resolve(path_or_id, cache_dir)
    model_type = _model_type(path)
    cls = PROCESSOR_CLASSES.get(model_type)
    if cls is None:
        raise ValueError(
            f"{path}: model_type {model_type!r} has no known image processor class; supported: {sorted(PROCESSOR_CLASSES)}"
        )
    processor = cls.from_pretrained(path)
    check_processor_handles_images(processor, path)
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(
    path_or_id: str,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    config: Any | None = None,
    writable: bool = False,
) -> PreTrainedModel:
    """The model alone, in eval mode (the frozen reference needs no processor).

    ``writable``: the weights will be trained. They are then read into the process's own memory
    instead of being memory-mapped from the safetensors file: the first write to a mapped weight
    copies its page on write, which cost 1.2 s for the 14 MB tiny model on the 2-core machine
    (the first optimizer step of every update stage), against 20 ms more load time.

    The config is parsed once (``config``: an already parsed one whose ``config.json`` is the same,
    e.g. the policy's for its reference: parsing a Qwen-VL config costs tens of milliseconds).
    ``sdpa`` is served by ``care_sdpa`` (``care_core.models.attention``: the same attention, with
    no copies of grouped key/value heads on CPU)."""
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype={dtype!r} is not one of {sorted(DTYPES)}")
    path = _resolve(path_or_id, cache_dir)
    from care_core.errors import file_fault

    if attn_implementation == "sdpa":
        from care_core.models.attention import register

        attn_implementation = register()
    with file_fault(path, "cannot load the model weights"):
        if config is None:
            config = AutoConfig.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(
            path,
            config=config,
            dtype=DTYPES[dtype],
            attn_implementation=attn_implementation,
            disable_mmap=True if writable else None,  # None: transformers decides (mapped)
        )
    if device is not None:
        model.to(device)
    model.eval()
    logger.info(
        "loaded %s from %s (%d params)",
        type(model).__name__,
        path,
        sum(p.numel() for p in model.parameters()),
    )
    return model


def same_config(path_a: str, path_b: str) -> bool:
    """True when two local model folders hold the same ``config.json`` (parsed, not byte-compared)."""
    a, b = Path(path_a) / "config.json", Path(path_b) / "config.json"
    if not (a.is_file() and b.is_file()):
        return False
    try:
        return json.loads(a.read_text()) == json.loads(b.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def load_policy(
    path_or_id: str,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    writable: bool = False,
) -> tuple[PreTrainedModel, Any]:
    """Return ``(model, processor)`` for ``tiny://<preset>``, a local HF folder or a hub id.

    ``dtype``: ``float32`` | ``bfloat16`` | ``float16``. The model comes back in eval mode
    (``load_model``; ``writable`` for a model that will be trained).
    """
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype={dtype!r} is not one of {sorted(DTYPES)}")
    processor = load_processor(_resolve(path_or_id, cache_dir))
    return load_model(path_or_id, dtype, attn_implementation, cache_dir, device, writable=writable), processor


def save_policy(
    model: torch.nn.Module, processor: Any, out_dir: str | Path, state_dict: dict | None = None
) -> Path:
    """Save ``model`` (+ ``processor``) as an HF folder at ``out_dir``, atomically.

    Everything is written to a private sibling folder and renamed in when complete
    (``care_core.fsio.publish_dir``): a crash leaves ``out_dir`` as it was, never half-written."""
    from care_core.fsio import publish_dir, staging_dir

    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        processor.save_pretrained(tmp)
        publish_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
