"""Each source adapter turns its native fixture (hub layout, tests/fixtures/sources) into valid rows."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from care_core.data.images import BadRow, checked_image
from care_core.data.sources import SOURCES, LoadSpec, get_source, load_source_rows
from care_core.data.sources.base import find_files, infer_answer_type, parse_inline_choices
from care_core.schema import validate_example, write_examples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"

# name -> (fixture folder, extra LoadSpec kwargs, expected ids)
CASES = {
    "virl39k": ("virl39k", {}, ["virl39k/v-001", "virl39k/v-002", "virl39k/v-003", "virl39k/v-004"]),
    "geometry3k": ("geometry3k", {}, ["geometry3k/train-1", "geometry3k/train-2", "geometry3k/train-3"]),
    "chartqa": ("chartqa", {"split": "test"}, ["chartqa/test-0", "chartqa/test-1"]),
    "vision_r1_cold": ("vision_r1_cold", {"image_root": str(FIXTURES / "vision_r1_cold_images")},
                       ["vision_r1_cold/llava_cot_0", "vision_r1_cold/mulberry_1", "vision_r1_cold/llava_cot_2"]),
    "mathvista": ("mathvista", {}, [f"mathvista/{i}" for i in range(1, 6)]),
    "mathverse": ("mathverse", {}, [f"mathverse/{i}" for i in range(1, 5)]),
    "mathvision": ("mathvision", {}, [f"mathvision/{i}" for i in range(1, 5)]),
    "mmmu": ("mmmu", {}, ["mmmu/validation_Accounting_1", "mmmu/validation_Accounting_2",
                          "mmmu/validation_Art_Theory_1", "mmmu/validation_Art_Theory_2"]),
    "mmmu_pro_standard": ("mmmu_pro", {}, [f"mmmu_pro_standard/test_{s}" for s in
                                           ("Accounting_1", "History_2", "Physics_3")]),
    "mmmu_pro_vision": ("mmmu_pro", {}, [f"mmmu_pro_vision/test_{s}" for s in
                                         ("Accounting_1", "History_2", "Physics_3")]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_adapter_rows_are_valid(name: str, tmp_path: Path) -> None:
    folder, kwargs, ids = CASES[name]
    rows = load_source_rows(name, path=str(FIXTURES / folder), **kwargs)
    assert [r["id"] for r in rows] == ids
    for row in rows:
        validate_example(row, f"{name}:{row['id']}")
        assert row["data_source"] == name
        assert row["images"], row["id"]
        for image in row["images"]:
            with Image.open(io.BytesIO(image["bytes"])) as decoded:
                assert decoded.format in ("PNG", "JPEG") and decoded.size == (12, 12)
        assert isinstance(json.loads(row["meta"]), dict)
        if row["answer_type"] == "choice":
            assert row["answer"] in "ABCDEFGHIJ"[: len(row["choices"])]
    # the rows satisfy the Parquet contract too
    assert write_examples(rows, tmp_path / "rows.parquet") == len(rows)


def _row(name: str, folder: str, row_id: str, **kwargs) -> dict:
    return next(r for r in load_source_rows(name, path=str(FIXTURES / folder), **kwargs) if r["id"] == row_id)


def test_field_mappings() -> None:
    virl = _row("virl39k", "virl39k", "virl39k/v-002")
    assert (virl["answer"], virl["answer_type"], virl["choices"]) == (
        "D",
        "choice",
        ["30", "60", "90", "120"],
    )
    assert json.loads(virl["meta"])["PassRate_32BTrained"] == 0.75
    assert _row("virl39k", "virl39k", "virl39k/v-003")["answer"] == "\\frac{\\sqrt{2}}{2}"  # unboxed
    geo = _row("geometry3k", "geometry3k", "geometry3k/train-2")
    assert (geo["answer"], geo["answer_type"], geo["choices"]) == ("3\\sqrt{3}", "expression", [])
    assert json.loads(geo["meta"])["ground_truth"] == "B"
    chart = _row("chartqa", "chartqa", "chartqa/train-1")
    assert (chart["answer"], chart["answer_type"], json.loads(chart["meta"])["origin"]) == (
        "Yes",
        "text",
        "machine",
    )
    cold = _row("vision_r1_cold", "vision_r1_cold", "vision_r1_cold/mulberry_1",
                image_root=str(FIXTURES / "vision_r1_cold_images"))  # fmt: skip
    assert (cold["answer"], cold["answer_type"]) == ("B", "choice")
    assert (
        cold["solution"]
        == "<think>The figure has four equal sides and right angles.</think><answer>B</answer>"
    )
    vista = _row("mathvista", "mathvista", "mathvista/1")
    assert (vista["answer"], vista["choices"][3]) == ("D", "120°")
    vista3 = json.loads(_row("mathvista", "mathvista", "mathvista/3")["meta"])
    assert (vista3["precision"], vista3["native_answer_type"], vista3["task"]) == (
        1.0,
        "float",
        "figure question answering",
    )
    verse = _row("mathverse", "mathverse", "mathverse/2")
    assert verse["problem"] == "Please answer the question shown in the image."  # Vision Only: query_wo
    assert verse["choices"] == ["30°", "45°", "60°", "90°"]
    vision = _row("mathvision", "mathvision", "mathvision/1")  # image from the `image` path
    assert vision["images"][0]["path"] == "images/1.jpg" and vision["problem"] == (
        "<image>Which figure completes the pattern?"
    )  # the prompt's options are added at evaluation
    mmmu = _row("mmmu", "mmmu", "mmmu/validation_Accounting_2")
    assert mmmu["problem"].startswith("Compare <image> with <image>.")
    # images ordered by their marks: <image 2> first
    first = checked_image(mmmu["images"][0], "x")[1]
    raw = load_source_rows("mmmu", path=str(FIXTURES / "mmmu"))
    assert first != checked_image(raw[0]["images"][0], "x")[1]
    assert _row("mmmu", "mmmu", "mmmu/validation_Art_Theory_2")["answer_type"] == "integer"
    pro = _row("mmmu_pro_standard", "mmmu_pro", "mmmu_pro_standard/test_Accounting_1")
    # the raw question: MMMU-Pro's "A. …" option lines are added by the evaluation prompt
    assert len(pro["choices"]) == 10 and pro["problem"] == "<image> Which account is debited?"
    vision_pro = _row("mmmu_pro_vision", "mmmu_pro", "mmmu_pro_vision/test_Accounting_1")
    assert vision_pro["problem"].startswith("Write out the multiple-choice question in the image")
    assert not any(option in vision_pro["problem"] for option in vision_pro["choices"])


def test_limit_and_split_and_config_selection() -> None:
    assert len(load_source_rows("geometry3k", path=str(FIXTURES / "geometry3k"), split="test")) == 2
    assert len(load_source_rows("geometry3k", path=str(FIXTURES / "geometry3k"), limit=2)) == 2
    assert len(load_source_rows("mmmu", path=str(FIXTURES / "mmmu"), config_name="Accounting")) == 2
    assert len(load_source_rows("mmmu", path=str(FIXTURES / "mmmu"), split="dev")) == 1
    with pytest.raises(FileNotFoundError, match="splits present"):
        find_files(FIXTURES / "geometry3k", "validation")


def test_missing_image_root_is_an_error_naming_file_row_and_field() -> None:
    with pytest.raises(ValueError) as info:
        load_source_rows("vision_r1_cold", path=str(FIXTURES / "vision_r1_cold"))
    message = str(info.value)
    assert "vision_r1_llava_cot_full.json: row 0" in message
    assert (
        "id=vision_r1_cold/llava_cot_0" in message and "'images[0]'" in message and "coco/0001.png" in message
    )


def test_bad_rows_are_reported_per_row() -> None:
    results = list(get_source("geometry3k").iter_results(LoadSpec(path=str(FIXTURES / "bad_geometry3k"))))
    fields = [(r.native_id, r.error.field if r.error else None) for r in results]
    assert fields == [
        ("geometry3k/train-901", "answer"),
        ("geometry3k/train-902", "images[0]"),
        ("geometry3k/train-903", "images"),
        ("geometry3k/train-904", None),
    ]
    assert "undecodable" in results[1].error.reason


def test_hub_path_through_datasets_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub code path (datasets.load_dataset) on a local copy of the hub layout gives the same rows."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "hiyouga_geometry3k"
    shutil.copytree(FIXTURES / "geometry3k", repo)
    from_hub = load_source_rows("geometry3k", hub_id=str(repo), split="test")
    local = load_source_rows("geometry3k", path=str(FIXTURES / "geometry3k"), split="test")
    assert [r["id"] for r in from_hub] == [r["id"] for r in local]
    assert [r["images"][0]["bytes"] for r in from_hub] == [r["images"][0]["bytes"] for r in local]
    assert [(r["problem"], r["answer"]) for r in from_hub] == [(r["problem"], r["answer"]) for r in local]


def test_unreachable_hub_names_the_offline_path() -> None:
    with pytest.raises(RuntimeError, match="set the source's `path`"):
        load_source_rows("geometry3k", hub_id="/nonexistent/dataset/dir", split="train")


def test_registry() -> None:
    assert set(SOURCES) == set(CASES)
    with pytest.raises(KeyError, match="unknown source"):
        get_source("coco")


@pytest.mark.parametrize(
    ("answer", "problem", "expected"),
    [
        ("7", "", ("integer", [])),
        ("7.5", "", ("float", [])),
        ("12%", "", ("float", [])),
        ("3\\sqrt{3}", "", ("expression", [])),
        ("x+1", "", ("expression", [])),
        ("Yes", "", ("text", [])),
        ("B", "Pick one\nA. red\nB. blue", ("choice", ["red", "blue"])),
        ("B", "Pick one (A) red (B) blue", ("choice", ["red", "blue"])),
        ("C", "Pick one\nA. red\nB. blue", ("expression", [])),  # letter out of range: not a choice
    ],
)
def test_infer_answer_type(answer: str, problem: str, expected: tuple) -> None:
    assert infer_answer_type(answer, problem) == expected


def test_parse_inline_choices_needs_consecutive_letters() -> None:
    assert parse_inline_choices("A. x\nC. y") == []
    assert parse_inline_choices("Choices:\nA:1\nB:2\nC:3") == ["1", "2", "3"]


def test_checked_image_reencodes_other_formats_and_hashes_pixels() -> None:
    image = Image.new("RGB", (5, 4), (10, 20, 30))
    gif, png_fast, png_small = io.BytesIO(), io.BytesIO(), io.BytesIO()
    image.save(gif, format="GIF")
    image.save(png_fast, format="PNG", compress_level=0)
    image.save(png_small, format="PNG", compress_level=9)
    struct, digest = checked_image({"bytes": gif.getvalue(), "path": "a.gif"}, "images[0]")
    assert Image.open(io.BytesIO(struct["bytes"])).format == "PNG"
    assert png_fast.getvalue() != png_small.getvalue()
    assert (
        checked_image({"bytes": png_fast.getvalue()}, "f")[1]
        == checked_image({"bytes": png_small.getvalue()}, "f")[1]
    )
    with pytest.raises(BadRow, match="undecodable"):
        checked_image({"bytes": b"\x89PNG\r\n\x1a\nbroken"}, "images[0]")


def test_same_data_in_two_formats_is_read_once(tmp_path: Path) -> None:
    """MathVerse publishes testmini.json next to testmini.parquet (and a text-only variant)."""
    import pyarrow.parquet as pq

    shutil.copy(FIXTURES / "mathverse" / "testmini.parquet", tmp_path / "testmini.parquet")
    records = pq.read_table(tmp_path / "testmini.parquet").to_pylist()
    (tmp_path / "testmini.json").write_text(json.dumps(records[:1], default=lambda b: None))
    (tmp_path / "testmini_text_only.json").write_text("[]")
    assert find_files(tmp_path, "testmini") == [tmp_path / "testmini.parquet"]
    assert len(load_source_rows("mathverse", path=str(tmp_path))) == 4


def test_chartqa_lmms_lab_layout(tmp_path: Path) -> None:
    """``lmms-lab/ChartQA`` names its fields type/question/answer/image (test split only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def img(seed: int, name: str) -> dict:
        buffer = io.BytesIO()
        Image.new("RGB", (12, 12), (seed * 40, 0, 0)).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": name}

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [("type", pa.string()), ("question", pa.string()), ("answer", pa.string()), ("image", image_type)]
    )
    rows = [
        {"type": "human_test", "question": "How many bars?", "answer": "4", "image": img(1, "a.png")},
        {
            "type": "augmented_test",
            "question": "Which is highest?",
            "answer": "Asia",
            "image": img(2, "b.png"),
        },
    ]
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schema), tmp_path / "data" / "test-00000-of-00001.parquet"
    )
    got = load_source_rows("chartqa", path=str(tmp_path), split="test")
    assert [(r["problem"], r["answer"], r["answer_type"]) for r in got] == [
        ("How many bars?", "4", "integer"),
        ("Which is highest?", "Asia", "text"),
    ]
    assert [json.loads(r["meta"])["origin"] for r in got] == ["human_test", "augmented_test"]


def test_image_marks_must_match_the_images(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(FIXTURES / "geometry3k" / "data" / "test-00000-of-00001.parquet").to_pylist()
    table[0]["problem"] = "<image>Compare with <image>."  # two marks, one image
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "data" / "test-00000-of-00001.parquet")
    results = list(get_source("geometry3k").iter_results(LoadSpec(path=str(tmp_path), split="test")))
    assert [(r.error.field, r.error.reason) if r.error else None for r in results] == [
        ("problem", "2 <image> marks for 1 image(s)"),
        None,
    ]


@pytest.mark.parametrize(("source", "fixture", "column"), [
    ("mathverse", "mathverse/testmini.parquet", "question_type"),
    ("mmmu_pro_standard", "mmmu_pro", "options"),
    ("mathvision", "mathvision/data/test-00000-of-00001.parquet", "options"),
])  # fmt: skip
@pytest.mark.parametrize("bad_rows", ["error", "skip"])
def test_missing_required_column_is_an_error_naming_file_row_and_field(
    tmp_path: Path, source: str, fixture: str, column: str, bad_rows: str
) -> None:
    """Issue 17 8a: without the column the rows would silently become choice-less ``expression`` rows;
    even under bad_rows=skip it is an error (it would skip or change every row)."""
    import pyarrow.parquet as pq

    path = FIXTURES / fixture
    if path.is_dir():  # MMMU-Pro: the standard config's file
        path = next(p for p in sorted(path.rglob("*.parquet")) if "standard" in str(p))
    table = pq.read_table(path)
    out = tmp_path / ("standard (10 options)" if source == "mmmu_pro_standard" else "x") / path.name
    out.parent.mkdir(parents=True)
    pq.write_table(table.drop([column]), out)
    with pytest.raises(ValueError) as info:
        load_source_rows(
            source, path=str(tmp_path), bad_rows=bad_rows, split=get_source(source).default_split
        )
    message = str(info.value)
    assert str(out) in message and "row 0" in message and f"field {column!r}" in message
    assert "required column missing" in message


def test_null_required_field_is_a_bad_row(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(FIXTURES / "mathverse" / "testmini.parquet").to_pylist()
    table[0]["question_type"] = None
    pq.write_table(__import__("pyarrow").Table.from_pylist(table), tmp_path / "testmini.parquet")
    skipped: list[str] = []
    rows = load_source_rows("mathverse", path=str(tmp_path), bad_rows="skip", skipped=skipped)
    assert len(rows) == len(table) - 1
    assert len(skipped) == 1 and "row 0" in skipped[0] and "'question_type'" in skipped[0]


def test_vision_r1_cold_sentence_answers_are_text() -> None:
    """Issue 12 cause 11: a sentence answer with a digit is text, not an expression."""
    assert infer_answer_type("There are 3 circles in the image.") == ("text", [])
    assert infer_answer_type("The total is 12 apples") == ("text", [])
    assert infer_answer_type("x = 3 or x = 5")[0] == "expression"
    assert infer_answer_type("3\\sqrt{2} cm")[0] == "expression"


def test_mathverse_path_with_config_name_says_to_drop_it() -> None:
    """Issue 12 cause 11: the shipped recipe's config_name: testmini with a flat local path."""
    with pytest.raises(FileNotFoundError, match="drop config_name"):
        load_source_rows("mathverse", path=str(FIXTURES / "mathverse"), config_name="testmini")
