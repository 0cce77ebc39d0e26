"""The retraining pipeline as compiled for a cluster (plan -> If train -> ... -> register + gate), the
plan/register components, and the schedules file's ``retrain`` section as ``care schedule`` validates it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2
from test_submit import FakeKfpClient  # tests/pipeline is on sys.path (pytest rootdir-relative import)

from care_core.config import load_recipe
from care_core.constants import STAGES
from components import RETRAIN_FUNCTIONS, make_component
from pipelines.care_pipeline import build_pipeline
from pipelines.compile import compile_pipeline
from pipelines.submit import ScheduleError, apply_schedules, load_schedules

RETRAIN = ["retrain.registered_model=care-tiny", "retrain.start_from=champion", "train.rounds=2"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    recipe = load_recipe("recipes/tiny-care.yaml", [*RETRAIN, "kubernetes.gpus={sft: 1, update: 1}"])
    path = compile_pipeline(recipe, tmp_path_factory.mktemp("ir") / "pipeline.yaml", stages=list(STAGES))
    spec, platform = yaml.safe_load_all(path.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def _names(dag: dict) -> set[str]:
    return {t["taskInfo"]["name"] for t in dag["tasks"].values()}


def test_plan_gates_training_and_register_exposes_the_decision(compiled):
    spec, platform = compiled
    comps = spec["components"]
    assert _names(spec["root"]["dag"]) == {
        "resolve recipe",
        "createpvc",
        "ingest",
        "retrain plan",
        "condition-branches-1",
    }
    branches = comps["comp-condition-branches-1"]["dag"]["tasks"]
    train = comps[branches["condition-2"]["componentRef"]["name"]]["dag"]
    skip = comps[branches["condition-3"]["componentRef"]["name"]]["dag"]
    assert branches["condition-2"]["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--plan-retrain-Output'] == 'train'"
    )
    assert _names(train) == {"sft", "evaluate", "register + gate", "delete workspace"} | {
        f"round {r}: {s}" for r in range(2) for s in ("rollout", "advantage", "update")
    }
    assert _names(skip) == {"delete workspace"}  # a skipped run still removes its workspace

    # the gate's decision (and the plan with the fingerprint) are Markdown outputs the KFP UI shows
    outputs = comps[train["tasks"]["register"]["componentRef"]["name"]]["outputDefinitions"]["artifacts"]
    assert outputs["decision"]["artifactType"]["schemaTitle"] == "system.Markdown"
    plan_out = comps["comp-plan-retrain"]["outputDefinitions"]["artifacts"]
    assert plan_out["plan"]["artifactType"]["schemaTitle"] == "system.Markdown"
    assert plan_out["start"]["artifactType"]["schemaTitle"] == "system.Model"

    # warm start: SFT's init is the plan's start model; register gets the last round's model + eval results
    assert train["tasks"]["sft"]["inputs"]["artifacts"]["init"] == {
        "componentInputArtifact": "pipelinechannel--plan-retrain-start"
    }
    reg = train["tasks"]["register"]["inputs"]
    assert reg["artifacts"]["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "updated",
        "producerTask": "update-2",
    }
    assert reg["artifacts"]["results"]["taskOutputArtifact"]["producerTask"] == "evaluate"
    assert reg["parameters"]["model_output"]["runtimeValue"]["constant"] == "round-1/model"
    # the pipeline's output (the MLflow run id) comes from ingest, which always runs
    assert (
        spec["root"]["dag"]["outputs"]["parameters"]["Output"]["valueFromParameter"]["producerSubtask"]
        == "ingest"
    )

    # plan and gate read the registry as it is now: never cached; both get the S3/MLflow secrets
    plan_task = spec["root"]["dag"]["tasks"]["plan-retrain"]
    assert not plan_task.get("cachingOptions", {}).get("enableCache", False)
    assert not train["tasks"]["register"].get("cachingOptions", {}).get("enableCache", False)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in ("exec-plan-retrain", "exec-register"):
        assert {s["secretName"] for s in executors[executor]["secretAsEnv"]} == {"care-s3", "care-mlflow"}


def test_without_a_registered_model_the_pipeline_is_unchanged():
    pipeline = build_pipeline(
        load_recipe("recipes/tiny-care.yaml", ["train.rounds=1"]), list(STAGES), platform=False
    )
    names = {t.task_info.name for t in pipeline.pipeline_spec.root.dag.tasks.values()}
    assert "retrain plan" not in names and "sft" in names
    with pytest.raises(ValueError, match="needs the evaluate stage"):
        build_pipeline(load_recipe("recipes/tiny-care.yaml", RETRAIN), ["ingest", "sft"], platform=False)


@pytest.mark.parametrize("step", sorted(RETRAIN_FUNCTIONS))
def test_retrain_components_compile_and_wire_to_care_core(step, tmp_path):
    comp = make_component(step, "registry.example/care:1")
    spec = comp.component_spec
    assert spec.implementation.container.image == "registry.example/care:1"
    assert "pip install" not in " ".join(spec.implementation.container.command)
    assert spec.inputs["recipe_yaml"].type == "String" and spec.outputs["Output"].type == "String"
    compiler.Compiler().compile(comp, str(tmp_path / f"{step}.yaml"))


# --------------------------------------------------------------------------- schedules
def _write(tmp_path: Path, **extra) -> Path:
    item = {
        "name": "nightly",
        "recipe": str(Path("recipes/tiny-care.yaml").resolve()),
        "cron": "0 0 2 * * *",
        **extra,
    }
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": [item]}))
    return path


def test_repository_schedules_set_the_retrain_keys():
    schedules = {s.name: s for s in load_schedules("pipelines/schedules.yaml")}
    nightly = schedules["nightly-care-7b"]
    recipe = load_recipe(nightly.recipe, nightly.recipe_overrides)
    assert (recipe.retrain.registered_model, recipe.retrain.start_from) == ("care-qwen2_5-vl-7b", "champion")
    assert recipe.retrain.min_improvement == 0.005 and recipe.retrain.skip_if_unchanged is True
    baseline = schedules["weekly-grpo-baseline-7b"]
    assert (
        load_recipe(baseline.recipe, baseline.recipe_overrides).retrain.registered_model
        == "grpo-qwen2_5-vl-7b"
    )


def test_applied_schedule_compiles_the_retraining_steps(tmp_path):
    clients: dict[str, FakeKfpClient] = {}
    factory = lambda host: clients.setdefault(host, FakeKfpClient(host))  # noqa: E731
    path = _write(tmp_path, set=["train.rounds=1"], retrain={"registered_model": "m", "start_from": "champion",
                                                            "min_improvement": 0.01})  # fmt: skip
    created = apply_schedules(path, "h", client_factory=factory)["created"]
    spec = clients["h"].packages[created[0]["id"]]
    assert "retrain plan" in _names(spec["root"]["dag"])
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["retrain__start_from"]["defaultValue"] == "champion"
    assert params["retrain__min_improvement"]["defaultValue"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"retrain": {"registered_model": "m", "start_form": "champion"}},
            r"retrain: unknown keys \['start_form'\]",
        ),
        ({"retrain": {"start_from": "champion"}}, "retrain.registered_model is missing"),
        ({"retrain": "champion"}, "field 'retrain' must be a mapping"),
        (
            {"parameters": {"retrain__start_from": "champion"}},
            r"parameters \['retrain__start_from'\] have no effect",
        ),
    ],
)
def test_bad_retrain_sections_are_refused_naming_the_schedule(tmp_path, extra, message):
    with pytest.raises(ScheduleError, match=f"schedule 'nightly': {message}"):
        load_schedules(_write(tmp_path, **extra))


@pytest.mark.parametrize(
    ("retrain", "key"),
    [
        ({"registered_model": "m", "start_from": "chmpion"}, "retrain.start_from"),
        ({"registered_model": "m", "min_improvement": "a lot"}, "retrain.min_improvement"),
    ],
)
def test_bad_retrain_values_are_refused_before_the_server_is_touched(tmp_path, retrain, key):
    clients: dict[str, FakeKfpClient] = {}
    with pytest.raises(ScheduleError, match=f"schedule 'nightly'.*{key}"):
        apply_schedules(
            _write(tmp_path, retrain=retrain),
            "h",
            client_factory=lambda h: clients.setdefault(h, FakeKfpClient(h)),
        )
    assert clients == {}
