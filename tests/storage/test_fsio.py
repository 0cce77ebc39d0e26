"""Crash-safe file operations (care_core/fsio.py)."""

from __future__ import annotations

import os

import pytest

from care_core import fsio


def test_fsync_tree_flushes_every_file_and_folder(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    files = [tmp_path / "x.bin", tmp_path / "a" / "y.json", tmp_path / "a" / "b" / "z.txt"]
    for f in files:
        f.write_bytes(b"data")
    seen = []
    real = fsio._fsync_path
    monkeypatch.setattr(fsio, "_fsync_path", lambda p: (seen.append(p), real(p)))
    fsio.fsync_tree(tmp_path)
    expected = {str(f) for f in files} | {str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")}
    assert sorted(seen) == sorted(expected)


def test_fsync_tree_raises_the_flush_error(tmp_path, monkeypatch):
    for i in range(4):
        (tmp_path / f"f{i}").write_bytes(b"x")

    def failing(path):
        if path.endswith("f2"):
            raise OSError(5, "Input/output error", path)

    monkeypatch.setattr(fsio, "_fsync_path", failing)
    with pytest.raises(OSError, match="Input/output error"):
        fsio.fsync_tree(tmp_path)


def test_publish_dir_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    staging = fsio.staging_dir(out)
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    fsio.publish_dir(staging, out)
    assert sorted(os.listdir(out)) == ["new.txt"] and not staging.exists()
    assert not any(p.name.startswith(".model.old") for p in tmp_path.iterdir())
