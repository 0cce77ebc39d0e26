"""``care ingest`` on fixture recipes: counts, deduplication, rejection manifest, policies."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from care_core.config import build_recipe
from care_core.schema import SchemaError, read_examples
from care_core.stages.ingest import run_ingest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def _mixed_sources() -> list[dict]:
    f = str(FIXTURES)
    return [
        {"name": "geometry3k", "path": f"{f}/geometry3k", "split": "train"},
        {"name": "geometry3k", "path": f"{f}/geometry3k", "split": "test"},
        {"name": "virl39k", "path": f"{f}/virl39k"},  # v-004 duplicates geometry3k train-1
        {"name": "chartqa", "path": f"{f}/chartqa", "split": "test"},  # test-1 duplicates test-0
        {"name": "geometry3k", "path": f"{f}/bad_geometry3k", "split": "train"},  # 3 bad rows, 1 good
        {"name": "mathvista", "path": f"{f}/bad_mathvista", "split": "testmini"},  # unknown answer type
        {"name": "vision_r1_cold", "path": f"{f}/vision_r1_cold", "image_root": f"{f}/vision_r1_cold_images",
         "role": "sft"},
    ]  # fmt: skip


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("batch", [256, 2], ids=["one-batch", "streamed-in-batches-of-2"])
def test_mixed_recipe_counts_dedup_and_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr("care_core.stages.ingest._BATCH", batch)
    before = _digest_tree(FIXTURES)
    recipe = build_recipe({"name": "mixed", "data": {"bad_rows": "skip", "sources": _mixed_sources()}})
    manifest = run_ingest(recipe, tmp_path / "out")
    assert _digest_tree(FIXTURES) == before  # inputs never modified

    # train: geometry3k 3 + virl39k 4 - 1 duplicate + bad_geometry3k 1 good = 7
    # test: geometry3k 2 + chartqa 2 - 1 duplicate = 3; sft: vision_r1_cold 3
    assert manifest["counts"] == {"train": 7, "test": 3, "sft": 3}
    assert manifest["files"] == {"train": "train.parquet", "test": "test.parquet", "sft": "sft.parquet"}
    train = read_examples(tmp_path / "out" / "train.parquet").to_pylist()
    test = read_examples(tmp_path / "out" / "test.parquet").to_pylist()
    sft = read_examples(tmp_path / "out" / "sft.parquet").to_pylist()
    assert [r["id"] for r in train] == [
        "geometry3k/train-1", "geometry3k/train-2", "geometry3k/train-3",
        "virl39k/v-001", "virl39k/v-002", "virl39k/v-003", "geometry3k/train-904",
    ]  # fmt: skip
    assert [r["id"] for r in test] == ["geometry3k/test-11", "geometry3k/test-12", "chartqa/test-0"]
    assert all(r["solution"].startswith("<think>") for r in sft)

    dups = {(d["id"], d["duplicate_of"], d["reason"]) for d in manifest["duplicates"]}
    assert dups == {
        ("virl39k/v-004", "geometry3k/train-1", "duplicate"),
        ("chartqa/test-1", "chartqa/test-0", "duplicate"),
    }
    rejected = sorted((r["source"], r["id"], r["field"], r["row"]) for r in manifest["rejected"])
    assert rejected == [
        ("geometry3k#4", "geometry3k/train-901", "answer", 0),
        ("geometry3k#4", "geometry3k/train-902", "images[0]", 1),
        ("geometry3k#4", "geometry3k/train-903", "images", 2),
        ("mathvista", "99", "answer_type", 0),
    ]
    assert all(r["file"].endswith(".parquet") and r["reason"] for r in manifest["rejected"])
    per_source = {s["source"]: (s["read"], s["valid"], s["rejected"], s["duplicates"], s["kept"])
                  for s in manifest["sources"]}  # fmt: skip
    assert per_source == {
        "geometry3k#0": (3, 3, 0, 0, {"train": 3}),
        "geometry3k#1": (2, 2, 0, 0, {"test": 2}),
        "virl39k": (4, 4, 0, 1, {"train": 3}),
        "chartqa": (2, 2, 0, 1, {"test": 1}),
        "geometry3k#4": (4, 1, 3, 0, {"train": 1}),
        "mathvista": (1, 0, 1, 0, {}),
        "vision_r1_cold": (3, 3, 0, 0, {"sft": 3}),
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "fingerprint.json", "manifest.json", "sft.parquet", "test.parquet", "train.parquet"]  # fmt: skip
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (
        on_disk["counts"] == manifest["counts"]
        and on_disk["n_rejected"] == 4
        and on_disk["n_duplicates"] == 2
    )
    assert manifest["metrics"] == {
        "rows_train": 7,
        "rows_test": 3,
        "rows_sft": 3,
        "rejected": 4,
        "duplicates": 2,
    }


def test_error_policy_stops_naming_file_row_and_field(tmp_path: Path) -> None:
    recipe = build_recipe({"data": {"bad_rows": "error", "sources": _mixed_sources()}})
    with pytest.raises(SchemaError) as info:
        run_ingest(recipe, tmp_path / "out")
    message = str(info.value)
    assert "bad_geometry3k/data/train-00000-of-00001.parquet: row 0" in message
    assert "id=geometry3k/train-901" in message and "field 'answer'" in message
    assert not (
        tmp_path / "out"
    ).exists()  # no outputs, no partial files: the folder it created is gone again


def test_dedup_off_keeps_duplicates_and_no_sft_file(tmp_path: Path) -> None:
    f = str(FIXTURES)
    recipe = build_recipe({"data": {"dedup": False, "sources": [
        {"name": "geometry3k", "path": f"{f}/geometry3k"}, {"name": "virl39k", "path": f"{f}/virl39k"},
        {"name": "chartqa", "path": f"{f}/chartqa", "split": "test"}]}})  # fmt: skip
    manifest = run_ingest(recipe, tmp_path)
    assert manifest["counts"] == {"train": 7, "test": 2}
    assert manifest["duplicates"] == [] and not (tmp_path / "sft.parquet").exists()


def test_train_rows_equal_to_test_rows_are_dropped(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky" / "data"
    leaky.mkdir(parents=True)
    shutil.copy(
        FIXTURES / "geometry3k" / "data" / "test-00000-of-00001.parquet",
        leaky / "train-00000-of-00001.parquet",
    )
    recipe = build_recipe({"data": {"sources": [
        {"name": "geometry3k", "path": str(tmp_path / "leaky"), "split": "train"},
        {"name": "geometry3k", "path": str(FIXTURES / "geometry3k"), "split": "test"}]}})  # fmt: skip
    manifest = run_ingest(recipe, tmp_path / "out")
    assert manifest["counts"] == {"train": 0, "test": 2}
    assert {(d["id"], d["reason"]) for d in manifest["duplicates"]} == {
        ("geometry3k/train-11", "in_test"), ("geometry3k/train-12", "in_test")}  # fmt: skip


def test_limit_role_both_and_val_fraction(tmp_path: Path) -> None:
    f = str(FIXTURES)
    recipe = build_recipe({"data": {"val_fraction": 0.5, "sources": [
        {"name": "virl39k", "path": f"{f}/virl39k", "limit": 3, "role": "both"}]}})  # fmt: skip
    manifest = run_ingest(recipe, tmp_path)
    ids = ["virl39k/v-001", "virl39k/v-002", "virl39k/v-003"]
    moved = [i for i in ids if int(hashlib.sha1(i.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < 0.5]
    assert manifest["moved_to_test"] == len(moved)
    assert manifest["counts"] == {"train": 3 - len(moved), "test": len(moved), "sft": 3}
    assert sorted(r["id"] for r in read_examples(tmp_path / "test.parquet").to_pylist()) == sorted(moved)


def test_unknown_source_name(tmp_path: Path) -> None:
    from care_core.config import RecipeError

    with pytest.raises(RecipeError, match="data.sources.0.name='coco' is not one of"):  # refused at load time
        build_recipe({"data": {"sources": [{"name": "coco", "path": str(FIXTURES)}]}})


def test_synthetic_source(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("care_core.data.synthetic")
    if not hasattr(synthetic, "generate_rows"):
        pytest.skip("care_core.data.synthetic.generate_rows is not available yet")
    recipe = build_recipe({"data": {
        "synthetic": {"n_train": 12, "n_test": 6},
        "sources": [{"name": "synthetic", "limit": 10}, {"name": "chartqa", "path": str(FIXTURES / "chartqa")}]}})  # fmt: skip
    manifest = run_ingest(recipe, tmp_path)
    expected_train = len(
        synthetic.generate_rows(recipe.data.synthetic, "train", image_size=recipe.model.tiny.image_size)[:10]
    )
    assert manifest["counts"]["train"] == expected_train + 3
    assert manifest["counts"]["test"] == 6
    rows = read_examples(tmp_path / "train.parquet").to_pylist()
    assert sum(r["data_source"].startswith("synthetic/") for r in rows) == expected_train
