"""Source adapters: one module per dataset, mapping its published schema to example rows.

``get_source(name)`` returns the adapter; ``load_source_rows(name, ...)`` reads valid rows (the
evaluate stage uses it for benchmarks). Training sources: ``virl39k``, ``geometry3k``,
``chartqa``, ``vision_r1_cold``; benchmarks: ``mathvista``, ``mathverse``, ``mathvision``,
``mmmu``, ``mmmu_pro_standard``, ``mmmu_pro_vision``. (``synthetic`` is generated, not read:
see ``care_core.data.synthetic``.)
"""

from __future__ import annotations

from typing import Any

from care_core.data.sources.base import LoadSpec, RowResult, Source, describe_error
from care_core.data.sources.chartqa import ChartQA
from care_core.data.sources.geometry3k import Geometry3K
from care_core.data.sources.mathverse import MathVerse
from care_core.data.sources.mathvision import MathVision
from care_core.data.sources.mathvista import MathVista
from care_core.data.sources.mmmu import MMMU
from care_core.data.sources.mmmu_pro import MMMUProStandard, MMMUProVision
from care_core.data.sources.virl39k import ViRL39K
from care_core.data.sources.vision_r1_cold import VisionR1Cold

SOURCES: dict[str, type[Source]] = {
    cls.name: cls
    for cls in (
        ViRL39K,
        Geometry3K,
        ChartQA,
        VisionR1Cold,
        MathVista,
        MathVerse,
        MathVision,
        MMMU,
        MMMUProStandard,
        MMMUProVision,
    )
}
BENCHMARK_SOURCES = ("mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_standard", "mmmu_pro_vision")


def get_source(name: str) -> Source:
    """The adapter for ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return SOURCES[name]()
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {sorted(SOURCES)} (and 'synthetic')") from None


def load_source_rows(
    name: str,
    path: str | None = None,
    hub_id: str | None = None,
    split: str | None = None,
    config_name: str | None = None,
    limit: int | None = None,
    image_root: str | None = None,
    bad_rows: str = "error",
    skipped: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Valid example rows of a source/benchmark from local files (``path``) or the hub.

    With ``bad_rows="skip"`` the descriptions of the rows left out are appended to ``skipped``."""
    spec = LoadSpec(
        hub_id=hub_id, path=path, split=split, config_name=config_name, limit=limit, image_root=image_root
    )
    return get_source(name).load(spec, bad_rows=bad_rows, skipped=skipped)


__all__ = [
    "BENCHMARK_SOURCES",
    "SOURCES",
    "LoadSpec",
    "RowResult",
    "Source",
    "describe_error",
    "get_source",
    "load_source_rows",
]
