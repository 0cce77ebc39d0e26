"""Issue 17 item 5: crash-safe round checkpoints (rewrite, corrupt latest, fallback) and item 9's
``latest`` containment."""

from __future__ import annotations

import json
import logging
import os

import pytest

from care_core.training import checkpoint as ckpt
from care_core.training.checkpoint import CheckpointError, commit_round, find_resume, verify_round, work_dir


def _round(run, r, payload: bytes, step: int):
    wd = work_dir(run, r)
    (wd / "policy").mkdir(parents=True)
    (wd / "policy" / "model.safetensors").write_bytes(payload)
    return commit_round(run, r, {"round": r, "global_step": step})


def test_every_round_carries_a_verifying_manifest(tmp_path):
    final = _round(tmp_path, 1, b"w1" * 100, 1)
    files = json.loads((final / "manifest.json").read_text())["files"]
    assert set(files) == {"policy/model.safetensors", "state.json", "rng.pt"}
    assert verify_round(final) is None
    (final / "policy" / "model.safetensors").write_bytes(b"w1" * 99 + b"x1")  # same size, other bytes
    assert "does not match its checksum" in verify_round(final)


def test_kill_while_rewriting_a_round_keeps_the_old_copy(tmp_path, monkeypatch, caplog):
    """Rewriting round 2 (resume=never or resume from round 1): a kill between moving the old round
    away and renaming the new one in leaves ``latest`` dangling; resume uses the complete old copy."""
    _round(tmp_path, 1, b"w1", 1)
    _round(tmp_path, 2, b"w2-old", 2)
    real = os.replace

    def killed_before_rename_in(src, dst):
        if str(src).endswith("round_0002.tmp"):  # the old copy has been moved aside by now
            raise KeyboardInterrupt("SIGKILL stand-in")
        return real(src, dst)

    wd = work_dir(tmp_path, 2)
    (wd / "policy").mkdir(parents=True)
    (wd / "policy" / "model.safetensors").write_bytes(b"w2-new")
    monkeypatch.setattr(ckpt.os, "replace", killed_before_rename_in)
    with pytest.raises(KeyboardInterrupt):
        commit_round(tmp_path, 2, {"round": 2, "global_step": 20})
    monkeypatch.setattr(ckpt.os, "replace", real)
    assert (tmp_path / "latest").read_text().strip() == "rounds/round_0002"
    assert not (tmp_path / "rounds" / "round_0002").exists()
    with caplog.at_level(logging.WARNING):
        point = find_resume(tmp_path, "auto")
    assert point.round_dir.name == "round_0002.prev" and point.state["global_step"] == 2
    assert (point.policy_dir / "model.safetensors").read_bytes() == b"w2-old"
    assert "checkpoint fallback" in caplog.text


def test_rewrite_replaces_round_and_removes_old_copy(tmp_path):
    _round(tmp_path, 1, b"w1", 1)
    _round(tmp_path, 1, b"w1-new", 7)
    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == ["round_0001"]
    assert find_resume(tmp_path, "auto").state["global_step"] == 7


def test_corrupt_latest_round_falls_back_with_a_warning(tmp_path, caplog):
    _round(tmp_path, 1, b"w1", 1)
    final = _round(tmp_path, 2, b"w2", 2)
    (final / "policy" / "model.safetensors").write_bytes(b"w?")  # torn / bit-rotted weights
    with caplog.at_level(logging.WARNING):
        point = find_resume(tmp_path, "auto")
    assert point.round_index == 1 and point.round_dir.name == "round_0001"
    assert "round_0002/policy/model.safetensors does not match its checksum" in caplog.text


def test_nothing_verified_is_an_error_not_a_silent_restart(tmp_path):
    final = _round(tmp_path, 1, b"w1", 1)
    (final / "state.json").unlink()
    with pytest.raises(
        CheckpointError, match=r"no earlier round is complete and verified; set train.resume=never"
    ):
        find_resume(tmp_path, "auto")


def test_explicit_corrupt_round_is_refused(tmp_path):
    final = _round(tmp_path, 1, b"w1", 1)
    (final / "rng.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"rng.pt does not match its checksum"):
        find_resume(tmp_path, str(final))


@pytest.mark.parametrize("pointer", ["../../..", "/etc", "rounds/../../x/round_0001", "data"])
def test_latest_pointer_outside_rounds_is_refused(tmp_path, pointer):
    _round(tmp_path, 1, b"w1", 1)
    (tmp_path / "latest").write_text(pointer + "\n")
    with pytest.raises(CheckpointError, match=r"latest holds .*not a round folder inside .*rounds; refusing"):
        find_resume(tmp_path, "auto")
