"""Credentials in URIs (``http://user:pass@host``, ``s3://key:secret@bucket``) never reach params, logs or files.

``redact`` replaces the user-info part of every URI in a text with ``***``; ``find_credentials``
lists the recipe keys whose values carry one (``care compile`` refuses those: credentials belong
in the environment or a Kubernetes Secret, e.g. ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
``RedactingFilter`` applies ``redact`` to every record a handler sees; ``install_log_redaction`` (called
by ``care``) to every record the process creates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# scheme://userinfo@ where userinfo has no '/', '@' or whitespace (RFC 3986 authority)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")


def has_credentials(text: str) -> bool:
    """True if ``text`` holds a URI with user info (``scheme://user[:password]@host``)."""
    return any(m.group("userinfo") != MASK for m in _USERINFO.finditer(text))


def redact(text: str) -> str:
    """``text`` with the user info of every URI replaced by ``***`` (``http://***@host``)."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to strings inside (nested) mappings and lists; other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def find_credentials(flat: Mapping[str, Any]) -> list[str]:
    """Keys of a flattened mapping whose values (or list items) hold a URI with credentials."""
    return [key for key, value in flat.items() if has_credentials(str(value))]


class RedactingFilter(logging.Filter):
    """Logging filter that redacts credentials in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process when it is created (a record factory), so loggers with
    their own handlers (mlflow's, which do not propagate) are covered too. Idempotent."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (a bad format string is logging's own error to report later)
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


__all__ = [
    "MASK",
    "RedactingFilter",
    "find_credentials",
    "has_credentials",
    "install_log_redaction",
    "redact",
    "redact_value",
]
