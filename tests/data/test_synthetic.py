"""Synthetic tasks: contract, answers recomputed from the scene (and the image), split disjointness."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from care_core.config import SyntheticConfig
from care_core.data.synthetic import COLOURS, FAMILIES, corpus_texts, generate_rows, write_synthetic
from care_core.schema import read_examples, validate_example

SOLUTION = re.compile(r"^<think>.+</think><answer>(.+)</answer>$", re.S)


@pytest.fixture(scope="module")
def small_cfg() -> SyntheticConfig:
    return SyntheticConfig(n_train=300, n_test=100, difficulty=[1, 2, 3])


def expected_answer(row: dict) -> str:
    """Recompute the answer from meta's scene and query only (never from the text)."""
    meta = json.loads(row["meta"])
    scene, query, family = meta["scene"], meta["query"], meta["family"]
    if family == "count_all":
        return str(len(scene["objects"]))
    if family in ("count", "choice"):
        n = sum(
            1
            for o in scene["objects"]
            if o["colour"] == query["colour"] and query["shape"] in (None, o["shape"])
        )
        if family == "count":
            return str(n)
        return "ABCDEFGHIJ"[row["choices"].index(str(n))]
    if family == "compare":
        a, b = query["colours"]
        na = sum(o["colour"] == a for o in scene["objects"])
        nb = sum(o["colour"] == b for o in scene["objects"])
        assert na != nb
        return a if na > nb else b
    values = {bar["colour"]: bar["value"] for bar in scene["bars"]}
    return str(sum(values[c] for c in query["colours"]))


def check_image_matches_scene(row: dict) -> None:
    """The rendered pixels agree with the scene: each shape/bar's centre has its colour."""
    image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
    scene = json.loads(row["meta"])["scene"]
    assert image.size == (scene["size"], scene["size"])
    if scene["kind"] == "shapes":
        for o in scene["objects"]:
            centre = (
                o["x"] + o["size"] // 2,
                o["y"] + o["size"] // 2 + (o["size"] // 4 if o["shape"] == "triangle" else 0),
            )
            assert image.getpixel(centre) == COLOURS[o["colour"]], (row["id"], o)
        coloured = sum(n for n, px in image.getcolors(maxcolors=1 << 16) if px != (255, 255, 255))
        assert (coloured > 0) == bool(scene["objects"])
    else:
        for bar in scene["bars"]:
            x = (bar["x0"] + bar["x1"]) // 2
            assert image.getpixel((x, bar["y0"])) == COLOURS[bar["colour"]]  # top row of the bar
            assert image.getpixel((x, bar["y0"] - 1)) == (255, 255, 255)  # just above it
            assert bar["y1"] - bar["y0"] == bar["value"] * scene["unit"]


def test_rows_validate_and_answers_recount(small_cfg: SyntheticConfig) -> None:
    rows = generate_rows(small_cfg, "train")
    assert len(rows) == 300
    families = set()
    for row in rows:
        validate_example(row, f"synthetic train (id={row['id']})")
        families.add(json.loads(row["meta"])["family"])
        assert row["answer"] == expected_answer(row), row["id"]
        match = SOLUTION.match(row["solution"])
        assert match and match.group(1) == row["answer"], row["solution"]
        assert row["data_source"] == f"synthetic/{json.loads(row['meta'])['family']}"
        if row["answer_type"] == "choice":
            assert row["answer"] in "ABCDE" and len(set(row["choices"])) == len(row["choices"]) >= 4
        check_image_matches_scene(row)
    assert families == set(small_cfg.families)
    assert len({r["id"] for r in rows}) == len(rows)


def test_count_all_counts_every_shape() -> None:
    cfg = SyntheticConfig(families=["count_all"], difficulty=[1, 2], n_train=0, n_test=60)
    rows = generate_rows(cfg, "test")
    answers = {1: set(), 2: set()}
    for row in rows:
        meta = json.loads(row["meta"])
        assert row["problem"] == "How many shapes are there?"
        assert row["answer"] == str(len(meta["scene"]["objects"])) == expected_answer(row)
        assert row["solution"].endswith(f"Total {row['answer']}.</think><answer>{row['answer']}</answer>")
        answers[meta["difficulty"]].add(int(row["answer"]))
        check_image_matches_scene(row)
    assert answers[1] == set(range(5)) and max(answers[2]) > 4


def test_difficulty_ranges(small_cfg: SyntheticConfig) -> None:
    rows = generate_rows(small_cfg, "test")
    counts = {1: set(), 2: set()}
    for row in rows:
        meta = json.loads(row["meta"])
        if meta["family"] == "count" and meta["difficulty"] in counts:
            counts[meta["difficulty"]].add(int(row["answer"]))
    assert counts[1] <= set(range(5))
    assert max(counts[2]) > 4


def test_deterministic_and_disjoint(small_cfg: SyntheticConfig) -> None:
    train = generate_rows(small_cfg, "train")
    assert train == generate_rows(small_cfg, "train")
    test = generate_rows(small_cfg, "test")
    key = lambda r: (r["problem"], r["images"][0]["bytes"])  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in test}
    assert len({key(r) for r in train}) == len(train)
    assert {json.loads(r["meta"])["seed"] for r in train} == {small_cfg.seed}
    assert {json.loads(r["meta"])["seed"] for r in test} == {small_cfg.test_seed}
    other = generate_rows(SyntheticConfig(n_train=300, n_test=100, difficulty=[1, 2, 3], seed=5), "train")
    assert [r["problem"] for r in other] != [r["problem"] for r in train]


def test_thousands_of_rows_in_seconds() -> None:
    start = time.perf_counter()
    rows = generate_rows(SyntheticConfig(n_train=2000, n_test=200), "train")
    assert len(rows) == 2000
    assert time.perf_counter() - start < 10


def test_write_synthetic_roundtrip(tmp_path: Path) -> None:
    cfg = SyntheticConfig(n_train=50, n_test=20)
    assert write_synthetic(cfg, tmp_path) == {"train": 50, "test": 20}
    table = read_examples(tmp_path / "train.parquet")
    assert table.num_rows == 50
    assert table.to_pylist()[0]["images"][0]["bytes"] == generate_rows(cfg, "train")[0]["images"][0]["bytes"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"families": ["nope"]}, "families"),
        ({"difficulty": [7]}, "difficulty"),
        ({"test_seed": 0}, "test_seed"),
    ],
)
def test_bad_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        generate_rows(SyntheticConfig(n_train=5, n_test=5, **changes), "train")
    with pytest.raises(ValueError, match="split"):
        generate_rows(SyntheticConfig(), "validation")


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    family=st.sampled_from(FAMILIES),
    level=st.sampled_from([1, 2, 3]),
    size=st.sampled_from([64, 96]),
)
def test_any_seed_answers_recount(seed: int, family: str, level: int, size: int) -> None:
    cfg = SyntheticConfig(
        families=[family], difficulty=[level], n_train=0, n_test=8, seed=seed, test_seed=seed + 1
    )
    for row in generate_rows(cfg, "test", image_size=size):
        assert row["answer"] == expected_answer(row)
        check_image_matches_scene(row)


def test_corpus_texts_cover_tags() -> None:
    texts = corpus_texts(n=50)
    assert len(texts) == 50
    assert all("<think>" in t and "</answer>" in t for t in texts)
