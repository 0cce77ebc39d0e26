"""Hard wall-clock limits for math-verify (adversarial model output must not hang a worker).

In the main thread of a POSIX process :func:`call_with_timeout` arms ``SIGALRM`` through
``setitimer`` (float seconds, re-firing every 50 ms until disarmed) and raises a
``BaseException`` subclass from the handler, so library code that catches ``Exception`` cannot
swallow it. Elsewhere (worker threads, where signals cannot be used) the call runs in a persistent
``spawn`` child process that is killed and restarted when it overruns. math-verify's own
signal-based timeouts are disabled (``parsing_timeout=None`` / ``timeout_seconds=None``) because
they take whole seconds only and refuse to run outside the main thread.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class _Deadline(BaseException):
    """Raised inside the guarded call when its time is up (BaseException: not swallowable)."""


def _alarm_handler(signum: int, frame: Any) -> None:
    raise _Deadline()


def _can_use_signals() -> bool:
    return os.name == "posix" and threading.current_thread() is threading.main_thread()


def _call_with_alarm(fn: Callable[..., Any], args: tuple, timeout_s: float) -> tuple[bool, Any]:
    previous_handler = signal.signal(signal.SIGALRM, _alarm_handler)
    previous_timer = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    # no garbage collection inside the guarded call: an alarm landing in a gc callback would raise
    # where it cannot propagate (an "unraisable" exception) instead of stopping the call
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout_s, 0.05)
            return True, fn(*args)
        except _Deadline:
            return False, None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:  # fired between the call's end and disarming
        return False, None
    finally:
        if gc_was_enabled:
            gc.enable()
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_timer[0] > 0:  # an outer timer (e.g. pytest-timeout) keeps its deadline
            remaining = max(previous_timer[0] - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_timer[1])


def _worker_main(conn: Any, warm_modules: tuple[str, ...]) -> None:
    import importlib

    for module in warm_modules:
        importlib.import_module(module)
    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        fn, args = message
        try:
            conn.send((True, fn(*args)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a failed call
            conn.send((False, repr(exc)))


class _ProcessWorker:
    """One persistent child process; restarted after a timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_worker_main, args=(child, WARM_MODULES), daemon=True)
        self._process.start()
        self._conn = parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        self._process = None
        self._conn = None

    def call(
        self, fn: Callable[..., Any], args: tuple, timeout_s: float, start_grace_s: float
    ) -> tuple[bool, Any]:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
                if not self._conn.poll(start_grace_s) or self._conn.recv() != "ready":
                    logger.warning("guard worker did not start within %.0f s", start_grace_s)
                    self._kill()
                    return False, None
            self._conn.send((fn, args))
            if self._conn.poll(timeout_s):
                ok, value = self._conn.recv()
                return (True, value) if ok else (False, None)
            logger.warning("guarded call %s exceeded %.2f s; restarting the worker", fn.__name__, timeout_s)
            self._kill()
            return False, None


# imported by the worker before it reports ready, so start-up time is not charged to a call
WARM_MODULES = ("math_verify", "care_core.rewards.verifiers")
_WORKER = _ProcessWorker()


def call_with_timeout(fn: Callable[..., Any], args: tuple, timeout_s: float) -> tuple[bool, Any]:
    """Run ``fn(*args)`` for at most ``timeout_s`` seconds: ``(True, result)`` or ``(False, None)``.

    ``fn`` must be a module-level (picklable) function for the thread path. Exceptions raised by
    ``fn`` propagate in the main-thread path.
    """
    if timeout_s <= 0:
        return True, fn(*args)
    if _can_use_signals():
        return _call_with_alarm(fn, args, timeout_s)
    return _WORKER.call(fn, args, timeout_s, start_grace_s=60.0)
