"""Recipe values <-> KFP pipeline parameters.

Every recipe leaf becomes one pipeline parameter named by its dotted key with ``__`` for ``.``
(``algorithm.care.K`` -> ``algorithm__care__K``), typed from its value, defaulting to the recipe's
value, so the KFP UI shows a form. Lists (sources, benchmarks, betas) are JSON list parameters;
``None`` values are string parameters holding YAML (``null``). Values fixed at compile time are not
parameters: ``train.rounds`` (rounds are unrolled), ``train.sft.enable`` (the SFT step exists or not),
``train.eval_every`` (the intermediate evaluate steps) and ``kubernetes.*`` (platform settings).
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import Any

import yaml

from care_core.config import Recipe, build_recipe, flatten, recipe_to_dict, recipe_to_yaml

COMPILE_TIME_KEYS = ("train.rounds", "train.sft.enable", "train.eval_every")
COMPILE_TIME_PREFIXES = ("kubernetes.",)
_RENAMED = {"name": "recipe_name"}


@dataclass(frozen=True)
class PipelineParam:
    """One pipeline parameter: its KFP name, the recipe key, the Python type and the default."""

    name: str
    key: str
    type: type
    default: Any


def param_name(key: str) -> str:
    """Dotted recipe key -> KFP parameter name (a Python identifier)."""
    name = _RENAMED.get(key, key.replace(".", "__"))
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"recipe key {key!r} cannot be a pipeline parameter name ({name!r})")
    return name


def _drop_none(value: Any) -> Any:
    """KFP parameter defaults cannot hold null: drop None entries of mappings (they are schema defaults)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _integral_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_to_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_to_int(v) for v in value]
    return value


def pipeline_params(recipe: Recipe) -> list[PipelineParam]:
    """The pipeline's parameters for ``recipe`` (all run-time recipe values), in recipe order."""
    params: list[PipelineParam] = []
    for key, value in flatten(recipe_to_dict(recipe)).items():
        if key in COMPILE_TIME_KEYS or key.startswith(COMPILE_TIME_PREFIXES):
            continue
        if value is None:
            params.append(PipelineParam(param_name(key), key, str, "null"))
        elif isinstance(value, bool | int | float | str):
            params.append(PipelineParam(param_name(key), key, type(value), value))
        elif isinstance(value, list):
            params.append(PipelineParam(param_name(key), key, list, _drop_none(value)))
        elif isinstance(value, dict):
            params.append(PipelineParam(param_name(key), key, dict, _drop_none(value)))
        else:
            raise TypeError(
                f"recipe key {key!r}: value of type {type(value).__name__} cannot be a pipeline parameter"
            )
    return params


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def merge_parameters(base_yaml: str, values: dict[str, Any]) -> str:
    """Apply parameter ``values`` (by KFP name) over the compile-time recipe YAML; return the resolved YAML.

    Validates the result: a bad value raises ``RecipeError`` naming the recipe key.
    """
    data = yaml.safe_load(base_yaml) or {}
    for param in pipeline_params(build_recipe(data, origin="compiled recipe")):
        if param.name not in values:
            continue
        value = values[param.name]
        if param.type is str and param.default == "null" and isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else None
        if param.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if param.type in (int, list, dict):
            value = _integral_to_int(value)  # JSON numbers arrive as floats; int fields reject 1.0
        _set(data, param.key, value)
    return recipe_to_yaml(build_recipe(data, origin="pipeline parameters"))
