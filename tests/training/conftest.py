"""Fixtures: the offline micro Qwen2.5-VL policy and a few synthetic example rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from care_core.config import build_recipe


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Local folder of the tiny://micro model (built once per session into a shared cache)."""
    from care_core.models import resolve_model_path

    recipe = build_recipe(
        {
            "model": {
                "path": "tiny://micro",
                "cache_dir": str(Path(tmp_path_factory.getbasetemp()) / "care_models"),
            }
        }
    )
    return resolve_model_path(recipe.model)


@pytest.fixture(scope="session")
def micro_policy(micro_dir: str):
    from care_core.models import load_policy

    return load_policy(micro_dir)


@pytest.fixture(scope="session")
def recipe():
    return build_recipe({"data": {"synthetic": {"n_train": 16, "n_test": 4}}})


@pytest.fixture(scope="session")
def examples(recipe):
    from care_core.data.synthetic import generate_rows

    return generate_rows(recipe.data.synthetic, "train")[:4]
