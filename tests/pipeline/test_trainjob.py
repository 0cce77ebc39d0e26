"""The multi-node update: the TrainJob object, its wait/failure handling (fake Kubernetes API), S3 staging."""

from __future__ import annotations

import json
import logging
import re

import kubernetes_validate
import pytest
from hypothesis import given
from hypothesis import strategies as st

from care_core.config import load_recipe
from care_core.storage import download_file, exists, upload
from care_core.trainjob import (
    GROUP,
    PLURAL,
    VERSION,
    TrainJobFailed,
    build_trainjob,
    run_update_trainjob,
    trainjob_name,
    wait_for_trainjob,
)

K8S_VERSION = "1.30.0"


def _recipe(**extra: str):
    sets = ["train.distributed.nodes=2", "train.distributed.procs_per_node=8", "kubernetes.gpus={update: 8}"]
    return load_recipe("recipes/tiny-care.yaml", sets + [f"{k}={v}" for k, v in extra.items()])


@given(st.text(min_size=0, max_size=80), st.integers(0, 999))
def test_trainjob_name_is_an_rfc1035_label(run_id, round_index):
    name = trainjob_name(run_id, round_index)
    assert len(name) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    assert name != trainjob_name(run_id + "x", round_index)


def test_trainjob_object_is_valid():
    recipe = _recipe()
    inputs = {
        "recipe": "s3://b/r/recipe.yaml",
        "rollouts": "s3://b/r/rollouts.parquet",
        "model": "s3://b/r/model",
    }
    job = build_trainjob(
        recipe, name="care-update-x-r0", namespace="team-a", inputs=inputs, out_uri="s3://b/r/out"
    )
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["spec"]["runtimeRef"] == {
        "name": "care-deepspeed",
        "apiGroup": GROUP,
        "kind": "ClusterTrainingRuntime",
    }
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 8}}
    assert trainer["image"] == recipe.kubernetes.gpu_image
    args = trainer["args"]
    assert args[:3] == ["python", "-m", "care_core.trainjob"]
    assert dict(zip(args[3::2], args[4::2], strict=True)) == {
        "--out": "s3://b/r/out", "--recipe": inputs["recipe"], "--model": inputs["model"], "--rollouts": inputs["rollouts"],
    }  # fmt: skip
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in trainer["env"] if "valueFrom" in e}
    assert (
        secrets["AWS_SECRET_ACCESS_KEY"] == "care-s3" and secrets["MLFLOW_TRACKING_PASSWORD"] == "care-mlflow"
    )
    # the trainer container, as Kubernetes would build it, is a valid Pod container
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": job["metadata"]["name"],
            "namespace": "team-a",
            "labels": job["metadata"]["labels"],
        },
        "spec": {
            "containers": [
                {
                    "name": "node",
                    "image": trainer["image"],
                    "command": trainer["command"],
                    "args": trainer["args"],
                    "env": trainer["env"],
                    "resources": trainer["resourcesPerNode"],
                }
            ]
        },
    }
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


class FakeCustomObjectsApi:
    """Serves a scripted sequence of TrainJob states; records created objects."""

    def __init__(self, states: list[list[dict]], on_create=None) -> None:
        self.states = states
        self.created: list[dict] = []
        self.gets = 0
        self.on_create = on_create

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == (GROUP, VERSION, PLURAL)
        self.created.append(body)
        if self.on_create:
            self.on_create(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        conditions = self.states[min(self.gets, len(self.states) - 1)]
        self.gets += 1
        return {"metadata": {"name": name}, "status": {"conditions": conditions}}


CREATED = {"type": "Created", "status": "True", "reason": "JobsCreated", "message": "jobs created"}


def test_wait_streams_status_and_returns_on_complete(caplog):
    complete = {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "done"}
    api = FakeCustomObjectsApi([[], [CREATED], [CREATED], [CREATED, complete]])
    sleeps: list[float] = []
    with caplog.at_level(logging.INFO, logger="care_core.trainjob"):
        wait_for_trainjob(api, "j", "ns", poll_s=3, sleep=sleeps.append)
    assert api.gets == 4 and sleeps == [3, 3, 3]
    logged = [r.getMessage() for r in caplog.records]
    assert sum("Created=True" in m for m in logged) == 1 and sum("Complete=True" in m for m in logged) == 1


def test_wait_fails_with_the_jobs_message():
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "JobsFailed",
        "message": "node-0: CUDA out of memory",
    }
    api = FakeCustomObjectsApi([[CREATED], [CREATED, failed]])
    with pytest.raises(TrainJobFailed, match=r"ns/j failed \(JobsFailed\): node-0: CUDA out of memory"):
        wait_for_trainjob(api, "j", "ns", poll_s=0, sleep=lambda s: None)


def test_wait_times_out():
    ticks = iter(range(0, 1000, 10))
    api = FakeCustomObjectsApi([[CREATED]])
    with pytest.raises(TrainJobFailed, match="did not finish within 25s"):
        wait_for_trainjob(
            api, "j", "ns", poll_s=0, timeout_s=25, sleep=lambda s: None, clock=lambda: next(ticks)
        )


def test_run_update_trainjob_stages_inputs_through_s3(s3_env, tmp_path):
    root = f"s3://{s3_env.bucket}/tj"
    recipe = _recipe(**{"storage.artifact_root": root})
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"layers": 2}')
    rollouts = tmp_path / "rollouts.parquet"
    rollouts.write_bytes(b"PAR1 fake")

    def controller(body):  # what the job's rank 0 would do: read inputs, write output + metrics
        args = body["spec"]["trainer"]["args"]
        opts = dict(zip(args[3::2], args[4::2], strict=True))
        got = download_file(opts["--rollouts"], tmp_path / "seen.parquet").read_bytes()
        assert got == b"PAR1 fake" and exists(opts["--model"] + "/config.json")
        out = tmp_path / "job-out"
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "metrics.json").write_text(json.dumps({"update/loss": 0.5}))
        upload(out, opts["--out"])

    done = {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": ""}
    api = FakeCustomObjectsApi([[CREATED], [CREATED, done]], on_create=controller)
    metrics = run_update_trainjob(
        recipe,
        "run-1",
        2,
        str(model),
        str(rollouts),
        str(tmp_path / "updated"),
        api=api,
        namespace="ns",
        poll_s=0,
    )
    assert metrics == {"update/loss": 0.5}
    assert (tmp_path / "updated" / "model.safetensors").read_bytes() == b"weights"
    assert api.created[0]["metadata"]["name"] == trainjob_name("run-1", 2)
    assert exists(f"{root}/run-1/trainjob/round-2/inputs/recipe.yaml")


def test_trainjob_needs_an_s3_artifact_root(tmp_path):
    with pytest.raises(ValueError, match="storage.artifact_root to an s3:// URI"):
        run_update_trainjob(_recipe(), "r", 0, None, str(tmp_path / "x"), str(tmp_path / "o"), api=object())


def test_torch_env_from_mpi(tmp_path):
    from care_core.trainjob import torch_env_from_mpi

    hostfile = tmp_path / "hostfile"
    hostfile.write_text("care-update-x-launcher-0.care slots=8\ncare-update-x-node-0.care slots=8\n")
    env = {"OMPI_COMM_WORLD_RANK": "9", "OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}
    out = torch_env_from_mpi(env, hostfile)
    assert (out["RANK"], out["WORLD_SIZE"], out["LOCAL_RANK"]) == ("9", "16", "1")
    assert out["MASTER_ADDR"] == "care-update-x-launcher-0.care" and out["MASTER_PORT"] == "29500"
    assert torch_env_from_mpi({"RANK": "3", "OMPI_COMM_WORLD_RANK": "9"}, tmp_path / "none")["RANK"] == "3"
