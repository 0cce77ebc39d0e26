"""Shared machinery of the source adapters: find and read native files, convert and check rows.

A source adapter (one module per dataset) names its hub id, default split/config and maps one
native record to an example row (``docs/interfaces.md`` §1) in :meth:`Source.convert`. This module
reads the records:

* **local files** (``path``: the normal offline path): a file, or a folder in the hub's own layout.
  Parquet, JSON (a list, ``{"data": [...]}``, or a mapping id → record) and JSON Lines are read;
  when one file is published in several formats (``testmini.json`` and ``testmini.parquet``) only
  the Parquet one is read.
  A file belongs to ``split`` when its name is ``<split>.*``/``<split>-*`` or a parent folder is
  named ``<split>``; when no file names any known split (``39Krelease.parquet``), all files are
  read. ``config_name`` keeps the files under a folder of that name (MMMU subjects, MMMU-Pro
  "standard (10 options)" / "vision").
* **the hub** (no ``path``): ``datasets.load_dataset(hub_id, config, split=split)`` with image
  columns left undecoded; this needs the network (or a local dataset folder as ``hub_id``).

Images given as relative paths are looked up under ``image_root`` (if given), then the folder of
the file and its parents up to ``path``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from care_core.data.images import BadRow, checked_image, to_struct
from care_core.rewards.extraction import last_boxed
from care_core.rewards.verifiers import LETTERS, number_readings
from care_core.schema import ANSWER_TYPES, SchemaError

logger = logging.getLogger(__name__)

KNOWN_SPLITS = ("train", "validation", "val", "dev", "test", "testmini")
DATA_SUFFIXES = (".parquet", ".json", ".jsonl")
_SKIP_FILES = ("dataset_info.json", "dataset_dict.json", "state.json")


@dataclass
class LoadSpec:
    """Where to read a source from (mirrors ``SourceConfig`` / ``BenchmarkConfig``)."""

    hub_id: str | None = None
    path: str | None = None
    split: str | None = None
    config_name: str | None = None
    limit: int | None = None
    image_root: str | None = None


@dataclass
class RowContext:
    """Where a native record came from; adapters use it for ids and image lookup."""

    source: str
    split: str
    file: str
    index: int
    roots: list[Path] = field(default_factory=list)
    config_name: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}: row {self.index}"


@dataclass
class RowResult:
    """One converted record: a valid ``row`` (with ``image_hashes``) or a ``BadRow`` error."""

    ctx: RowContext
    row: dict[str, Any] | None = None
    image_hashes: list[str] = field(default_factory=list)
    error: BadRow | None = None
    native_id: str | None = None


# --------------------------------------------------------------------------- file discovery
def _split_of(path: Path, root: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    for split in sorted(KNOWN_SPLITS, key=len, reverse=True):
        if stem == split or stem.startswith(split + "-"):
            return split
    for part in reversed(path.relative_to(root).parts[:-1]):
        if part.lower() in KNOWN_SPLITS:
            return part.lower()
    return None


def find_files(path: str | Path, split: str, config_name: str | None = None) -> list[Path]:
    """Native data files of ``split`` (and ``config_name``) under ``path`` (see module rules)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"source path {root} does not exist")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix in DATA_SUFFIXES
        and p.name not in _SKIP_FILES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    # the same data published in several formats (MathVerse: testmini.json + testmini.parquet): read one
    best: dict[tuple[Path, str], Path] = {}
    for p in files:
        key = (p.parent, p.name[: -len(p.suffix)])
        if key not in best or DATA_SUFFIXES.index(p.suffix) < DATA_SUFFIXES.index(best[key].suffix):
            best[key] = p
    files = sorted(best.values())
    if config_name:
        files = [p for p in files if config_name in p.relative_to(root).parts[:-1]]
        if not files:
            raise FileNotFoundError(
                f"{root}: no data files under a folder named {config_name!r}; config_name selects a "
                f"sub-folder of path: drop config_name to read the files of a flat layout"
            )
    matching = [p for p in files if _split_of(p, root) == split]
    if matching:
        return matching
    unsplit = [p for p in files if _split_of(p, root) is None]
    if unsplit:
        return unsplit
    found = sorted({s for p in files if (s := _split_of(p, root))})
    raise FileNotFoundError(f"{root}: no data files for split {split!r}; splits present: {found}")


def read_records(file: Path) -> Iterator[dict[str, Any]]:
    """Records of one Parquet / JSON / JSON Lines file, in order."""
    if file.suffix == ".parquet":
        parquet = pq.ParquetFile(file)
        for batch in parquet.iter_batches(batch_size=256):
            yield from batch.to_pylist()
        return
    if file.suffix == ".jsonl":
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{file}: line {number} is not JSON: {exc}") from None
        return
    data = json.loads(file.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(data) == 1 and lists:
            data = lists[0]
        elif all(isinstance(v, dict) for v in data.values()):
            data = [{"_key": k, **v} for k, v in data.items()]
        else:
            raise ValueError(f"{file}: JSON must be a list of records or a mapping id -> record")
    for record in data:
        if not isinstance(record, dict):
            raise ValueError(f"{file}: every JSON record must be an object, got {type(record).__name__}")
        yield record


def _undecode_images(dataset: Any) -> Any:
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, datasets.List | datasets.Sequence) and isinstance(
            feature.feature, datasets.Image
        ):
            dataset = dataset.cast_column(name, datasets.List(datasets.Image(decode=False)))
    return dataset


def hub_records(hub_id: str, split: str, config_name: str | None) -> Iterator[dict[str, Any]]:
    """Records from ``datasets.load_dataset`` (network, or a local dataset folder as ``hub_id``)."""
    import datasets

    try:
        dataset = datasets.load_dataset(hub_id, config_name, split=split)
    except Exception as exc:
        raise RuntimeError(
            f"cannot load {hub_id!r} (config {config_name!r}, split {split!r}) from the hub: {exc}. "
            "Offline, download the dataset's files and set the source's `path` to that folder."
        ) from exc
    yield from _undecode_images(dataset)


# --------------------------------------------------------------------------- helpers for adapters
_INLINE_CHOICE_RE = re.compile(r"^\s*\(?([A-J])[\).:：]\s*(.+?)\s*$")


def parse_inline_choices(text: str) -> list[str]:
    """Options listed one per line as ``A. x`` / ``(A) x`` / ``A: x`` (consecutive from A), else []."""
    options: list[str] = []
    for line in text.splitlines():
        match = _INLINE_CHOICE_RE.match(line)
        if match and match.group(1) == LETTERS[len(options)]:
            options.append(match.group(2))
    if len(options) < 2:
        inline = re.findall(r"\(([A-J])\)\s*([^()]+?)(?=\s*\([A-J]\)|$)", text.replace("\n", " "))
        letters = [letter for letter, _ in inline]
        if len(inline) >= 2 and letters == list(LETTERS[: len(inline)]):
            options = [value.strip() for _, value in inline]
    return options if len(options) >= 2 else []


_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?![A-Za-z{])")


def infer_answer_type(
    answer: str, problem: str = "", choices: list[str] | None = None
) -> tuple[str, list[str]]:
    """``(answer_type, choices)`` for a free-standing answer: letter with options → choice, number → integer/float."""
    answer = answer.strip()
    options = list(choices or []) or parse_inline_choices(problem)
    if (
        len(answer) == 1
        and answer.upper() in LETTERS
        and options
        and LETTERS.index(answer.upper()) < len(options)
    ):
        return "choice", options
    if len(_WORD_RE.findall(answer)) >= 3:  # a sentence ("There are 3 circles in the image.") is text
        return "text", []
    readings = number_readings(answer)
    if readings and not re.search(r"[a-zA-Z\\]", answer.replace("\\%", "")):
        value = readings[0]
        is_int = "." not in answer and "%" not in answer and "/" not in answer and float(value).is_integer()
        return ("integer" if is_int else "float"), []
    if re.search(r"[\\^_{}=+*/]|\d", answer) or re.fullmatch(r"[a-zA-Z]", answer):
        return "expression", []
    return "text", []


def unbox(answer: str) -> str:
    """``\\boxed{x}`` → ``x`` (ViRL39K stores every answer boxed)."""
    inner = last_boxed(answer)
    return inner if inner is not None else answer.strip()


def render_choices(problem: str, choices: list[str]) -> str:
    """Append ``(A) x`` option lines to a question that does not list them."""
    listing = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{problem.rstrip()}\nOptions:\n{listing}"


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


# --------------------------------------------------------------------------- the Source base
class Source:
    """A dataset adapter. Subclasses set the class attributes and implement :meth:`convert`."""

    name: str = ""
    hub_id: str = ""
    default_split: str = "train"
    default_config: str | None = None
    default_role: str = "rl"
    requires_images: bool = True
    # native fields every record must carry; an absent one is an error naming file, row and field
    # (even with bad_rows=skip: a column missing from the file would otherwise skip every row, or
    # worse, turn every row into a silently different one), a null one a bad row
    required_columns: tuple[str, ...] = ()

    def convert(self, record: dict[str, Any], ctx: RowContext) -> dict[str, Any]:
        """Map a native record to an example row; ``images`` may hold native values (paths, structs)."""
        raise NotImplementedError

    def hub_configs(self, config_name: str | None) -> list[str | None]:
        """Configs to read from the hub (MMMU: all subjects when none is named)."""
        return [config_name or self.default_config]

    def local_config(self, config_name: str | None) -> str | None:
        return config_name or self.default_config

    # ----------------------------------------------------------------------- reading
    def _native(self, spec: LoadSpec) -> Iterator[tuple[dict[str, Any], RowContext]]:
        split = spec.split or self.default_split
        image_root = [Path(spec.image_root)] if spec.image_root else []
        if spec.path:
            root = Path(spec.path)
            base = root if root.is_dir() else root.parent
            for file in find_files(root, split, self.local_config(spec.config_name)):
                roots = image_root + [p for p in file.parents if p == base or base in p.parents]
                for index, record in enumerate(read_records(file)):
                    yield record, RowContext(self.name, split, str(file), index, roots, spec.config_name)
            return
        hub_id = spec.hub_id or self.hub_id
        for config in self.hub_configs(spec.config_name):
            label = f"{hub_id}[{config}]:{split}" if config else f"{hub_id}:{split}"
            for index, record in enumerate(hub_records(hub_id, split, config)):
                yield record, RowContext(self.name, split, label, index, list(image_root), config)

    def finish(self, row: dict[str, Any], ctx: RowContext) -> tuple[dict[str, Any], list[str]]:
        """Resolve and check images, answer and type; returns the row and its image pixel hashes."""
        images, hashes = [], []
        for i, value in enumerate(as_list(row.get("images"))):
            struct, digest = checked_image(to_struct(value, ctx.roots, f"images[{i}]"), f"images[{i}]")
            images.append(struct)
            hashes.append(digest)
        if self.requires_images and not images:
            raise BadRow("images", "missing image (the row has none)")
        answer = row.get("answer")
        if answer is None or not str(answer).strip():
            raise BadRow("answer", "empty answer")
        if row.get("answer_type") not in ANSWER_TYPES:
            raise BadRow(
                "answer_type", f"unknown answer type {row.get('answer_type')!r} (known: {ANSWER_TYPES})"
            )
        choices = [str(c) for c in as_list(row.get("choices"))]
        if row["answer_type"] == "choice" and not choices:
            raise BadRow("choices", "a choice item without options")
        problem = str(row.get("problem") or "")
        if not problem.strip() and not images:
            raise BadRow("problem", "empty problem and no image")
        marks = problem.count("<image>")
        if marks not in (0, len(images)):
            raise BadRow("problem", f"{marks} <image> marks for {len(images)} image(s)")
        meta = row.get("meta") or {}
        out = {
            "id": str(row["id"]),
            "data_source": row.get("data_source") or self.name,
            "images": images,
            "problem": problem,
            "answer": str(answer).strip(),
            "answer_type": row["answer_type"],
            "choices": choices,
            "solution": str(row.get("solution") or ""),
            "meta": meta if isinstance(meta, str) else json.dumps(meta, sort_keys=True, default=str),
        }
        return out, hashes

    def iter_results(self, spec: LoadSpec) -> Iterator[RowResult]:
        """Every native record as a ``RowResult`` (valid row or error); ``limit`` counts valid rows."""
        kept = 0
        for record, ctx in self._native(spec):
            if spec.limit is not None and kept >= spec.limit:
                return
            native_id = _guess_id(record)
            absent = [c for c in self.required_columns if c not in record]
            if absent:
                ident = f" (id={native_id})" if native_id else ""
                raise SchemaError(
                    f"{ctx.where}{ident}: field {absent[0]!r}: required column missing for source "
                    f"{self.name!r} (required: {list(self.required_columns)})"
                )
            null = [c for c in self.required_columns if record[c] is None]
            if null:
                yield RowResult(ctx, error=BadRow(null[0], "required field is null"), native_id=native_id)
                continue
            try:
                partial = self.convert(record, ctx)
                native_id = str(partial.get("id"))
                row, hashes = self.finish(partial, ctx)
            except BadRow as exc:
                yield RowResult(ctx, error=exc, native_id=native_id)
                continue
            except (KeyError, TypeError, ValueError) as exc:
                yield RowResult(
                    ctx, error=BadRow(_field_of(exc), f"{type(exc).__name__}: {exc}"), native_id=native_id
                )
                continue
            kept += 1
            yield RowResult(ctx, row=row, image_hashes=hashes, native_id=row["id"])

    def load(
        self, spec: LoadSpec | None = None, bad_rows: str = "error", skipped: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Valid example rows; ``bad_rows="error"`` raises on the first bad row (naming file, row, field);
        ``"skip"`` leaves bad rows out, appending their descriptions to ``skipped`` when given."""
        rows = []
        for result in self.iter_results(spec or LoadSpec()):
            if result.error is not None:
                if bad_rows == "error":
                    raise ValueError(describe_error(result)) from result.error
                logger.warning("skipping %s", describe_error(result))
                if skipped is not None:
                    skipped.append(describe_error(result))
                continue
            rows.append(result.row)
        return rows


def _guess_id(record: dict[str, Any]) -> str | None:
    for key in ("id", "pid", "qid", "sample_index"):
        if record.get(key) is not None:
            return str(record[key])
    return None


def _field_of(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return "<record>"


def describe_error(result: RowResult) -> str:
    err = result.error
    ident = f" (id={result.native_id})" if result.native_id else ""
    return f"{result.ctx.where}{ident}: {err}"


def row_id(source: str, native_id: Any, ctx: RowContext) -> str:
    """``<source>/<native id>``, or ``<source>/<split>-<index>`` when the record has none."""
    if native_id is None or str(native_id) == "":
        return f"{source}/{ctx.split}-{ctx.index}"
    return f"{source}/{native_id}"
