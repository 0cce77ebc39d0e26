"""Copy files and folders to/from an artifact URI: a local path or ``s3://bucket/prefix``.

Local destinations are plain copies, so the same calls serve ``care demo`` (artifact root under
``.care/``) and a cluster (artifact root on S3).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from care_core.storage import s3
from care_core.storage.paths import contained
from care_core.storage.uri import is_s3, join

log = logging.getLogger(__name__)


def upload(local: str | Path, uri: str, *, retries: int = 5, multipart_threshold_mb: int = 64) -> str:
    """Upload a file or a folder (recursively) to ``uri``; return ``uri``."""
    local = Path(local)
    if local.is_dir():
        return upload_dir(local, uri, retries=retries, multipart_threshold_mb=multipart_threshold_mb)
    return upload_file(local, uri, retries=retries, multipart_threshold_mb=multipart_threshold_mb)


def upload_file(
    local: str | Path, uri: str, *, retries: int = 5, multipart_threshold_mb: int = 64, client: Any = None
) -> str:
    """Copy one file to ``uri`` (S3 object or local path); return ``uri``."""
    local = Path(local)
    if not local.is_file():
        raise FileNotFoundError(f"cannot upload {local} to {uri}: no such file")
    if is_s3(uri):
        return s3.upload_file(
            local, uri, client=client, retries=retries, multipart_threshold_mb=multipart_threshold_mb
        )
    dest = Path(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.resolve() != local.resolve():
        shutil.copy2(local, dest)
    return uri


def upload_dir(local_dir: str | Path, uri: str, *, retries: int = 5, multipart_threshold_mb: int = 64) -> str:
    """Copy every file under ``local_dir`` to ``uri/<relative path>``; return ``uri``."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise FileNotFoundError(f"cannot upload {local_dir} to {uri}: no such folder")
    client = s3.make_client() if is_s3(uri) else None
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(local_dir).as_posix()
        upload_file(
            path,
            join(uri, rel),
            retries=retries,
            multipart_threshold_mb=multipart_threshold_mb,
            client=client,
        )
    log.info("uploaded %d files from %s to %s", len(files), local_dir, uri)
    return uri


def download_file(uri: str, local: str | Path, *, retries: int = 5) -> Path:
    """Copy one artifact at ``uri`` to ``local`` (checksum-verified for S3); return the local path."""
    local = Path(local)
    if is_s3(uri):
        return s3.download_file(uri, local, retries=retries)
    src = Path(uri)
    if not src.is_file():
        raise FileNotFoundError(f"artifact not found: {uri}")
    local.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != local.resolve():
        shutil.copy2(src, local)
    return local


def local_targets(uri: str, key_uris: list[str], local_dir: Path) -> list[tuple[str, Path]]:
    """(key URI, local file) for every object under the prefix ``uri``; folder markers are skipped.

    A key whose path below the prefix leaves ``local_dir`` (``..`` segments, a leading ``/``: AWS S3
    accepts such keys) raises ``SecurityError`` naming the key."""
    prefix = uri.rstrip("/") + "/"
    return [
        (key_uri, contained(local_dir, key_uri[len(prefix) :], f"S3 key {key_uri}"))
        for key_uri in key_uris
        if not key_uri.endswith("/")
    ]


def download_dir(uri: str, local_dir: str | Path, *, retries: int = 5) -> Path:
    """Copy every object under the prefix ``uri`` into ``local_dir`` keeping relative paths.

    A key whose relative path would leave ``local_dir`` (``..`` segments, a leading ``/``) is a
    ``SecurityError``, raised before any file is written."""
    local_dir = Path(local_dir)
    if not is_s3(uri):
        src = Path(uri)
        if not src.is_dir():
            raise FileNotFoundError(f"artifact folder not found: {uri}")
        if src.resolve() != local_dir.resolve():
            shutil.copytree(src, local_dir, dirs_exist_ok=True)
        return local_dir
    client = s3.make_client()
    keys = s3.list_keys(uri, client=client, retries=retries)
    if not keys:
        raise s3.StorageError(f"download of {uri} failed: no objects under this prefix")
    for key_uri, target in local_targets(
        uri, keys, local_dir
    ):  # every key checked before anything is written
        s3.download_file(key_uri, target, client=client, retries=retries)
    log.info("downloaded %d files from %s to %s", len(keys), uri, local_dir)
    return local_dir


def exists(uri: str, *, retries: int = 5) -> bool:
    """True if a file/folder (local) or an object or non-empty prefix (S3) exists at ``uri``."""
    if not is_s3(uri):
        return Path(uri).exists()
    return s3.object_exists(uri, retries=retries) or bool(s3.list_keys(uri, retries=retries))
