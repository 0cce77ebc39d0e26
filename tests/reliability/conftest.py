"""Fixtures for the reliability tests: the offline micro policy folder and advantage-annotated rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from care_core.config import build_recipe


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Local folder of the tiny://micro model (built once per session into the shared test cache)."""
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
