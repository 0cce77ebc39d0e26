"""Kustomize manifests: build every target, validate each object offline, and cross-check names/keys."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from care_core.constants import MLFLOW_SECRET_KEYS, S3_SECRET_KEYS
from care_core.trainjob import RUNTIME_NAME

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
TARGETS = ["base", "overlays/in-cluster-s3", "overlays/external-s3"]
K8S_VERSION = "1.30.0"
CRD_KINDS = {"ClusterTrainingRuntime"}


def _kustomize(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with built-in kustomize) not installed; the fallback loader covers base files")
    out = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / target)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"kubectl kustomize {target} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _raw_resources(folder: Path) -> Iterator[dict[str, Any]]:
    """Every object listed (recursively) in a kustomization, without patches (works without kubectl)."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for entry in kust.get("resources", []):
        path = folder / entry
        if path.is_dir():
            yield from _raw_resources(path)
        else:
            yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


@pytest.fixture(scope="module", params=TARGETS)
def built(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, _kustomize(request.param)


def _index(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_object_validates(built):
    target, docs = built
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "ClusterTrainingRuntime"} <= kinds, target
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "care", (target, doc["kind"], doc["metadata"]["name"])
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "care-pipelines"


def test_raw_base_files_validate_without_kubectl():
    docs = list(_raw_resources(MANIFESTS / "base")) + list(_raw_resources(MANIFESTS / "s3" / "seaweedfs"))
    assert len(docs) >= 8
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deepspeed_runtime(built):
    _, docs = built
    runtime = _index(docs)[("ClusterTrainingRuntime", RUNTIME_NAME)]
    assert runtime["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert runtime["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "deepspeed"
    assert runtime["spec"]["mlPolicy"]["mpi"]["mpiImplementation"] == "OpenMPI"
    jobs = {j["name"]: j for j in runtime["spec"]["template"]["spec"]["replicatedJobs"]}
    assert set(jobs) == {"node", "launcher"}
    launcher_labels = jobs["launcher"]["template"]["metadata"]["labels"]
    assert launcher_labels["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    for job in jobs.values():  # the embedded pod templates are valid Pods
        pod_spec = job["template"]["spec"]["template"]["spec"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": job["name"]}, "spec": pod_spec}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        assert pod_spec["containers"][0]["image"].startswith("ghcr.io/care-pipelines/care-gpu:")


def test_mlflow_server_uses_postgres_and_proxies_s3(built):
    _, docs = built
    idx = _index(docs)
    container = idx[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(container["args"])
    assert "--serve-artifacts" in args and "--artifacts-destination" in args and "--allowed-hosts" in args
    host = re.search(r"postgresql://[^@]+@([a-z0-9-]+):5432/mlflow", args).group(1)
    assert ("Service", host) in idx and ("StatefulSet", host) in idx
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "care-s3",
        "key": "AWS_ENDPOINT_URL_S3",
    }
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    mlflow_pin = next(p.split("==")[1] for p in pins if p.startswith("mlflow=="))
    assert container["image"].endswith(f":{mlflow_pin}")
    service = idx[("Service", "mlflow")]
    assert service["spec"]["ports"][0]["port"] == 5000


def test_kfp_launcher_pipeline_root_and_provider(built):
    target, docs = built
    idx = _index(docs)
    data = idx[("ConfigMap", "kfp-launcher")]["data"]
    assert data["defaultPipelineRoot"].startswith("s3://")
    provider = yaml.safe_load(data["providers"])["s3"]["default"]
    assert provider["forcePathStyle"] is True
    assert provider["credentials"]["secretRef"]["secretName"] == "care-s3"
    if target == "overlays/in-cluster-s3":
        host, port = provider["endpoint"].split(":")
        service = idx[("Service", host.split(".")[0])]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]} and provider["disableSSL"] is True
        assert ("StatefulSet", "seaweedfs") in idx and ("Job", "seaweedfs-create-bucket") in idx
    else:
        assert ("StatefulSet", "seaweedfs") not in idx
    if target == "overlays/external-s3":
        assert data["defaultPipelineRoot"] == "s3://my-care-bucket/kfp"
        mlflow_env = idx[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]["env"]
        assert mlflow_env[0] == {
            "name": "MLFLOW_ARTIFACTS_DESTINATION",
            "value": "s3://my-care-bucket/mlflow",
        }


def _secret_refs(obj: Any) -> Iterator[tuple[str, str | None]]:
    if isinstance(obj, dict):
        if "secretKeyRef" in obj:
            yield obj["secretKeyRef"]["name"], obj["secretKeyRef"]["key"]
        if "secret" in obj and isinstance(obj["secret"], dict) and "secretName" in obj["secret"]:
            yield obj["secret"]["secretName"], None
        if "secretRef" in obj and "secretName" in obj["secretRef"]:
            ref = obj["secretRef"]
            yield ref["secretName"], ref.get("accessKeyKey")
            yield ref["secretName"], ref.get("secretKeyKey")
        for value in obj.values():
            yield from _secret_refs(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _secret_refs(value)


def _templates() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((MANIFESTS / "secrets").glob("*.template.yaml")):
        doc = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        out[doc["metadata"]["name"]] = doc
    return out


def test_secret_templates_cover_every_reference_and_hold_no_secrets(built):
    _, docs = built
    templates = _templates()
    refs = set(_secret_refs(docs))
    for key in (*S3_SECRET_KEYS,):
        refs.add(("care-s3", key))
    for key in MLFLOW_SECRET_KEYS:
        refs.add(("care-mlflow", key))
    for doc in docs:
        for provider in [yaml.safe_load(doc["data"]["providers"])] if doc["kind"] == "ConfigMap" else []:
            refs |= set(_secret_refs(provider))
    for name, key in refs:
        assert name in templates, f"no template for Secret {name}"
        if key is not None:
            assert key in templates[name]["stringData"], f"template {name} lacks key {key}"
    for name, doc in templates.items():
        for key, value in doc["stringData"].items():
            placeholders = re.findall(r"<[^<>]+>", value)
            assert placeholders, f"{name}.{key} must be a <placeholder>"
    assert not any(d["kind"] == "Secret" for d in docs), "kustomize targets must not ship Secrets"
