"""Ctrl-C and SIGTERM stop a run as exceptions in the main thread, but never in the middle of writing a file.

Python runs a signal handler between any two bytecodes, so its exception can start inside a library call that
cannot take one: `torch.save` cut that way fails with its own RuntimeError ("unexpected pos ...") and a clean
stop becomes a traceback. `stop_signals()` (installed by main.py) turns SIGINT into KeyboardInterrupt and SIGTERM
(what cluster schedulers send) into `Terminated`; inside `deferred_stops()` (every `write_atomic`) a signal is
held and raised as the block ends, once the file is whole.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from utils.errors import Terminated

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_deferring = 0  # nesting depth of deferred_stops() in the main thread
_held: int | None = None  # the first stop signal that arrived while deferring


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_stop(signum: int):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated()


def _on_stop(signum, frame):
    global _held
    if _deferring:
        _held = _held or signum
        return
    _raise_stop(signum)


@contextmanager
def stop_signals():
    """SIGINT -> KeyboardInterrupt and SIGTERM -> Terminated while the block runs (deferrable); the previous
    handlers come back afterwards. A signal the parent process set to be ignored (`nohup`, `cmd &` in a script)
    stays ignored. Does nothing outside the main thread, where Python cannot set handlers."""
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _on_stop) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred_stops():
    """Hold a stop signal that arrives during the block and raise it when the block ends. Only the handlers of
    `stop_signals()` can hold; elsewhere (and outside the main thread) the block runs unchanged."""
    global _deferring, _held
    if not _in_main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _held is not None:
            signum, _held = _held, None
            _raise_stop(signum)
