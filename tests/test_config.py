"""Recipe loading, overrides and errors (care_core.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from care_core.config import (
    Recipe,
    RecipeError,
    build_recipe,
    flatten,
    load_recipe,
    recipe_hash,
    recipe_to_dict,
    recipe_to_yaml,
)

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_defaults_are_the_care_reference_values() -> None:
    r = Recipe()
    care = r.algorithm.care
    assert (r.algorithm.name, r.rollout.n, r.rollout.temperature, r.rollout.top_p) == ("care", 8, 1.0, 1.0)
    assert (care.K, care.M, care.s, care.eps, care.equalize, care.positive_rule) == (
        4,
        6,
        0.5,
        1e-6,
        True,
        "accuracy",
    )
    assert care.reflection_scale == 0.25
    assert (care.rescue.enable, care.rescue.delta, care.rescue.normalize, care.rescue.logprob_norm) == (
        True,
        0.1,
        True,
        "sum",
    )
    rgr = care.rgr
    assert (rgr.enable, rgr.template, rgr.train_on, rgr.temperature, rgr.top_p, rgr.max_tokens) == (
        True,
        "structured",
        "continuation",
        0.6,
        0.95,
        512,
    )
    assert (care.region.enable, care.region.tau_pos) == (True, 0.005)
    assert (
        r.loss.eps_low,
        r.loss.eps_high,
        r.loss.dual_clip,
        r.loss.kl.type,
        r.loss.kl.beta,
        r.loss.agg,
    ) == (
        0.2,
        0.3,
        3.0,
        "k3",
        0.01,
        "token-mean",
    )
    assert (r.optim.lr, r.optim.weight_decay, r.optim.grad_clip, r.train.ppo_epochs) == (1e-6, 0.01, 1.0, 1)
    assert (r.train.prompts_per_round, r.train.mini_batch_size, r.reward.format_weight) == (512, 128, 0.1)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_loads(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.algorithm.name in {"care", "grpo", "dr_grpo"}
    assert ("grpo" in path.stem) == (recipe.algorithm.name == "grpo")


def test_set_overrides_nested_keys_with_types(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("algorithm:\n  name: care\n")
    recipe = load_recipe(
        path,
        [
            "algorithm.name=grpo",
            "algorithm.care.K=3",
            "algorithm.care.rescue.enable=false",
            "optim.lr=2e-5",
            "model.path=/models/x",
        ],
    )
    assert recipe.algorithm.name == "grpo"
    assert recipe.algorithm.care.K == 3 and isinstance(recipe.algorithm.care.K, int)
    assert recipe.algorithm.care.rescue.enable is False
    assert recipe.optim.lr == pytest.approx(2e-5)
    assert recipe.model.path == "/models/x"
    assert recipe.name == "r"


def test_list_items_are_typed_and_indexable() -> None:
    recipe = build_recipe(
        {"data": {"sources": [{"name": "geometry3k", "limit": 5}]}}, ["data.sources.0.limit=7"]
    )
    assert recipe.data.sources[0].name == "geometry3k"
    assert recipe.data.sources[0].limit == 7
    assert recipe.data.sources[0].split == "train"  # default filled in for list items


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "needle"),
    [
        ("algorithm:\n  nme: care\n", [], "algorithm.nme"),
        ("", ["algorithm.care.Kx=3"], "algorithm.care.Kx"),
        ("", ["algorithm.care.K=three"], "algorithm.care.K"),
        ("loss:\n  eps_low: wide\n", [], "loss.eps_low"),
        ("algorithm:\n  name: ppo\n", [], "algorithm.name"),
        ("algorithm:\n  care:\n    K: 8\n    M: 6\n", [], "algorithm.care.M"),
        ("", ["loss.kl.type=k9"], "loss.kl.type"),
        ("", ["algorithm.care.rgr.train_on=everything"], "algorithm.care.rgr.train_on"),
        ("", ["train.sft.warmup_steps=-1"], "train.sft.warmup_steps"),
        ("data:\n  sources:\n    - name: x\n      colour: red\n", [], "colour"),
        ("", ["novalue"], "key=value"),
    ],
)
def test_bad_recipes_name_the_key_and_the_file(
    tmp_path: Path, yaml_text: str, overrides: list[str], needle: str
) -> None:
    path = tmp_path / "bad-recipe.yaml"
    path.write_text(yaml_text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    message = str(info.value)
    assert needle in message
    if "=" not in needle:
        assert "bad-recipe.yaml" in message


def test_missing_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(path)


def test_round_trip_and_hash(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPES[0], ["algorithm.care.K=2"])
    path = tmp_path / "again.yaml"
    path.write_text(recipe_to_yaml(recipe))
    again = load_recipe(path)
    again.name = recipe.name
    assert recipe_to_dict(again) == recipe_to_dict(recipe)
    assert recipe_hash(again) == recipe_hash(recipe)
    again.algorithm.care.K = 3
    assert recipe_hash(again) != recipe_hash(recipe)


def test_flatten_gives_dotted_scalars() -> None:
    flat = flatten(recipe_to_dict(Recipe()))
    assert flat["algorithm.care.rescue.delta"] == 0.1
    assert flat["loss.kl.beta"] == 0.01
    assert all(not isinstance(v, dict) or not v for v in flat.values())
