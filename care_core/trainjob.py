"""Multi-node update stage: a Kubeflow Trainer ``TrainJob`` on the DeepSpeed runtime.

With ``train.distributed.nodes > 1`` the update component does not train in its own pod. It uploads
its inputs to the S3 artifact root, creates a ``TrainJob`` (runtime ``care-deepspeed``, see
``manifests/base/trainer``) whose ranks run ``python -m care_core.trainjob`` (download inputs, call
``care_core.stages.update.run_update``, rank 0 uploads the updated model and ``metrics.json``), waits
while logging every status change, and raises ``TrainJobFailed`` with the job's own message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from care_core.config import Recipe, recipe_to_yaml
from care_core.constants import MLFLOW_SECRET_KEYS, S3_SECRET_KEYS
from care_core.errors import CareError
from care_core.storage import download_dir, download_file, is_s3, join, upload

log = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
RUNTIME_NAME = "care-deepspeed"
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class TrainJobFailed(CareError, RuntimeError):
    """The TrainJob ended Failed (message from its condition) or did not finish in time."""

    default_hint = "read the TrainJob's pod logs (kubectl logs) for the failing rank"


def current_namespace() -> str:
    """The pod's namespace (``POD_NAMESPACE`` or the service-account file), else ``kubeflow``."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if _SA_NAMESPACE.is_file():
        return _SA_NAMESPACE.read_text().strip()
    return "kubeflow"


def trainjob_name(kfp_run_id: str, round_index: int) -> str:
    """RFC 1035 label (<= 63 chars) unique per KFP run and round."""
    digest = hashlib.sha256(kfp_run_id.encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9-]+", "-", kfp_run_id.lower()).strip("-")[:30].strip("-")
    return f"care-update-{slug + '-' if slug else ''}{digest}-r{round_index}"[:63].rstrip("-")


def _secret_env(secret: str, keys: tuple[str, ...], optional: bool) -> list[dict[str, Any]]:
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}}
        for key in keys
    ]


def build_trainjob(
    recipe: Recipe,
    *,
    name: str,
    namespace: str,
    inputs: dict[str, str],
    out_uri: str,
) -> dict[str, Any]:
    """The TrainJob object (a dict for ``CustomObjectsApi``) running the update on ``nodes`` nodes.

    ``inputs``: ``recipe``, ``rollouts`` and optionally ``model``, ``reference``, ``state`` -> S3 URIs.
    """
    dist = recipe.train.distributed
    kube = recipe.kubernetes
    gpus = int(kube.gpus.get("update", 0))
    args = ["python", "-m", "care_core.trainjob", "--out", out_uri]
    for key in ("recipe", "model", "rollouts", "reference", "state"):
        if inputs.get(key):
            args += [f"--{key}", inputs[key]]
    launcher = [
        "mpirun",
        "--hostfile",
        "/etc/mpi/hostfile",
        "-x",
        "PATH",
        "-x",
        "PYTHONPATH",
        "--bind-to",
        "none",
    ]
    env = [
        {"name": "CARE_TRAINJOB", "value": name},
        {"name": "CARE_GIT_COMMIT", "value": os.environ.get("CARE_GIT_COMMIT", "unknown")},
        *_secret_env(kube.s3_secret, S3_SECRET_KEYS, optional=False),
        *_secret_env(kube.mlflow_secret, MLFLOW_SECRET_KEYS, optional=True),
    ]
    resources: dict[str, Any] = {"limits": {kube.accelerator_type: gpus}} if gpus else {}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "care-pipelines",
                "care.recipe": re.sub(r"[^A-Za-z0-9_.-]", "-", recipe.name)[:63],
            },
        },
        "spec": {
            "runtimeRef": {"name": RUNTIME_NAME, "apiGroup": GROUP, "kind": "ClusterTrainingRuntime"},
            "trainer": {
                "image": kube.gpu_image if gpus else kube.image,
                "command": launcher,
                "args": args,
                "env": env,
                "numNodes": int(dist.nodes),
                "numProcPerNode": int(dist.procs_per_node or max(gpus, 1)),
                **({"resourcesPerNode": resources} if resources else {}),
            },
        },
    }


def _condition_summary(obj: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return [
        (c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""))
        for c in conditions
    ]


def wait_for_trainjob(
    api: Any,
    name: str,
    namespace: str,
    *,
    poll_s: float = 10.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the TrainJob, logging each new condition; return it when Complete, raise ``TrainJobFailed``."""
    seen: set[tuple[str, str, str, str]] = set()
    start = clock()
    while True:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        for cond in _condition_summary(obj):
            if cond not in seen:
                seen.add(cond)
                log.info("TrainJob %s/%s: %s=%s %s %s", namespace, name, *cond)
        for ctype, status, reason, message in _condition_summary(obj):
            if status != "True":
                continue
            if ctype == "Complete":
                return obj
            if ctype == "Failed":
                raise TrainJobFailed(f"TrainJob {namespace}/{name} failed ({reason}): {message}")
        if timeout_s is not None and clock() - start > timeout_s:
            raise TrainJobFailed(f"TrainJob {namespace}/{name} did not finish within {timeout_s:.0f}s")
        sleep(poll_s)


def make_api() -> Any:
    """``CustomObjectsApi`` from the in-cluster service account (or the local kube config)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def run_update_trainjob(
    recipe: Recipe,
    kfp_run_id: str,
    round_index: int,
    model_path: str | None,
    rollouts_path: str,
    out_dir: str,
    reference_path: str | None = None,
    state_path: str | None = None,
    *,
    api: Any = None,
    namespace: str | None = None,
    poll_s: float = 15.0,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Stage inputs on S3, run the update as a TrainJob, fetch the updated model into ``out_dir``; return metrics."""
    root = recipe.storage.artifact_root
    if not is_s3(root):
        raise ValueError(
            f"train.distributed.nodes={recipe.train.distributed.nodes} runs the update as a TrainJob, whose pods "
            f"share artifacts through S3: set storage.artifact_root to an s3:// URI (got {root!r})"
        )
    api = api or make_api()
    namespace = namespace or current_namespace()
    name = trainjob_name(kfp_run_id, round_index)
    base = join(root, kfp_run_id, "trainjob", f"round-{round_index}")
    retries, mp = recipe.storage.retries, recipe.storage.multipart_threshold_mb
    inputs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        recipe_file = Path(tmp) / "recipe.yaml"
        recipe_file.write_text(recipe_to_yaml(recipe))
        inputs["recipe"] = upload(recipe_file, join(base, "inputs", "recipe.yaml"), retries=retries)
    inputs["rollouts"] = upload(rollouts_path, join(base, "inputs", "rollouts.parquet"), retries=retries)
    for key, path in (("model", model_path), ("reference", reference_path), ("state", state_path)):
        if path:
            inputs[key] = upload(path, join(base, "inputs", key), retries=retries, multipart_threshold_mb=mp)
    out_uri = join(base, "output")
    body = build_trainjob(recipe, name=name, namespace=namespace, inputs=inputs, out_uri=out_uri)
    log.info("creating TrainJob %s/%s (%d nodes)", namespace, name, recipe.train.distributed.nodes)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_for_trainjob(api, name, namespace, poll_s=poll_s, timeout_s=timeout_s)
    download_dir(out_uri, out_dir, retries=retries)
    metrics_file = Path(out_dir) / "metrics.json"
    return json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}


def torch_env_from_mpi(env: dict[str, str], hostfile: Path = Path("/etc/mpi/hostfile")) -> dict[str, str]:
    """RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR for torch.distributed/DeepSpeed from OpenMPI's variables.

    The master is the first host of the MPI hostfile (the launcher node of the Trainer runtime).
    """
    out = dict(env)
    mapping = {
        "RANK": "OMPI_COMM_WORLD_RANK",
        "WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
        "LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_RANK",
        "LOCAL_WORLD_SIZE": "OMPI_COMM_WORLD_LOCAL_SIZE",
    }
    for torch_name, mpi_name in mapping.items():
        if torch_name not in out and mpi_name in out:
            out[torch_name] = out[mpi_name]
    if "MASTER_ADDR" not in out and hostfile.is_file():
        first = next((line.split()[0] for line in hostfile.read_text().splitlines() if line.strip()), None)
        if first:
            out["MASTER_ADDR"] = first
    out.setdefault("MASTER_PORT", "29500")
    return out


def worker_main(argv: list[str] | None = None) -> int:
    """One TrainJob rank: download inputs, run the update, rank 0 uploads the result and metrics.json."""
    from care_core.config import load_recipe
    from care_core.stages.update import run_update

    parser = argparse.ArgumentParser(prog="python -m care_core.trainjob")
    for flag in ("recipe", "rollouts", "out"):
        parser.add_argument(f"--{flag}", required=True)
    for flag in ("model", "reference", "state"):
        parser.add_argument(f"--{flag}", default=None)
    args = parser.parse_args(argv)
    os.environ.update(torch_env_from_mpi(dict(os.environ)))
    rank = int(os.environ.get("RANK", "0"))
    work = Path(tempfile.mkdtemp(prefix=f"care-trainjob-{rank}-"))
    recipe = load_recipe(download_file(args.recipe, work / "recipe.yaml"))
    rollouts = download_file(args.rollouts, work / "rollouts.parquet", retries=recipe.storage.retries)
    local = {
        key: str(download_dir(uri, work / key, retries=recipe.storage.retries)) if uri else None
        for key, uri in (("model", args.model), ("reference", args.reference), ("state", args.state))
    }
    out_dir = work / "output"
    metrics = run_update(recipe, local["model"], rollouts, out_dir, local["reference"], local["state"])
    if rank == 0:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, default=str))
        upload(
            out_dir,
            args.out,
            retries=recipe.storage.retries,
            multipart_threshold_mb=recipe.storage.multipart_threshold_mb,
        )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(worker_main())
