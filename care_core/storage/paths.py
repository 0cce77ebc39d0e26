"""Containment of untrusted relative paths (run names, dataset image paths, S3 keys, pointers) in a base folder.

The check is lexical (``os.path.normpath``): ``..`` segments and absolute paths that leave the base
are refused, while symlinks inside the base (the HF hub cache links snapshots to blobs) still work.
"""

from __future__ import annotations

import os
from pathlib import Path

from care_core.errors import SecurityError


def is_contained(base: str | Path, relative: str | Path) -> bool:
    """True if ``base / relative`` stays inside ``base`` after normalising ``..`` (lexically)."""
    root = os.path.normpath(os.path.abspath(base))
    target = os.path.normpath(os.path.join(root, os.fspath(relative)))
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def contained(base: str | Path, relative: str | Path, what: str) -> Path:
    """``base / relative``, or ``SecurityError`` naming ``what`` when it would leave ``base``."""
    if not str(relative) or not is_contained(base, relative):
        raise SecurityError(
            f"{what} {str(relative)!r} leaves its base folder {os.fspath(base)!r}",
            str(base),
            hint="use a plain relative name inside the folder (no '..' segments, no absolute path)",
        )
    return Path(base) / relative


__all__ = ["contained", "is_contained"]
