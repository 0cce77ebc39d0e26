"""care_core.storage against a real SeaweedFS S3 server (credentials enforced) and local paths."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care_core import storage
from care_core.storage import ChecksumMismatch, StorageError, is_s3, join, parse_s3
from care_core.storage.s3 import CHECKSUM_KEY, list_keys


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- URIs
def test_parse_and_join():
    loc = parse_s3("s3://bucket/a/b/")
    assert (loc.bucket, loc.key, loc.uri) == ("bucket", "a/b", "s3://bucket/a/b")
    assert join("s3://b/root/", "/run1/", "sft") == "s3://b/root/run1/sft"
    assert join(".care/artifacts", "run1", "", "x.parquet") == ".care/artifacts/run1/x.parquet"
    assert is_s3("s3://x") and not is_s3("/tmp/s3:") and not is_s3(None)
    with pytest.raises(ValueError, match="without a bucket"):
        parse_s3("s3:///key")


@given(st.lists(st.text(alphabet="abcxyz09_-.", min_size=1, max_size=8), min_size=1, max_size=5))
def test_join_parse_roundtrip(parts):
    uri = join("s3://bkt", *parts)
    assert parse_s3(uri).bucket == "bkt"
    assert parse_s3(uri).key == "/".join(parts)


# --------------------------------------------------------------------------- S3 round trips
def test_file_roundtrip_records_and_verifies_sha256(s3_env, tmp_path):
    data = os.urandom(200_000)
    src = _write(tmp_path / "in.bin", data)
    uri = f"s3://{s3_env.bucket}/t/roundtrip/in.bin"
    assert storage.upload_file(src, uri) == uri
    head = s3_env.client().head_object(Bucket=s3_env.bucket, Key="t/roundtrip/in.bin")
    assert head["Metadata"][CHECKSUM_KEY] == hashlib.sha256(data).hexdigest()
    out = storage.download_file(uri, tmp_path / "out" / "x.bin")
    assert out.read_bytes() == data


def test_large_file_uses_multipart(s3_env, tmp_path):
    data = os.urandom(11 * 2**20 + 123)  # > 2 parts of 5 MiB
    src = _write(tmp_path / "big.bin", data)
    uri = f"s3://{s3_env.bucket}/t/multipart/big.bin"
    storage.upload_file(src, uri, multipart_threshold_mb=5)
    etag = s3_env.client().head_object(Bucket=s3_env.bucket, Key="t/multipart/big.bin")["ETag"].strip('"')
    assert etag.endswith("-3"), etag  # S3 multipart ETags are "<md5 of md5s>-<parts>"
    assert storage.download_file(uri, tmp_path / "big.out").read_bytes() == data


def test_corrupted_object_is_detected(s3_env, tmp_path):
    src = _write(tmp_path / "a.txt", b"original bytes")
    uri = f"s3://{s3_env.bucket}/t/corrupt/a.txt"
    storage.upload_file(src, uri)
    # overwrite the bytes but keep the checksum recorded for the original
    good = hashlib.sha256(b"original bytes").hexdigest()
    s3_env.client().put_object(
        Bucket=s3_env.bucket, Key="t/corrupt/a.txt", Body=b"tampered", Metadata={CHECKSUM_KEY: good}
    )
    with pytest.raises(StorageError, match="sha256") as info:
        storage.download_file(uri, tmp_path / "a.out", retries=1)
    assert isinstance(info.value.__cause__, ChecksumMismatch)
    assert uri in str(info.value)


def test_foreign_single_part_object_checked_by_etag(s3_env, tmp_path):
    s3_env.client().put_object(Bucket=s3_env.bucket, Key="t/foreign/x", Body=b"hello")
    out = storage.download_file(f"s3://{s3_env.bucket}/t/foreign/x", tmp_path / "x")
    assert out.read_bytes() == b"hello"


def test_dir_roundtrip(s3_env, tmp_path):
    files = {"config.json": b"{}", "model.safetensors": os.urandom(5000), "sub/dir/tok.txt": b"abc"}
    for rel, data in files.items():
        _write(tmp_path / "model" / rel, data)
    uri = f"s3://{s3_env.bucket}/t/dir/model"
    storage.upload_dir(tmp_path / "model", uri)
    keys = list_keys(uri)
    assert keys == sorted(f"{uri}/{rel}" for rel in files)
    storage.download_dir(uri, tmp_path / "back")
    for rel, data in files.items():
        assert (tmp_path / "back" / rel).read_bytes() == data
    assert storage.exists(uri) and storage.exists(f"{uri}/config.json")
    assert not storage.exists(f"s3://{s3_env.bucket}/t/dir/nothing-here")


def test_missing_prefix_and_object_fail_fast(s3_env, tmp_path):
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"s3://care/t/absent/obj"):
        storage.download_file(f"s3://{s3_env.bucket}/t/absent/obj", tmp_path / "o", retries=5)
    with pytest.raises(StorageError, match="no objects under this prefix"):
        storage.download_dir(f"s3://{s3_env.bucket}/t/absent", tmp_path / "d")
    assert time.monotonic() - start < 5  # 404 is not retried


def test_wrong_secret_is_rejected_without_retrying(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    src = _write(tmp_path / "a.txt", b"x")
    uri = f"s3://{s3_env.bucket}/t/denied/a.txt"
    with pytest.raises(StorageError, match=uri) as info:
        storage.upload_file(src, uri, retries=5)
    assert "attempts" not in str(info.value)


def test_unreachable_endpoint_retries_with_backoff_then_names_uri(tmp_path, monkeypatch, caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("CARE_STORAGE_BACKOFF_S", "0.1")
    src = _write(tmp_path / "a.txt", b"x")
    uri = "s3://care/t/down/a.txt"
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="care_core.storage.s3"):
        with pytest.raises(StorageError, match=r"upload to s3://care/t/down/a.txt failed after 4 attempts"):
            storage.upload_file(src, uri, retries=3)
    elapsed = time.monotonic() - start
    assert len([r for r in caplog.records if "retrying" in r.message]) == 3
    assert elapsed >= 0.1 + 0.2 + 0.4  # exponential backoff actually waited


# --------------------------------------------------------------------------- local paths
def test_local_paths_copy(tmp_path):
    src = _write(tmp_path / "m" / "w.bin", b"123")
    _write(tmp_path / "m" / "sub" / "c.json", b"{}")
    dest = tmp_path / "store" / "run" / "model"
    storage.upload(tmp_path / "m", str(dest))
    assert (dest / "w.bin").read_bytes() == b"123" and (dest / "sub" / "c.json").exists()
    back = storage.download_dir(str(dest), tmp_path / "back")
    assert (back / "sub" / "c.json").read_bytes() == b"{}"
    assert storage.download_file(str(dest / "w.bin"), tmp_path / "f").read_bytes() == src.read_bytes()
    with pytest.raises(FileNotFoundError, match="artifact not found"):
        storage.download_file(str(tmp_path / "nope"), tmp_path / "g")
