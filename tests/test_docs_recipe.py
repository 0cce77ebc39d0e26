"""Every recipe field is documented where it is declared; `care recipe explain/show/reference` read
those docstrings; docs/recipe-reference.md is the generated reference, kept current here."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from care_core import config
from care_core.cli import main
from care_core.config import Recipe, RecipeError, build_recipe, load_recipe, recipe_to_dict
from care_core.recipe_docs import explain, field_docs, find, reference_markdown, schema_keys, show

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "recipe-reference.md"


def _dataclasses(cls: type = Recipe) -> list[type]:
    found, hints = [cls], typing.get_type_hints(cls, vars(config))
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        inner = (
            typing.get_args(hint)[0] if typing.get_origin(hint) is list and typing.get_args(hint) else hint
        )
        if dataclasses.is_dataclass(inner):
            found += [c for c in _dataclasses(inner) if c not in found]  # type: ignore[arg-type]
    return found


@pytest.mark.parametrize("cls", _dataclasses(), ids=lambda c: c.__name__)
def test_every_field_has_a_docstring_under_it(cls):
    docs = field_docs(cls)
    undocumented = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name, "").strip()]
    assert not undocumented, f"care_core/config.py {cls.__name__}: add a docstring under {undocumented}"


def test_reference_is_current():
    expected = reference_markdown()
    assert REFERENCE.read_text() == expected, (
        "docs/recipe-reference.md is stale: run `care recipe reference -o docs/recipe-reference.md`"
    )
    assert all(f"`{k.key}`" in expected for k in schema_keys() if not (k.section and k.default is None))


def test_docstrings_are_read_from_the_source():
    @dataclasses.dataclass
    class Toy:
        a: int = 1
        """First line.

        Second paragraph."""
        b: str = "x"  # a comment is no docstring
        c: float = 0.5
        """C."""

    assert field_docs(Toy) == {"a": "First line.\n\nSecond paragraph.", "c": "C."}


def test_explain_a_key_a_list_item_and_a_section():
    engine = explain("rollout.engine")
    assert engine.startswith("rollout.engine: ") and "= hf" in engine and "choices: hf, vllm" in engine
    assert (
        find("data.sources.0.role") == find("data.sources[].role")
        and find("data.sources.3.role").default == "rl"
    )
    rescue = explain("algorithm.care.rescue")
    assert "algorithm.care.rescue.delta = 0.1" in rescue and "keys:" in rescue
    with pytest.raises(RecipeError, match=r"unknown recipe key 'rollout.engin'; did you mean rollout.engine"):
        explain("rollout.engin")


def test_literal_choices_are_enforced_when_the_recipe_loads():
    assert find("loss.agg").choices == ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
    with pytest.raises(RecipeError, match="loss.agg"):
        build_recipe({"loss": {"agg": "sum"}})


def test_show_round_trips_and_marks_changed_defaults():
    recipe = load_recipe("recipes/tiny-care.yaml", ["algorithm.care.K=2"])
    text = show(recipe)
    assert yaml.safe_load(text) == recipe_to_dict(recipe)  # comments only: the YAML is the recipe
    lines = text.splitlines()
    k = lines.index("    K: 2")
    assert (
        lines[k - 1] == "    # default: 4"
        and lines[k - 2].startswith("    # ")
        and "negatives" in lines[k - 2]
    )


def test_cli_recipe_commands(tmp_path, capsys):
    assert main(["recipe", "explain", "algorithm.care.K"]) == 0
    assert capsys.readouterr().out.startswith("algorithm.care.K: int = 4")
    assert main(["recipe", "show", "-c", "recipes/tiny-grpo.yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["algorithm"]["name"] == "grpo"
    assert main(["recipe", "reference", "-o", str(tmp_path / "ref.md")]) == 0
    assert (tmp_path / "ref.md").read_text() == reference_markdown()
    assert main(["recipe", "explain", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown recipe key 'nope'")
