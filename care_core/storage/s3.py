"""S3 transfers with boto3: endpoint and credentials from the environment, multipart, retries, checksums.

Environment (the standard AWS names): ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (custom endpoint,
e.g. SeaweedFS/MinIO), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_DEFAULT_REGION`` / ``AWS_REGION``; ``CARE_S3_ADDRESSING_STYLE`` (``path`` by default when a custom
endpoint is set, else ``auto``).

Every uploaded object carries its SHA-256 in the user metadata ``sha256``; downloads recompute it and
a mismatch is retried, then raised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from care_core.errors import CareError
from care_core.storage.uri import parse_s3

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKSUM_KEY = "sha256"
_RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}


class StorageError(CareError, RuntimeError):
    """An artifact transfer that failed for good (after retries); the message names the URI."""

    default_hint = (
        "check the S3 endpoint and credentials in the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY) and that the bucket exists"
    )


class ChecksumMismatch(StorageError):
    """The downloaded bytes do not match the checksum recorded at upload."""


def sha256_file(path: str | Path, chunk_mb: int = 8) -> str:
    """Hex SHA-256 of a file, read in ``chunk_mb`` MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_mb << 20):
            digest.update(chunk)
    return digest.hexdigest()


def endpoint_url() -> str | None:
    """The custom S3 endpoint from the environment, or None for AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_client(connect_timeout_s: float = 5.0, read_timeout_s: float = 120.0) -> Any:
    """A boto3 S3 client configured from the environment (s3v4 signatures, path-style on custom endpoints).

    botocore's own retries are turned off: ``with_retries`` owns retrying so the total wait is bounded
    and the final error names the URI.
    """
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url()
    style = os.environ.get("CARE_S3_ADDRESSING_STYLE") or ("path" if endpoint else "auto")
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": style},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session()  # fresh: credentials are read from the environment now, not cached
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def is_retryable(exc: BaseException) -> bool:
    """Connection problems, timeouts, throttling, 5xx and checksum mismatches are worth retrying."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(
        exc, ChecksumMismatch | BotoConnectionError | HTTPClientError | ConnectionError | TimeoutError
    ):
        return True
    if isinstance(exc, S3UploadFailedError):
        text = str(exc)
        return not any(
            code in text
            for code in ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch")
        )
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code", "")
        return status in _RETRYABLE_HTTP or code in {
            "SlowDown",
            "RequestTimeout",
            "InternalError",
            "ServiceUnavailable",
        }
    return False


def backoff_base_s() -> float:
    """First retry delay in seconds (doubles each attempt); ``CARE_STORAGE_BACKOFF_S`` overrides 1.0."""
    return float(os.environ.get("CARE_STORAGE_BACKOFF_S", "1.0"))


def with_retries(
    action: Callable[[], T], what: str, uri: str, retries: int, backoff_s: float | None = None
) -> T:
    """Run ``action``; retry transient failures ``retries`` times with exponential backoff.

    Raises ``StorageError`` naming ``what`` and ``uri`` once retries are exhausted or on a
    non-transient failure (missing bucket, denied access, missing object).
    """
    base = backoff_base_s() if backoff_s is None else backoff_s
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001  (classified below)
            if not is_retryable(exc):
                raise StorageError(f"{what} {uri} failed: {type(exc).__name__}: {exc}") from exc
            if attempt == attempts:
                raise StorageError(
                    f"{what} {uri} failed after {attempts} attempts (endpoint {endpoint_url() or 'AWS'}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            delay = base * 2 ** (attempt - 1)
            log.warning(
                "%s %s: attempt %d/%d failed (%s); retrying in %.1fs",
                what,
                uri,
                attempt,
                attempts,
                exc,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transfer_config(multipart_threshold_mb: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    size = max(5, multipart_threshold_mb) << 20  # S3 parts are at least 5 MiB
    return TransferConfig(
        multipart_threshold=size, multipart_chunksize=size, use_threads=True, max_concurrency=4
    )


def upload_file(
    local: str | Path, uri: str, *, client: Any = None, retries: int = 5, multipart_threshold_mb: int = 64
) -> str:
    """Upload one file to ``s3://bucket/key`` (multipart above the threshold) with its SHA-256; return the URI."""
    loc = parse_s3(uri)
    client = client or make_client()
    digest = sha256_file(local)
    config = _transfer_config(multipart_threshold_mb)

    def action() -> None:
        client.upload_file(
            str(local), loc.bucket, loc.key, ExtraArgs={"Metadata": {CHECKSUM_KEY: digest}}, Config=config
        )

    with_retries(action, "upload to", uri, retries)
    log.debug("uploaded %s -> %s (sha256 %s)", local, uri, digest[:12])
    return uri


def download_file(uri: str, local: str | Path, *, client: Any = None, retries: int = 5) -> Path:
    """Download ``s3://bucket/key`` to ``local`` and verify the recorded SHA-256 (or single-part MD5 ETag)."""
    loc = parse_s3(uri)
    client = client or make_client()
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)

    def action() -> None:
        head = client.head_object(Bucket=loc.bucket, Key=loc.key)
        client.download_file(loc.bucket, loc.key, str(local))
        _verify(head, local, uri)

    with_retries(action, "download of", uri, retries)
    return local


def _verify(head: dict[str, Any], local: Path, uri: str) -> None:
    expected = (head.get("Metadata") or {}).get(CHECKSUM_KEY)
    if expected:
        actual = sha256_file(local)
        if actual != expected:
            raise ChecksumMismatch(f"{uri}: sha256 {actual} != recorded {expected} (downloaded to {local})")
        return
    etag = str(head.get("ETag", "")).strip('"')
    if etag and "-" not in etag and len(etag) == 32:  # single-part upload by someone else: ETag is the MD5
        md5 = hashlib.md5(local.read_bytes(), usedforsecurity=False).hexdigest()
        if md5 != etag:
            raise ChecksumMismatch(f"{uri}: md5 {md5} != ETag {etag} (downloaded to {local})")


def list_keys(uri: str, *, client: Any = None, retries: int = 5) -> list[str]:
    """All object keys under the prefix ``uri`` (as full ``s3://`` URIs), sorted."""
    loc = parse_s3(uri)
    client = client or make_client()
    prefix = f"{loc.key}/" if loc.key else ""

    def action() -> list[str]:
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    keys = with_retries(action, "listing of", uri, retries)
    return sorted(f"s3://{loc.bucket}/{key}" for key in keys)


def object_exists(uri: str, *, client: Any = None, retries: int = 5) -> bool:
    """True if an object exists at exactly ``uri``."""
    from botocore.exceptions import ClientError

    loc = parse_s3(uri)
    client = client or make_client()

    def action() -> bool:
        try:
            client.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise

    return with_retries(action, "lookup of", uri, retries)
