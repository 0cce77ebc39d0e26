"""KFP lightweight components, one per pipeline stage; each only wires artifacts to care_core.stages.

The functions are plain Python; ``make_component`` turns one into a KFP component for a given image
(the recipe's ``kubernetes.image`` / ``gpu_image``), so the image is chosen at compile time.
"""

from __future__ import annotations

from collections.abc import Callable

from kfp import dsl

from components.advantage import advantage
from components.evaluate import evaluate, evaluate_curve
from components.ingest import ingest
from components.register import plan_retrain, register
from components.rollout import rollout
from components.sft import sft
from components.update import update

DEFAULT_IMAGE = "ghcr.io/care-pipelines/care:0.1.0"

STAGE_FUNCTIONS: dict[str, Callable[..., str]] = {
    "ingest": ingest,
    "sft": sft,
    "rollout": rollout,
    "advantage": advantage,
    "update": update,
    "evaluate": evaluate,
}
# scheduled retraining (README: Scheduled retraining): in the pipeline when retrain.registered_model is set
RETRAIN_FUNCTIONS: dict[str, Callable[..., object]] = {"plan": plan_retrain, "register": register}
# learning-curve points (train.eval_every): a held-out evaluation that leaves the MLflow run open
CURVE_FUNCTIONS: dict[str, Callable[..., str]] = {"evaluate_curve": evaluate_curve}


def make_component(stage: str, image: str = DEFAULT_IMAGE) -> dsl.PythonComponent:
    """The KFP component for ``stage`` running in ``image`` (no packages_to_install: the image has the project)."""
    functions = {**STAGE_FUNCTIONS, **RETRAIN_FUNCTIONS, **CURVE_FUNCTIONS}
    if stage not in functions:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(functions)}")
    return dsl.component(functions[stage], base_image=image, install_kfp_package=False)


__all__ = ["CURVE_FUNCTIONS", "DEFAULT_IMAGE", "RETRAIN_FUNCTIONS", "STAGE_FUNCTIONS", "make_component"]
