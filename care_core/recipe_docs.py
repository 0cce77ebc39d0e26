"""The recipe schema, described: every key's type, default and meaning, read from ``care_core/config.py``.

Each field of the recipe dataclasses carries its meaning as a string literal right under it (the
EasyR1 convention); choices are ``Literal[...]`` types. This module reads those docstrings with
``ast`` and serves them three ways:

* ``explain(key)``: one key (``care recipe explain algorithm.care.K``);
* ``show(recipe)``: a resolved recipe as YAML, each key under its meaning and default
  (``care recipe show -c RECIPE``);
* ``reference_markdown()``: docs/recipe-reference.md (``care recipe reference -o FILE``; a test
  keeps the file equal to it).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import yaml

from care_core import config
from care_core.config import Recipe, RecipeError, recipe_to_dict

LIST_ITEM = "[]"  # ``data.sources[].name``: a field of every list item


@dataclass(frozen=True)
class KeyDoc:
    """One recipe key: dotted ``key``, its ``type`` as written in config.py, ``default``, ``doc``."""

    key: str
    type: str
    default: Any
    doc: str
    choices: tuple[Any, ...] = ()
    section: bool = False  # a nested dataclass (its keys follow)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass: the string literal right under each annotated field."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _item_class(hint: Any) -> type | None:
    """The dataclass of ``list[SomeConfig]`` (``None`` for other types)."""
    if get_origin(hint) is list and get_args(hint) and dataclasses.is_dataclass(get_args(hint)[0]):
        return get_args(hint)[0]
    return None


def _choices(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(c for arg in get_args(hint) for c in _choices(arg))
    return ()


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return None


def schema_keys(cls: type = Recipe, prefix: str = "") -> list[KeyDoc]:
    """Every key of the recipe tree, depth first in declaration order (sections before their keys)."""
    hints = typing.get_type_hints(cls, vars(config))
    docs = field_docs(cls)
    out: list[KeyDoc] = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        hint = hints[field.name]
        doc = docs.get(field.name, "")
        if dataclasses.is_dataclass(hint):
            out.append(KeyDoc(key, str(field.type), None, doc, section=True))
            out += schema_keys(hint, f"{key}.")  # type: ignore[arg-type]
        elif (item := _item_class(hint)) is not None:
            out.append(KeyDoc(key, str(field.type), _default(field), doc, section=True))
            out += schema_keys(item, f"{key}{LIST_ITEM}.")
        else:
            out.append(KeyDoc(key, str(field.type), _default(field), doc, _choices(hint)))
    return out


def find(key: str) -> KeyDoc:
    """The ``KeyDoc`` of ``key`` (``a.b.c``; list items as ``data.sources.0.name`` or ``data.sources[].name``).

    An unknown key raises ``RecipeError`` naming the closest known keys.
    """
    keys = {k.key: k for k in schema_keys()}
    parts = key.strip().split(".")
    wanted = parts[0]
    for part in parts[1:]:
        wanted += LIST_ITEM if part.isdigit() else f".{part}"
    wanted = wanted.replace("[][]", "[]")
    if wanted in keys:
        return keys[wanted]
    close = difflib.get_close_matches(wanted, list(keys), n=3, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(close)}?" if close else "; `care recipe show -c RECIPE` lists every key"
    )
    raise RecipeError(f"unknown recipe key {key!r}{hint}", "care recipe explain")


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def explain(key: str) -> str:
    """A key's type, default, choices and meaning; for a section, its keys too."""
    doc = find(key)
    lines = [
        f"{doc.key}: {doc.type}"
        + ("" if doc.section and doc.default is None else f" = {_value(doc.default)}")
    ]
    if doc.choices:
        lines.append(f"  choices: {', '.join(_value(c) for c in doc.choices)}")
    lines += [f"  {line}" for line in (doc.doc or "(undocumented)").splitlines()]
    if doc.section:
        children = [
            k
            for k in schema_keys()
            if k.key.startswith(doc.key + ".") or k.key.startswith(doc.key + LIST_ITEM)
        ]
        lines.append("  keys:")
        lines += [f"    {k.key} = {_value(k.default)}" for k in children if not k.section]
    return "\n".join(lines)


def _comment(doc: KeyDoc, indent: str, current: Any) -> list[str]:
    first = (doc.doc or "(undocumented)").splitlines()[0]
    lines = [f"{indent}# {first}"]
    if not doc.section and current != doc.default:
        lines.append(f"{indent}# default: {_value(doc.default)}")
    if doc.choices:
        lines.append(f"{indent}# choices: {', '.join(_value(c) for c in doc.choices)}")
    return lines


def show(recipe: Recipe) -> str:
    """``recipe`` as YAML, every key under a comment with its meaning (and default when it differs)."""
    docs = {k.key: k for k in schema_keys()}

    def emit(data: dict[str, Any], prefix: str, indent: str) -> list[str]:
        lines: list[str] = []
        for name, value in data.items():
            key = f"{prefix}{name}"
            doc = docs.get(key)
            if doc is not None:
                lines += _comment(doc, indent, value)
            if isinstance(value, dict) and doc is not None and doc.section:
                lines.append(f"{indent}{name}:")
                lines += emit(value, f"{key}.", indent + "  ")
            elif (
                isinstance(value, list)
                and value
                and all(isinstance(v, dict) for v in value)
                and doc is not None
            ):
                lines.append(f"{indent}{name}:")
                for item in value:
                    body = emit(item, f"{key}{LIST_ITEM}.", indent + "    ")
                    first = next(i for i, line in enumerate(body) if not line.lstrip().startswith("#"))
                    body[first] = f"{indent}  - " + body[first].lstrip()
                    lines += body
            else:
                dumped = yaml.safe_dump({name: value}, default_flow_style=True, width=10_000, sort_keys=False)
                lines.append(indent + dumped.strip().removeprefix("{").removesuffix("}"))
        return lines

    return "\n".join(emit(recipe_to_dict(recipe), "", "")) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference_markdown() -> str:
    """docs/recipe-reference.md: one table per top-level section, every key with type, default, meaning."""
    keys = schema_keys()
    out = [
        "# Recipe reference",
        "",
        "Every recipe key with its type, default and meaning. Generated from the field docstrings in",
        "`care_core/config.py` by `care recipe reference -o docs/recipe-reference.md`;",
        "`tests/test_docs_recipe.py` fails when this file and the schema differ. `care recipe explain KEY`",
        "prints one entry, `care recipe show -c RECIPE` a resolved recipe with these comments. The method",
        "behind the `algorithm.*` switches is docs/method.md; list items are written `key[].field`.",
        "",
    ]
    top = [k for k in keys if "." not in k.key]
    for section in top:
        out += [f"## `{section.key}`", "", _cell(section.doc) or "", ""]
        rows = [
            k
            for k in keys
            if k.key.startswith(section.key + ".") or k.key.startswith(section.key + LIST_ITEM)
        ]
        if not section.section:
            rows = [section]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for k in rows:
            if k.section and k.default is None:
                continue
            default = "" if k.section else f"`{_value(k.default)}`"
            out.append(f"| `{k.key}` | `{_cell(k.type)}` | {default} | {_cell(k.doc)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
