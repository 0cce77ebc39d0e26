"""Artifact URIs: a local path or ``s3://bucket/prefix``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class S3Location:
    """A parsed ``s3://bucket/key`` URI (``key`` has no leading slash, may be empty)."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


def is_s3(uri: str | object) -> bool:
    """True for ``s3://`` URIs."""
    return isinstance(uri, str) and uri.startswith("s3://")


def parse_s3(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` into bucket and key; raise ``ValueError`` naming the URI if malformed."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return S3Location(bucket=bucket, key=key.strip("/"))


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local path or an s3 URI with single slashes."""
    cleaned = [p.strip("/") for p in parts if p and p.strip("/")]
    if is_s3(root):
        return "/".join([root.rstrip("/"), *cleaned])
    if not cleaned:
        return root
    return "/".join([root.rstrip("/") or "/", *cleaned]) if root else "/".join(cleaned)
