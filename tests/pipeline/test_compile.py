"""Compile the pipeline, parse the IR into the pipeline-spec protos, reload it with kfp, check platform settings."""

from __future__ import annotations

import logging

import pytest
import yaml
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2

from care_core.config import RecipeError, build_recipe, flatten, load_recipe, recipe_hash, recipe_to_dict
from care_core.constants import STAGES
from pipelines.care_pipeline import build_pipeline
from pipelines.compile import compile_pipeline
from pipelines.params import merge_parameters, param_name, pipeline_params

ALL = list(STAGES)


@pytest.fixture(scope="module")
def cluster_recipe():
    return load_recipe(
        "recipes/tiny-care.yaml",
        [
            "train.rounds=2",
            "kubernetes.gpus={sft: 1, rollout: 2, update: 4, evaluate: 1}",
            "kubernetes.node_selector={pool: a100}",
            "kubernetes.tolerations=[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]",
            "kubernetes.accelerator_type=nvidia.com/gpu",
        ],
    )


@pytest.fixture(scope="module")
def compiled(cluster_recipe, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", "leaky-secret-value-42")
    monkeypatch_module.setenv("MLFLOW_TRACKING_PASSWORD", "leaky-mlflow-password-42")
    path = compile_pipeline(cluster_recipe, tmp_path_factory.mktemp("ir") / "pipeline.yaml", stages=ALL)
    text = path.read_text()
    docs = list(yaml.safe_load_all(text))
    return path, text, docs[0], docs[1]


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _executor(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def test_ir_parses_into_protos_and_reloads(compiled, cluster_recipe):
    path, _, spec, platform = compiled
    proto = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert proto.pipeline_info.name == "care-tiny-care"
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    reloaded = components.load_component_from_file(str(path))
    assert reloaded.name == "care-tiny-care"
    names = set(reloaded.component_spec.inputs)
    assert names == {p.name for p in pipeline_params(cluster_recipe)}


def test_rounds_unrolled_and_wired(compiled):
    _, _, spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    names = sorted(t["taskInfo"]["name"] for t in tasks.values())
    assert names == sorted(
        ["resolve recipe", "ingest", "sft", "evaluate", "createpvc", "delete workspace"]
        + [f"round {r}: {s}" for r in range(2) for s in ("rollout", "advantage", "update")]
    )
    by_name = {t["taskInfo"]["name"]: key for key, t in tasks.items()}

    def source(task_name: str, input_name: str) -> tuple[str, str]:
        ref = tasks[by_name[task_name]]["inputs"]["artifacts"][input_name]["taskOutputArtifact"]
        return tasks[ref["producerTask"]]["taskInfo"]["name"], ref["outputArtifactKey"]

    assert source("round 0: rollout", "model") == ("sft", "model")
    assert source("round 0: advantage", "rollouts") == ("round 0: rollout", "rollouts")
    assert source("round 0: update", "rollouts") == ("round 0: advantage", "scored")
    assert source("round 0: update", "reference") == ("sft", "model")
    assert "state" not in tasks[by_name["round 0: update"]]["inputs"]["artifacts"]
    assert source("round 1: rollout", "model") == ("round 0: update", "updated")
    assert source("round 1: update", "model") == ("round 0: update", "updated")
    assert source("round 1: update", "state") == ("round 0: update", "updated")
    assert source("round 1: update", "reference") == ("sft", "model")
    assert source("evaluate", "model") == ("round 1: update", "updated")
    assert source("evaluate", "data") == ("ingest", "data")
    rounds = [tasks[by_name[f"round {r}: rollout"]]["inputs"]["parameters"]["round_index"] for r in range(2)]
    assert [r["runtimeValue"]["constant"] for r in rounds] == [0, 1]
    run_id = tasks[by_name["ingest"]]["inputs"]["parameters"]["kfp_run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"


def test_parameters_are_the_recipe_with_defaults(compiled, cluster_recipe):
    _, _, spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    flat = flatten(recipe_to_dict(cluster_recipe))
    assert params["algorithm__care__K"] == {
        "defaultValue": 4.0,
        "parameterType": "NUMBER_INTEGER",
        "isOptional": True,
    }
    assert params["optim__lr"]["defaultValue"] == pytest.approx(5e-5)
    assert (params["algorithm__name"]["defaultValue"], params["algorithm__name"]["parameterType"]) == (
        "care",
        "STRING",
    )
    assert params["algorithm__care__rescue__enable"]["parameterType"] == "BOOLEAN"
    assert params["data__synthetic__families"]["defaultValue"] == flat["data.synthetic.families"]
    assert params["algorithm__care__s_refl"]["defaultValue"] == "null"
    assert "train__rounds" not in params and not any(p.startswith("kubernetes__") for p in params)
    # every run-time recipe key is a parameter
    expected = {
        param_name(k)
        for k in flat
        if k not in ("train.rounds", "train.sft.enable", "train.eval_every")
        and not k.startswith("kubernetes.")
    }
    assert set(params) == expected


def test_platform_settings(compiled):
    _, text, spec, platform = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = spec["root"]["dag"]["tasks"]
    containers = spec["deploymentSpec"]["executors"]
    by_name = {t["taskInfo"]["name"]: t for t in tasks.values()}
    expected_gpus = {"sft": "1", "round 0: rollout": "2", "round 1: update": "4", "evaluate": "1"}
    for name, gpus in expected_gpus.items():
        res = containers[_executor(spec, by_name[name])]["container"]["resources"]["accelerator"]
        assert (res["resourceType"], res["resourceCount"]) == ("nvidia.com/gpu", gpus)
        assert (
            containers[_executor(spec, by_name[name])]["container"]["image"]
            == "ghcr.io/care-pipelines/care-gpu:0.1.0"
        )
    for name in ("ingest", "round 0: advantage"):
        container = containers[_executor(spec, by_name[name])]["container"]
        assert "accelerator" not in container.get("resources", {})
        assert container["image"] == "ghcr.io/care-pipelines/care:0.1.0"
    for name, task in by_name.items():
        if name in ("createpvc", "delete workspace", "resolve recipe"):
            continue
        cfg = executors[_executor(spec, task)]
        secrets = {s["secretName"]: {e["envVar"] for e in s["keyToEnv"]} for s in cfg["secretAsEnv"]}
        assert secrets["care-s3"] == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"}
        assert secrets["care-mlflow"] == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
        assert cfg["nodeSelector"]["labels"] == {"pool": "a100"}
        assert cfg["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert cfg["pvcMount"][0]["mountPath"] == "/workspace"
        assert task["retryPolicy"]["maxRetryCount"] == 2
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        assert cached == (name in ("ingest", "sft", "evaluate")), name
    assert _executor(spec, by_name["resolve recipe"]) not in executors  # pure CPU step, needs no secrets
    assert "leaky-secret-value-42" not in text and "leaky-mlflow-password-42" not in text


def test_existing_workspace_pvc_and_no_gpus(tmp_path):
    recipe = load_recipe("recipes/tiny-grpo.yaml", ["kubernetes.workspace_pvc=care-ws", "train.rounds=1"])
    spec, platform = yaml.safe_load_all(compile_pipeline(recipe, tmp_path / "p.yaml", stages=ALL).read_text())
    names = {t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()}
    assert "createpvc" not in names and "delete workspace" not in names
    for cfg in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        assert cfg["pvcMount"][0]["constant"] == "care-ws"
    assert "accelerator" not in yaml.safe_dump(spec["deploymentSpec"])


def test_missing_stages_are_left_out(caplog):
    recipe = load_recipe("recipes/tiny-care.yaml")
    with caplog.at_level(logging.WARNING):
        pipeline = build_pipeline(recipe, ["ingest", "rollout", "evaluate"], platform=False)
    tasks = pipeline.pipeline_spec.root.dag.tasks
    assert sorted(t.task_info.name for t in tasks.values()) == ["evaluate", "ingest", "resolve recipe"]
    assert "advantage" in caplog.text and "update" in caplog.text
    assert "model" not in tasks["evaluate"].inputs.artifacts  # no sft, no rounds: the recipe's base model
    with pytest.raises(ValueError, match="ingest"):
        build_pipeline(recipe, ["evaluate"])


def test_a_stage_that_fails_to_import_fails_the_compile(tmp_path, monkeypatch):
    """A broken stages/update.py used to compile into a pipeline with zero rounds; now the compile stops."""
    import sys

    import care_core.stages

    (tmp_path / "update.py").write_text("def run_update(:\n")  # a syntax error, as in a half-edited file
    (tmp_path / "evaluate.py").write_text("X = 1\n")  # imports, but has no run_evaluate
    monkeypatch.setattr(care_core.stages, "__path__", [str(tmp_path), *care_core.stages.__path__])
    for stage in ("update", "evaluate"):  # the real modules come back after the test
        monkeypatch.delitem(sys.modules, f"care_core.stages.{stage}", raising=False)
        if hasattr(care_core.stages, stage):
            monkeypatch.setattr(care_core.stages, stage, getattr(care_core.stages, stage))
    recipe = load_recipe("recipes/tiny-care.yaml")
    with pytest.raises(
        ImportError, match=r"stage 'update': care_core.stages.update failed to import: SyntaxError"
    ):
        build_pipeline(recipe, platform=False)
    with pytest.raises(ImportError, match="care_core.stages.evaluate has no function run_evaluate"):
        build_pipeline(recipe, ["ingest", "evaluate"], platform=False)


def test_merge_parameters_applies_values_and_validates():
    recipe = load_recipe("recipes/tiny-care.yaml")
    base = yaml.safe_dump(recipe_to_dict(recipe))
    out = build_recipe(
        yaml.safe_load(
            merge_parameters(
                base,
                {
                    "algorithm__name": "grpo",
                    "algorithm__care__K": 2.0,  # JSON numbers arrive as floats
                    "algorithm__care__s_refl": "0.125",
                    "data__synthetic__difficulty": [1.0, 2.0],
                    "recipe_name": "renamed",
                },
            )
        )
    )
    assert (out.algorithm.name, out.algorithm.care.K, out.algorithm.care.s_refl) == ("grpo", 2, 0.125)
    assert out.data.synthetic.difficulty == [1, 2] and out.name == "renamed"
    assert out.train.rounds == recipe.train.rounds
    with pytest.raises(RecipeError, match="algorithm.name"):
        merge_parameters(base, {"algorithm__name": "ppo"})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_defaults_round_trip_to_the_same_recipe(data):
    recipe = load_recipe("recipes/tiny-care.yaml")
    params = pipeline_params(recipe)
    chosen = data.draw(st.lists(st.sampled_from(params), unique_by=lambda p: p.name, max_size=20))
    values = {p.name: p.default for p in chosen}
    merged = build_recipe(yaml.safe_load(merge_parameters(yaml.safe_dump(recipe_to_dict(recipe)), values)))
    assert recipe_hash(merged) == recipe_hash(recipe)


def test_paper_scale_recipe_compiles(tmp_path):
    """The 7B CARE recipe: 60 unrolled rounds, 8 GPUs per GPU step, H100 node selector, existing PVC."""
    recipe = load_recipe("recipes/qwen2_5_vl_7b-care.yaml")
    path = compile_pipeline(recipe, tmp_path / "p.yaml", stages=ALL)
    spec, platform = yaml.safe_load_all(path.read_text())
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    tasks = spec["root"]["dag"]["tasks"]
    assert len(tasks) == 1 + 1 + 1 + 3 * recipe.train.rounds + 1
    gpu_counts = [
        spec["deploymentSpec"]["executors"][_executor(spec, t)]["container"]
        .get("resources", {})
        .get("accelerator", {})
        .get("resourceCount")
        for t in tasks.values()
    ]
    assert gpu_counts.count("8") == 1 + 2 * recipe.train.rounds + 1  # sft, rollout+update per round, evaluate
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(
        cfg["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        for cfg in executors.values()
    )
    assert all(cfg["pvcMount"][0]["constant"] == "care-workspace" for cfg in executors.values())
