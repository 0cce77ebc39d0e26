"""Known faults and how they reach the user: one line ``error: <what> (<where>)`` plus a hint.

Stages raise ``CareError`` subclasses (or the older ``RecipeError`` / ``SchemaError`` /
``StorageError`` / ``TrackingError``, which are ``CareError`` s too) for faults a user can fix.
``describe`` turns any exception into a ``Report`` (what, where, hint, exit code); ``care`` prints
``report.lines()`` and exits non-zero, ``--debug`` adds the traceback. KFP components use
``one_line`` for the last line of a failed step. A leaf module: callers that print pass the text
through ``care_core.tracking.redact.redact`` (URIs with credentials). ``file_fault`` wraps library errors raised while
reading a file (truncated Parquet/JSON, corrupt safetensors) so the message names the file.

This module imports nothing heavy: it sits below every stage.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HINT = "run again with --debug to see the traceback"


class CareError(Exception):
    """A fault the user can fix. ``where`` names the file/row/field (or key), ``hint`` what to do.

    ``str(err)`` is ``"<where>: <what>"`` (or just ``what``), so older ``match=`` checks keep working.
    """

    exit_code: int = 1
    default_hint: str = DEFAULT_HINT

    def __init__(self, what: str, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint or self.default_hint
        super().__init__(f"{where}: {what}" if where else what)


class InputError(CareError):
    """A missing, empty or unusable input file or folder given to a stage."""

    default_hint = "check the path (or run the stage that writes it first)"


class MissingInput(InputError, FileNotFoundError):
    """An input file or folder that does not exist (still a ``FileNotFoundError``)."""


class FileFault(InputError, ValueError):
    """A file that exists but cannot be read: truncated, corrupt or of the wrong format."""

    default_hint = "the file is truncated or corrupt: re-create it by running the stage that wrote it again"


class ModelPathError(InputError):
    """A ``--model`` / ``model.path`` that names no model: a missing local folder, or one without config.json."""

    default_hint = (
        "give an existing local HF model folder (config.json + weights), a hub id such as "
        "'Qwen/Qwen2.5-VL-7B-Instruct', or tiny://tiny"
    )


class SecurityError(CareError):
    """A value that would leak a secret or escape its base folder."""

    default_hint = "keep credentials in the environment or a Kubernetes Secret, and paths inside their folder"


@dataclass(frozen=True)
class Report:
    """How an exception is shown: ``error: what (where)`` then ``hint: ...``; exit with ``code``."""

    what: str
    where: str | None
    hint: str
    code: int
    known: bool

    @property
    def line(self) -> str:
        text = f"error: {self.what} ({self.where})" if self.where else f"error: {self.what}"
        return _one_line(text)

    def lines(self) -> list[str]:
        return [self.line, _one_line(f"hint: {self.hint}")]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# exception class name -> hint, for library errors that are known but not ours
_FOREIGN_HINTS = {
    "FileNotFoundError": "check the path",
    "PermissionError": "check the file permissions",
    "IsADirectoryError": "give a file, not a folder",
    "NotADirectoryError": "give a folder, not a file",
    "JSONDecodeError": "the JSON file is truncated or not JSON: re-create it",
    "ArrowInvalid": "the Parquet file is truncated or corrupt: re-create it by running its stage again",
    "SafetensorError": "the safetensors file is truncated or corrupt: re-create the model folder",
    "MemoryError": "the machine ran out of memory: lower batch sizes or use a bigger machine",
}


def describe(exc: BaseException) -> Report:
    """The user-facing report of ``exc``: a ``CareError`` as it is; a known library error with its
    class as ``what``; anything else as an internal error (exit 1) with the ``--debug`` hint."""
    if isinstance(exc, CareError):
        return Report(exc.what, exc.where, exc.hint, exc.exit_code, True)
    if isinstance(exc, KeyboardInterrupt):
        return Report(
            str(exc) or "interrupted", None, "nothing was committed after the last finished step", 130, True
        )
    name = type(exc).__name__
    text = str(exc).strip() or name
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        reason = exc.strerror or text
        return Report(reason, str(exc.filename), _FOREIGN_HINTS.get(name, DEFAULT_HINT), 1, True)
    if isinstance(exc, ValueError | LookupError | FileNotFoundError) and _raised_by_project(exc):
        message = (
            exc.args[0] if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) else text
        )
        return Report(message, None, "check the named input, file or recipe key", 1, True)
    if name in _FOREIGN_HINTS:
        return Report(f"{name}: {text}", None, _FOREIGN_HINTS[name], 1, True)
    return Report(f"{name}: {text}", None, f"unexpected error; {DEFAULT_HINT}", 1, False)


def _raised_by_project(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is project code (a deliberate ``raise ValueError(...)``
    with a message naming the input), not a library failing inside."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    filename = last.tb_frame.f_code.co_filename.replace("\\", "/")
    return any(f"/{package}/" in filename for package in ("care_core", "pipelines", "components"))


def one_line(exc: BaseException) -> str:
    """``error: <what> (<where>) -- hint: <hint>`` on one line (for KFP component logs)."""
    report = describe(exc)
    return f"{report.line} -- hint: {report.hint}"


def _is_file_fault(exc: BaseException) -> bool:
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | EOFError):
        return True
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if name == "SafetensorError" or module.startswith("safetensors"):
        return True
    if module.startswith("pyarrow") and name in ("ArrowInvalid", "ArrowIOError", "ArrowException"):
        return True
    text = str(exc)
    return isinstance(exc, OSError | ValueError) and any(
        marker in text
        for marker in (
            "safetensors",
            "Parquet magic bytes",
            "Couldn't deserialize thrift",
            "header too large",
            "Error while deserializing header",
            "Unable to load weights",
        )
    )


@contextlib.contextmanager
def file_fault(path: str | Path, what: str = "cannot read") -> Iterator[None]:
    """Re-raise a truncated/corrupt-file library error inside the block as ``FileFault`` naming ``path``.

    ``CareError`` s and unrelated exceptions pass through unchanged."""
    try:
        yield
    except CareError:
        raise
    except FileNotFoundError as exc:
        raise MissingInput(f"{what}: no such file", str(exc.filename or path)) from exc
    except Exception as exc:
        if not _is_file_fault(exc):
            raise
        detail = " ".join(str(exc).split())[:300]
        raise FileFault(
            f"{what}: {type(exc).__name__}: {detail}", str(path), _FOREIGN_HINTS.get(type(exc).__name__)
        ) from exc


def read_json(path: str | Path) -> object:
    """``json.loads`` of a file; a missing or truncated file is an ``InputError`` / ``FileFault`` naming it."""
    with file_fault(path, "cannot read JSON"):
        return json.loads(Path(path).read_text())


__all__ = [
    "CareError",
    "FileFault",
    "InputError",
    "MissingInput",
    "ModelPathError",
    "Report",
    "SecurityError",
    "describe",
    "file_fault",
    "one_line",
    "read_json",
]
