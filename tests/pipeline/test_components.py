"""Each stage component: typed artifacts, project image, no packages_to_install, care_core imported inside."""

from __future__ import annotations

import ast
import inspect

import pytest
from kfp import compiler

from components import STAGE_FUNCTIONS, make_component

EXPECTED = {
    "ingest": ({}, {"data": "system.Dataset", "metrics": "system.Metrics"}),
    "sft": (
        {"data": "system.Dataset", "init": "system.Model"},
        {"model": "system.Model", "metrics": "system.Metrics"},
    ),
    "rollout": (
        {"data": "system.Dataset", "model": "system.Model"},
        {"rollouts": "system.Dataset", "metrics": "system.Metrics"},
    ),
    "advantage": ({"rollouts": "system.Dataset"}, {"scored": "system.Dataset", "metrics": "system.Metrics"}),
    "update": (
        {
            "rollouts": "system.Dataset",
            "model": "system.Model",
            "reference": "system.Model",
            "state": "system.Model",
        },
        {"updated": "system.Model", "metrics": "system.Metrics"},
    ),
    "evaluate": (
        {"data": "system.Dataset", "model": "system.Model"},
        {
            "results": "system.Dataset",
            "table": "system.Markdown",
            "report": "system.HTML",
            "metrics": "system.Metrics",
        },
    ),
}


@pytest.mark.parametrize("stage", sorted(STAGE_FUNCTIONS))
def test_component_interface(stage, tmp_path):
    comp = make_component(stage, "registry.example/care:1")
    spec = comp.component_spec
    container = spec.implementation.container
    assert container.image == "registry.example/care:1"
    command = " ".join(container.command)
    assert "pip install" not in command  # the image has the project; nothing installed at run time
    inputs, outputs = EXPECTED[stage]
    got_in = {n: i.type.split("@")[0] for n, i in spec.inputs.items() if i.type.startswith("system.")}
    got_out = {n: o.type.split("@")[0] for n, o in spec.outputs.items() if o.type.startswith("system.")}
    assert (got_in, got_out) == (inputs, outputs)
    assert spec.inputs["recipe_yaml"].type == "String" and spec.inputs["kfp_run_id"].type == "String"
    assert spec.outputs["Output"].type == "String"  # the MLflow run id
    for name in ("model", "reference", "state", "init"):
        if name in spec.inputs:
            assert spec.inputs[name].optional  # absent = the recipe's base model / first round
    compiler.Compiler().compile(comp, str(tmp_path / f"{stage}.yaml"))


@pytest.mark.parametrize("stage", sorted(STAGE_FUNCTIONS))
def test_component_only_wires_to_its_stage(stage):
    func = STAGE_FUNCTIONS[stage]
    module_src = inspect.getsource(inspect.getmodule(func))
    top_imports = [n for n in ast.parse(module_src).body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(getattr(n, "module", "") == "kfp.dsl" for n in top_imports)  # care_core only inside
    body = ast.parse(inspect.getsource(func)).body[0]
    inner = {n.module for n in ast.walk(body) if isinstance(n, ast.ImportFrom)}
    assert f"care_core.stages.{stage}" in inner and "care_core.tracking.stage_log" in inner
    calls = {n.func.id for n in ast.walk(body) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert f"run_{stage}" in calls and "record_stage" in calls
    branches = [n for n in ast.walk(body) if isinstance(n, ast.If | ast.For | ast.While)]
    assert len(branches) <= (1 if stage == "update" else 0)  # update: TrainJob when nodes > 1


def test_unknown_stage():
    with pytest.raises(KeyError, match="unknown stage"):
        make_component("reward")
