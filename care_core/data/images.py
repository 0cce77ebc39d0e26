"""Image helpers for ingestion: resolve native image references, validate, hash.

An image in an example row is ``{"bytes": PNG/JPEG bytes, "path": name}`` (like HF ``datasets.Image``
with ``decode=False``). Native datasets give images as such structs, raw bytes, PIL images, or
paths relative to the dataset folder (or to an image root, for Vision-R1-cold).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from care_core.storage.paths import is_contained

KEEP_FORMATS = ("PNG", "JPEG")


class BadRow(ValueError):
    """A native row that cannot become an example row; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


def resolve_path(ref: str, roots: Sequence[Path]) -> Path | None:
    """First existing ``root / ref`` that stays inside ``root`` (an absolute ``ref`` only inside a root), else None."""
    for root in roots:
        if not is_contained(root, ref):
            continue
        path = root / ref
        if path.is_file():
            return path
    return None


def to_struct(value: Any, roots: Sequence[Path], field: str) -> dict[str, Any]:
    """Turn a native image value into ``{"bytes", "path"}``; raises ``BadRow`` when it is missing."""
    if value is None:
        raise BadRow(field, "missing image (null)")
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": getattr(value, "filename", "") or ""}
    if isinstance(value, bytes | bytearray):
        return {"bytes": bytes(value), "path": ""}
    if isinstance(value, dict):
        data, ref = value.get("bytes"), value.get("path")
        if data:
            return {"bytes": bytes(data), "path": ref or ""}
        if ref:
            return to_struct(str(ref), roots, field)
        raise BadRow(field, "missing image (struct without bytes or path)")
    if isinstance(value, str):
        if not value.strip():
            raise BadRow(field, "missing image (empty path)")
        if not any(is_contained(root, value) for root in roots):
            where = ", ".join(str(r) for r in roots) or "<no dataset folder>"
            raise BadRow(field, f"image path {value!r} leaves the dataset folder (allowed under {where})")
        path = resolve_path(value, roots)
        if path is None:
            where = ", ".join(str(r) for r in roots) or "<no image root>"
            raise BadRow(field, f"missing image file {value!r} (looked under {where})")
        return {"bytes": path.read_bytes(), "path": value}
    raise BadRow(field, f"unsupported image value of type {type(value).__name__}")


def checked_image(struct: dict[str, Any], field: str) -> tuple[dict[str, Any], str]:
    """Decode the image fully; re-encode to PNG unless it is PNG/JPEG. Returns (struct, pixel hash).

    The hash is SHA-1 over mode, size and RGB pixels, so the same picture stored in two encodings
    (or two files) deduplicates.
    """
    data = struct.get("bytes") or b""
    if not data:
        raise BadRow(field, "missing image (empty bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
            image.load()
            rgb = image.convert("RGB")
    except UnidentifiedImageError:
        raise BadRow(field, "undecodable image: unknown image format") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRow(field, f"undecodable image: {type(exc).__name__}: {exc}") from None
    if rgb.width == 0 or rgb.height == 0:
        raise BadRow(field, "image has zero size")
    digest = hashlib.sha1(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    if fmt not in KEEP_FORMATS:
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        struct = {"bytes": buffer.getvalue(), "path": struct.get("path") or ""}
    return {"bytes": bytes(struct["bytes"]), "path": struct.get("path") or ""}, digest.hexdigest()
