"""Generated, verifiable visual tasks (the embedded default data set).

Families (``SyntheticConfig.families``):
  ``count``    how many shapes of a colour (difficulty 1) / of a colour and kind (2, 3)
  ``count_all`` how many shapes there are, whatever their colour (no query to bind to the image:
               the easiest family to learn to see; shape kinds and counts follow the difficulty)
  ``compare``  which of two colours has more shapes (answer: the colour word)
  ``bar_read`` the value of one bar in a bar chart
  ``bar_add``  the sum of two bars' values
  ``choice``   the count question as multiple choice (answer: a letter)

Each row follows the example contract (``docs/interfaces.md`` §1): one inline PNG, a short answer, a
worked ``solution`` (``<think>…</think><answer>…</answer>``) for SFT and a ``meta`` JSON with the
full scene (every shape's kind/colour/position, every bar's colour/value/rectangle) and the query,
so answers can be recomputed independently of the text. Train and test use different seeds, and
train skips any item whose content also occurs in test.
"""

from __future__ import annotations

import io
import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from care_core.config import SyntheticConfig
from care_core.schema import write_examples

FAMILIES = ("count", "count_all", "compare", "bar_read", "bar_add", "choice")
# the tiny VLM's BPE corpus (``corpus_texts``): the families it was first trained on; their texts
# hold every word of ``count_all`` too, so adding that family left the tokenizer (and model) unchanged
CORPUS_FAMILIES = ("count", "compare", "bar_read", "bar_add", "choice")
DIFFICULTIES = (1, 2, 3)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 220),
    "yellow": (230, 200, 40),
    "purple": (150, 60, 190),
}
SHAPES = ("square", "circle", "triangle")
BACKGROUND = (255, 255, 255)
AXIS = (0, 0, 0)

# per difficulty: max target count, max distractors, grid cells per side, shape kinds used
_COUNT_LEVELS = {1: (4, 3, 4, ("square",)), 2: (6, 4, 5, SHAPES), 3: (9, 6, 6, SHAPES)}
# per difficulty: number of bars, max bar value
_BAR_LEVELS = {1: (3, 5), 2: (4, 9), 3: (5, 9)}


# --------------------------------------------------------------------------- scenes
def _shape_scene(
    rng: random.Random,
    size: int,
    difficulty: int,
    targets: dict[tuple[str, str], int],
    n_distract: int,
    distract_colours: list[str] | None = None,
) -> dict[str, Any]:
    """Place shapes on a grid (one per cell, jittered, never overlapping).

    ``targets`` maps (colour, kind) -> how many to draw; distractors use other (colour, kind) pairs,
    restricted to ``distract_colours`` when given.
    """
    _, _, cells, kinds = _COUNT_LEVELS[difficulty]
    cell = size // cells
    side = max(6, int(cell * 0.7))
    palette = distract_colours if distract_colours is not None else list(COLOURS)
    distract_pairs = [(c, k) for c in palette for k in kinds if (c, k) not in targets]
    wanted = [pair for pair, n in targets.items() for _ in range(n)]
    wanted += [rng.choice(distract_pairs) for _ in range(n_distract)]
    slots = rng.sample(range(cells * cells), len(wanted))
    objects = []
    for (colour, kind), slot in zip(wanted, slots, strict=True):
        row, col = divmod(slot, cells)
        x = col * cell + rng.randint(0, cell - side)
        y = row * cell + rng.randint(0, cell - side)
        objects.append({"shape": kind, "colour": colour, "x": x, "y": y, "size": side})
    objects.sort(key=lambda o: (o["y"], o["x"]))
    return {"kind": "shapes", "size": size, "objects": objects}


def _bar_scene(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    """Bar chart: left axis with a tick per unit, bars of distinct colours standing on the baseline."""
    n_bars, max_value = _BAR_LEVELS[difficulty]
    left, base, top = 6, size - 6, 6
    unit = (base - top) // max_value
    width = (size - left - 2) // n_bars
    colours = rng.sample(list(COLOURS), n_bars)
    bars = []
    for i, colour in enumerate(colours):
        value = rng.randint(1, max_value)
        x0 = left + 2 + i * width + 1
        x1 = x0 + width - 3
        bars.append(
            {"colour": colour, "value": value, "x0": x0, "x1": x1, "y0": base - value * unit, "y1": base}
        )
    return {
        "kind": "bars",
        "size": size,
        "axis_x": left,
        "baseline": base,
        "unit": unit,
        "max_value": max_value,
        "bars": bars,
    }


def count_matching(scene: dict[str, Any], colour: str, shape: str | None) -> int:
    """Number of objects of ``colour`` (and ``shape`` unless None) in a shapes scene."""
    return sum(
        1 for o in scene["objects"] if o["colour"] == colour and (shape is None or o["shape"] == shape)
    )


# --------------------------------------------------------------------------- items (text + scene)
def _count_query(rng: random.Random, difficulty: int) -> tuple[str, str | None, str]:
    colour = rng.choice(list(COLOURS))
    if difficulty == 1:
        return colour, None, f"{colour} shapes"
    shape = rng.choice(SHAPES)
    return colour, shape, f"{colour} {shape}s"


def _count_item(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    max_target, max_distract, _, kinds = _COUNT_LEVELS[difficulty]
    colour, shape, noun = _count_query(rng, difficulty)
    n = rng.randint(0, max_target)
    kind = shape or rng.choice(kinds)
    # difficulty 1 asks for a colour only, so distractors must have other colours
    others = [c for c in COLOURS if c != colour] if shape is None else None
    scene = _shape_scene(rng, size, difficulty, {(colour, kind): n}, rng.randint(0, max_distract), others)
    steps = ", ".join(str(i) for i in range(1, n + 1)) if n else "none"
    return {
        "scene": scene,
        "query": {"colour": colour, "shape": shape},
        "problem": f"How many {noun} are there?",
        "answer": str(n),
        "answer_type": "integer",
        "choices": [],
        "solution": f"<think>{noun.capitalize()}: {steps}. Total {n}.</think><answer>{n}</answer>",
    }


def _count_all_item(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    max_target, _, _, kinds = _COUNT_LEVELS[difficulty]
    n = rng.randint(0, max_target)
    wanted: dict[tuple[str, str], int] = {}
    for _ in range(n):
        pair = (rng.choice(list(COLOURS)), rng.choice(kinds))
        wanted[pair] = wanted.get(pair, 0) + 1
    scene = _shape_scene(rng, size, difficulty, wanted, 0)
    steps = ", ".join(str(i) for i in range(1, n + 1)) if n else "none"
    return {
        "scene": scene,
        "query": {"colour": None, "shape": None},
        "problem": "How many shapes are there?",
        "answer": str(n),
        "answer_type": "integer",
        "choices": [],
        "solution": f"<think>Shapes: {steps}. Total {n}.</think><answer>{n}</answer>",
    }


def _compare_item(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    max_target, max_distract, _, kinds = _COUNT_LEVELS[difficulty]
    a, b = rng.sample(list(COLOURS), 2)
    gap = 2 if difficulty == 1 else 1
    na = rng.randint(0, max_target - gap)
    nb = rng.randint(na + gap, max_target)
    if rng.random() < 0.5:
        na, nb = nb, na
    kind = rng.choice(kinds)
    others = [c for c in COLOURS if c not in (a, b)]
    scene = _shape_scene(
        rng, size, difficulty, {(a, kind): na, (b, kind): nb}, rng.randint(0, max_distract), others
    )
    winner = a if na > nb else b
    hi, lo = max(na, nb), min(na, nb)
    return {
        "scene": scene,
        "query": {"colours": [a, b]},
        "problem": f"Are there more {a} shapes or {b} shapes? Answer with the colour.",
        "answer": winner,
        "answer_type": "text",
        "choices": [],
        "solution": f"<think>{a.capitalize()}: {na}. {b.capitalize()}: {nb}. {hi} > {lo}, so {winner}.</think>"
        f"<answer>{winner}</answer>",
    }


def _bar_read_item(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    scene = _bar_scene(rng, size, difficulty)
    bar = rng.choice(scene["bars"])
    return {
        "scene": scene,
        "query": {"colours": [bar["colour"]]},
        "problem": f"What is the value of the {bar['colour']} bar?",
        "answer": str(bar["value"]),
        "answer_type": "integer",
        "choices": [],
        "solution": f"<think>The {bar['colour']} bar reaches {bar['value']}.</think><answer>{bar['value']}</answer>",
    }


def _bar_add_item(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    scene = _bar_scene(rng, size, difficulty)
    first, second = rng.sample(scene["bars"], 2)
    total = first["value"] + second["value"]
    return {
        "scene": scene,
        "query": {"colours": [first["colour"], second["colour"]]},
        "problem": f"What is the sum of the {first['colour']} bar and the {second['colour']} bar?",
        "answer": str(total),
        "answer_type": "integer",
        "choices": [],
        "solution": f"<think>{first['colour'].capitalize()} is {first['value']}. {second['colour'].capitalize()} is "
        f"{second['value']}. {first['value']} + {second['value']} = {total}.</think><answer>{total}</answer>",
    }


def _choice_item(rng: random.Random, size: int, difficulty: int) -> dict[str, Any]:
    item = _count_item(rng, size, difficulty)
    n = int(item["answer"])
    n_options = 4 if difficulty == 1 else 5
    max_target = _COUNT_LEVELS[difficulty][0]
    wrong = rng.sample([v for v in range(0, max(max_target, n_options) + 1) if v != n], n_options - 1)
    options = [str(v) for v in wrong] + [str(n)]
    rng.shuffle(options)
    letters = string.ascii_uppercase[:n_options]
    letter = letters[options.index(str(n))]
    listing = "\n".join(f"{lt}. {opt}" for lt, opt in zip(letters, options, strict=True))
    noun = item["problem"][len("How many ") : -len(" are there?")]
    steps = ", ".join(str(i) for i in range(1, n + 1)) if n else "none"
    item.update(
        problem=f"{item['problem']}\n{listing}\nAnswer with the option's letter.",
        answer=letter,
        answer_type="choice",
        choices=options,
        solution=f"<think>{noun.capitalize()}: {steps}. Total {n}, option {letter}.</think><answer>{letter}</answer>",
    )
    return item


_MAKERS = {
    "count": _count_item,
    "count_all": _count_all_item,
    "compare": _compare_item,
    "bar_read": _bar_read_item,
    "bar_add": _bar_add_item,
    "choice": _choice_item,
}


# --------------------------------------------------------------------------- rendering
def render(scene: dict[str, Any]) -> Image.Image:
    """Draw a scene description to an RGB image (``size`` x ``size`` px)."""
    size = scene["size"]
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if scene["kind"] == "shapes":
        for obj in scene["objects"]:
            x, y, s, fill = obj["x"], obj["y"], obj["size"], COLOURS[obj["colour"]]
            if obj["shape"] == "square":
                draw.rectangle([x, y, x + s - 1, y + s - 1], fill=fill)
            elif obj["shape"] == "circle":
                draw.ellipse([x, y, x + s - 1, y + s - 1], fill=fill)
            else:
                draw.polygon([(x + (s - 1) / 2, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=fill)
    else:
        ax, base, unit = scene["axis_x"], scene["baseline"], scene["unit"]
        draw.line([(ax, base), (size - 1, base)], fill=AXIS)
        draw.line([(ax, base), (ax, base - scene["max_value"] * unit)], fill=AXIS)
        for v in range(1, scene["max_value"] + 1):
            draw.line([(ax - 3, base - v * unit), (ax, base - v * unit)], fill=AXIS)
        for bar in scene["bars"]:
            draw.rectangle([bar["x0"], bar["y0"], bar["x1"], bar["y1"] - 1], fill=COLOURS[bar["colour"]])
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


# --------------------------------------------------------------------------- rows
def _check_config(cfg: SyntheticConfig) -> None:
    bad = [f for f in cfg.families if f not in FAMILIES]
    if bad or not cfg.families:
        raise ValueError(f"data.synthetic.families: unknown {bad} (choose from {list(FAMILIES)})")
    bad_levels = [d for d in cfg.difficulty if d not in DIFFICULTIES]
    if bad_levels or not cfg.difficulty:
        raise ValueError(f"data.synthetic.difficulty: {bad_levels or '[]'} not in {list(DIFFICULTIES)}")
    if cfg.seed == cfg.test_seed:
        raise ValueError(
            f"data.synthetic.seed == data.synthetic.test_seed ({cfg.seed}): splits must use disjoint seeds"
        )


def _content_key(item: dict[str, Any]) -> str:
    return json.dumps([item["problem"], item["scene"]], sort_keys=True)


def _items(
    cfg: SyntheticConfig, split: str, size: int, n: int, exclude: set[str]
) -> Iterator[tuple[int, str, int, dict]]:
    """Deterministic stream of (index, family, difficulty, item) for one split, skipping ``exclude``."""
    seed = cfg.seed if split == "train" else cfg.test_seed
    rng = random.Random(f"care-synthetic/{seed}")
    combos = [(f, d) for d in cfg.difficulty for f in cfg.families]
    seen: set[str] = set()
    index = 0
    while index < n:
        family, difficulty = combos[index % len(combos)]
        item = _MAKERS[family](rng, size, difficulty)
        key = _content_key(item)
        if key in exclude or key in seen:
            continue
        seen.add(key)
        yield index, family, difficulty, item
        index += 1


def _split_size(cfg: SyntheticConfig, split: str) -> int:
    if split == "train":
        return cfg.n_train
    if split == "test":
        return cfg.n_test
    raise ValueError(f"synthetic split {split!r}: expected 'train' or 'test'")


def generate_rows(cfg: SyntheticConfig, split: str, image_size: int = 64) -> list[dict[str, Any]]:
    """Example rows (``docs/interfaces.md`` §1) for ``split`` (``train`` | ``test``); deterministic by seed.

    Train items whose (problem, scene) also occurs in the test split are skipped and replaced, so the
    splits never share an item; within a split items are unique too.
    """
    _check_config(cfg)
    n = _split_size(cfg, split)
    exclude: set[str] = set()
    if split == "train":
        exclude = {_content_key(item) for *_, item in _items(cfg, "test", image_size, cfg.n_test, set())}
    seed = cfg.seed if split == "train" else cfg.test_seed
    rows = []
    for index, family, difficulty, item in _items(cfg, split, image_size, n, exclude):
        row_id = f"synthetic-{split}-{index:06d}"
        meta = {
            "family": family,
            "difficulty": difficulty,
            "split": split,
            "seed": seed,
            "index": index,
            "query": item["query"],
            "scene": item["scene"],
        }
        rows.append(
            {
                "id": row_id,
                "data_source": f"synthetic/{family}",
                "images": [{"bytes": _png(render(item["scene"])), "path": f"{row_id}.png"}],
                "problem": item["problem"],
                "answer": item["answer"],
                "answer_type": item["answer_type"],
                "choices": item["choices"],
                "solution": item["solution"],
                "meta": json.dumps(meta, sort_keys=True),
            }
        )
    return rows


def corpus_texts(n: int = 3000, seed: int = 0, image_size: int = 64) -> list[str]:
    """Problem + solution texts (no images rendered) for tokenizer training, all families and levels."""
    rng = random.Random(f"care-synthetic-corpus/{seed}")
    texts = []
    for i in range(n):
        family = CORPUS_FAMILIES[i % len(CORPUS_FAMILIES)]
        difficulty = DIFFICULTIES[(i // len(CORPUS_FAMILIES)) % len(DIFFICULTIES)]
        item = _MAKERS[family](rng, image_size, difficulty)
        texts.append(f"{item['problem']}\n{item['solution']}")
    return texts


def write_synthetic(cfg: SyntheticConfig, out_dir: str | Path, image_size: int = 64) -> dict[str, int]:
    """Write ``out_dir/train.parquet`` and ``out_dir/test.parquet``; returns row counts per split."""
    out_dir = Path(out_dir)
    return {
        split: write_examples(generate_rows(cfg, split, image_size), out_dir / f"{split}.parquet")
        for split in ("train", "test")
    }
