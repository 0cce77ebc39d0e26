"""Issue 17 item 9: credentials in URIs never reach params, logs, files or the compiled IR; run names,
dataset image paths and S3 download keys stay inside their base folders."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care_core.cli import main
from care_core.config import RecipeError, build_recipe, load_recipe
from care_core.errors import SecurityError
from care_core.tracking.redact import RedactingFilter, find_credentials, has_credentials, redact

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
SECRET = "s3cr3t-Pa55"


# --------------------------------------------------------------------------- redaction
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pass@mlflow:5000/api", "http://***@mlflow:5000/api"),
        ("s3://AKIA123:wJalrXUtn+K@bucket/key", "s3://***@bucket/key"),
        ("https://token@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("at sqlite:///.care/mlflow.db and file:///tmp/x", "at sqlite:///.care/mlflow.db and file:///tmp/x"),
        ("uri='http://a:b@h' and 'postgresql://u:p@db/x'", "uri='http://***@h' and 'postgresql://***@db/x'"),
    ],
)
def test_redact_masks_user_info_only(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert not has_credentials(redact(text))


@given(
    user=st.text("abcXYZ019._-", min_size=1, max_size=12),
    password=st.text("abcXYZ019._-!$%", min_size=1, max_size=16),
    host=st.sampled_from(["127.0.0.1:5000", "mlflow.svc", "minio:9000"]),
    scheme=st.sampled_from(["http", "https", "s3"]),
)
def test_redacted_text_never_holds_the_password(user: str, password: str, host: str, scheme: str) -> None:
    uri = f"{scheme}://{user}:{password}@{host}/x"
    out = redact(f"connecting to {uri} now")
    assert f"{user}:{password}@" not in out and out == f"connecting to {scheme}://***@{host}/x now"
    assert has_credentials(uri) and not has_credentials(out)


def test_log_filter_redacts_formatted_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("care.test.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="care.test.redact"):
        logger.info("tracking at %s", f"http://alice:{SECRET}@host:5000")
    assert SECRET not in caplog.text and "http://***@host:5000" in caplog.text


def test_mlflow_params_log_and_tracking_file_hold_no_password(
    mlflow_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real ``mlflow server``; the tracking URI carries user:password (sent as basic auth, ignored there)."""
    from mlflow.tracking import MlflowClient

    from care_core.stages.train import TRACKING_FILE, _Tracking

    with_password = mlflow_server.replace("http://", f"http://alice:{SECRET}@")
    recipe = build_recipe({"tracking": {"uri": with_password, "experiment": "redaction"}})
    with caplog.at_level(logging.INFO):
        tracking = _Tracking(recipe, tmp_path)
        tracking.end("FINISHED")
    params = MlflowClient(mlflow_server).get_run(tracking.tracker.run_id).data.params
    assert params["tracking.uri"] == mlflow_server.replace("http://", "http://***@")
    assert not any(SECRET in v for v in params.values())
    assert SECRET not in caplog.text and "***@" in caplog.text  # the "MLflow run ... at <uri>" INFO line
    stored = (tmp_path / TRACKING_FILE).read_text()
    assert SECRET not in stored and json.loads(stored)["uri"].startswith("http://***@")


def test_compile_refuses_credentials_and_writes_no_ir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pipeline.yaml"
    code = main(
        [
            "compile",
            "-c",
            str(RECIPES / "tiny-care.yaml"),
            "--set",
            f"tracking.uri=http://alice:{SECRET}@mlflow:5000",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert err.splitlines()[0].startswith("error: a URI with credentials") and "tracking.uri" in err
    assert "Secret" in err and SECRET not in err


def test_compiled_ir_of_a_clean_recipe_has_no_credentials(tmp_path: Path) -> None:
    pytest.importorskip("kfp")
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", "-c", str(RECIPES / "tiny-care.yaml"), "-o", str(out)]) == 0
    assert not has_credentials(out.read_text())
    assert find_credentials({"a": "sqlite:///x", "b": ["s3://k:s@b"]}) == ["b"]


# --------------------------------------------------------------------------- containment
@pytest.mark.parametrize("name", ["../../X", "a/b", "..", ".hidden", "/abs", "a\\b", ""])
def test_run_name_that_leaves_output_dir_is_refused_at_load(name: str) -> None:
    with pytest.raises(RecipeError, match="tracking.run_name") as info:
        load_recipe(
            RECIPES / "tiny-care.yaml", [f"tracking.run_name={name!s}"] if name else ["tracking.run_name=' '"]
        )
    assert str(RECIPES / "tiny-care.yaml") in str(info.value)


def test_run_dir_is_contained_even_for_an_unvalidated_recipe(tmp_path: Path) -> None:
    from care_core.stages.train import run_dir_for

    recipe = build_recipe({"train": {"output_dir": str(tmp_path / "runs")}})
    assert run_dir_for(recipe) == tmp_path / "runs" / "care"
    escaped = dataclasses.replace(recipe, tracking=dataclasses.replace(recipe.tracking, run_name="../../X"))
    with pytest.raises(SecurityError, match="leaves its base folder"):
        run_dir_for(escaped)
    assert not (tmp_path.parent / "X").exists()


def _vision_r1_dataset(tmp_path: Path, image_ref: str) -> tuple[Path, Path]:
    """A Vision-R1-cold folder whose first row points at ``image_ref``; returns (dataset, image root)."""
    root = tmp_path / "images"
    (root / "coco").mkdir(parents=True)
    png = (SOURCES / "vision_r1_cold_images" / "coco" / "0001.png").read_bytes()
    (root / "coco" / "0001.png").write_bytes(png)
    secret = tmp_path / "secretdir"
    secret.mkdir()
    (secret / "x.png").write_bytes(png)  # a real, decodable image outside the dataset: must not be read
    rows = json.loads((SOURCES / "vision_r1_cold" / "vision_r1_llava_cot_full.json").read_text())[:1]
    rows[0]["image"] = image_ref
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "vision_r1_llava_cot_full.json").write_text(json.dumps(rows))
    return data, root


@pytest.mark.parametrize("ref", ["../secretdir/x.png", "coco/../../secretdir/x.png", "ABSOLUTE"])
def test_dataset_image_path_outside_the_dataset_is_a_bad_row(tmp_path: Path, ref: str) -> None:
    from care_core.schema import SchemaError
    from care_core.stages.ingest import run_ingest

    ref = str(tmp_path / "secretdir" / "x.png") if ref == "ABSOLUTE" else ref
    data, root = _vision_r1_dataset(tmp_path, ref)
    source = {"name": "vision_r1_cold", "path": str(data), "image_root": str(root), "role": "sft"}
    with pytest.raises(SchemaError, match="leaves the dataset folder") as info:
        run_ingest(build_recipe({"data": {"sources": [source]}}), tmp_path / "out")
    assert "images[0]" in str(info.value)
    manifest = run_ingest(build_recipe({"data": {"bad_rows": "skip", "sources": [source]}}), tmp_path / "out")
    assert manifest["counts"]["sft"] == 0 and "leaves the dataset folder" in manifest["rejected"][0]["reason"]


def test_dataset_image_path_inside_the_dataset_still_loads(tmp_path: Path) -> None:
    from care_core.stages.ingest import run_ingest

    data, root = _vision_r1_dataset(tmp_path, "coco/../coco/0001.png")
    source = {"name": "vision_r1_cold", "path": str(data), "image_root": str(root), "role": "sft"}
    assert run_ingest(build_recipe({"data": {"sources": [source]}}), tmp_path / "out")["counts"]["sft"] == 1


@pytest.mark.parametrize(
    "key", ["a/../../../escaped.txt", "../escaped.txt", "/etc/escaped.txt", "a/../../b/x"]
)
def test_s3_key_that_leaves_download_dir_is_refused(tmp_path: Path, key: str) -> None:
    """AWS S3 accepts keys with '..' segments (SeaweedFS and MinIO refuse to store them, so the listing is given)."""
    from care_core.storage.transfer import local_targets

    keys = ["s3://care/run/ok.txt", f"s3://care/run/{key}"]
    with pytest.raises(SecurityError, match=r"S3 key s3://care/run/.* leaves its base folder"):
        local_targets("s3://care/run", keys, tmp_path / "dl")
    assert local_targets("s3://care/run/", keys[:1], tmp_path / "dl") == [
        (keys[0], tmp_path / "dl" / "ok.txt")
    ]


def test_s3_download_dir_keeps_odd_but_safe_keys_inside(s3_env, tmp_path: Path) -> None:
    """A real SeaweedFS server: odd key names ('...', an encoded '%2F') land inside the download folder."""
    from care_core.storage import download_dir

    client = s3_env.client()
    for key in (
        "reliability-keys/run/ok.txt",
        "reliability-keys/run/.../x.txt",
        "reliability-keys/run/..%2Fescaped.txt",
    ):
        client.put_object(Bucket=s3_env.bucket, Key=key, Body=b"data")
    dest = tmp_path / "dl"
    download_dir(f"s3://{s3_env.bucket}/reliability-keys/run", dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "..%2Fescaped.txt",
        ".../x.txt",
        "ok.txt",
    ]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and dest not in p.parents] == []


def test_care_run_refuses_credentials_before_kfp_local_writes_anything(tmp_path: Path) -> None:
    pytest.importorskip("kfp")
    from pipelines.local_run import run_local

    recipe = load_recipe(RECIPES / "tiny-care.yaml", [f"tracking.uri=http://alice:{SECRET}@mlflow:5000"])
    with pytest.raises(SecurityError, match="credentials") as info:
        run_local(recipe, work_dir=tmp_path / "work")
    assert info.value.where == "recipe key tracking.uri" and not (tmp_path / "work").exists()


def test_log_redaction_covers_loggers_with_their_own_handlers() -> None:
    """``care`` installs redaction for every record the process creates (mlflow's logger does not propagate)."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from care_core.tracking.redact import install_log_redaction\n"
        "install_log_redaction(); install_log_redaction()\n"
        "own = logging.getLogger('mlflow.like'); own.propagate = False\n"
        "own.addHandler(logging.StreamHandler(sys.stderr)); own.setLevel(logging.INFO)\n"
        f"own.info('run at %s', 'http://alice:{SECRET}@mlflow:5000/#/runs/1')\n"
        "own.info('%d%%', 5)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stderr.splitlines() == ["run at http://***@mlflow:5000/#/runs/1", "5%"]
