"""Artifact store: local paths or ``s3://bucket/prefix`` (boto3, retries, checksums)."""

from care_core.storage.s3 import ChecksumMismatch, StorageError, sha256_file
from care_core.storage.transfer import download_dir, download_file, exists, upload, upload_dir, upload_file
from care_core.storage.uri import is_s3, join, parse_s3

__all__ = [
    "ChecksumMismatch",
    "StorageError",
    "download_dir",
    "download_file",
    "exists",
    "is_s3",
    "join",
    "parse_s3",
    "sha256_file",
    "upload",
    "upload_dir",
    "upload_file",
]
