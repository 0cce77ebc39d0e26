"""Issue 17 item 8 (second bullet): a failed ingest leaves its destination exactly as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from care_core.config import build_recipe
from care_core.schema import SchemaError, read_examples
from care_core.stages.ingest import STAGING, run_ingest
from care_core.stages.sft import sft_rows

SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
GOOD = {"name": "geometry3k", "path": str(SOURCES / "geometry3k"), "split": "train"}
BAD = {
    "name": "geometry3k",
    "path": str(SOURCES / "bad_geometry3k"),
    "split": "train",
}  # bad rows, then a good one
SFT = {"name": "vision_r1_cold", "path": str(SOURCES / "vision_r1_cold"),
       "image_root": str(SOURCES / "vision_r1_cold_images"), "role": "sft"}  # fmt: skip


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
    }


def test_failed_ingest_into_an_earlier_run_leaves_it_untouched(tmp_path: Path) -> None:
    out = tmp_path / "data"
    first = run_ingest(build_recipe({"data": {"sources": [GOOD, SFT]}}), out)
    before = _digest(out)
    assert {"train.parquet", "sft.parquet", "manifest.json"} <= set(before)
    # the good source is read (and staged) before the bad one stops the run
    with pytest.raises(SchemaError, match="bad_geometry3k"):
        run_ingest(build_recipe({"data": {"sources": [GOOD, BAD]}}), out)
    assert _digest(out) == before  # same files, same bytes, no staging folder left
    assert not (out / STAGING).exists()
    assert sft_rows(out)[1] == out / "sft.parquet" and first["counts"]["sft"] == len(sft_rows(out)[0])


def test_failed_ingest_into_a_new_folder_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(SchemaError):
        run_ingest(build_recipe({"data": {"sources": [GOOD, BAD]}}), tmp_path / "new" / "data")
    assert not (tmp_path / "new" / "data").exists()


def test_interrupted_ingest_leaves_the_destination_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the last split file is written (train and test already done): nothing reaches ``out``,
    so no mix of new train rows with the earlier run's test/sft rows."""
    import care_core.stages.ingest as ingest

    out = tmp_path / "data"
    run_ingest(build_recipe({"data": {"sources": [GOOD, SFT]}}), out)
    before = _digest(out)
    finish = ingest._SplitSink.finish

    def interrupted(self, final, drop_keys=None):  # noqa: ANN001
        if self.split == "sft":
            raise KeyboardInterrupt
        return finish(self, final, drop_keys)

    monkeypatch.setattr(ingest._SplitSink, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(build_recipe({"data": {"sources": [{**GOOD, "limit": 1}, SFT]}}), out)  # fewer train rows
    assert _digest(out) == before


def test_successful_reingest_replaces_outputs_and_drops_a_stale_sft_split(tmp_path: Path) -> None:
    """An earlier run's sft.parquet must not be picked up by ``care sft`` after a re-ingest without SFT data."""
    out = tmp_path / "data"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "keep.txt").write_text("user file")
    run_ingest(build_recipe({"data": {"sources": [GOOD, SFT]}}), out)
    assert (out / "sft.parquet").is_file()
    manifest = run_ingest(build_recipe({"data": {"sources": [GOOD]}}), out)
    assert not (out / "sft.parquet").exists() and "sft" not in manifest["files"]
    assert read_examples(out / "train.parquet").num_rows == manifest["counts"]["train"]
    assert (out / "notes" / "keep.txt").read_text() == "user file"  # files ingest does not own are kept
    assert not (out / STAGING).exists()
