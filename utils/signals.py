"""Ctrl-C and SIGTERM stop a run as exceptions in the main thread: never in the middle of writing a file, never
lost, and once.

Python runs a signal handler between any two bytecodes, so its exception can start inside a library call that
cannot take one: `torch.save` cut that way fails with its own RuntimeError ("unexpected pos ...") and a clean
stop becomes a traceback. `stop_signals()` (installed by main.py) turns SIGINT into KeyboardInterrupt and SIGTERM
(what cluster schedulers send) into `Terminated`; inside `deferred_stops()` (every `write_atomic`) a signal is
held and raised as the block ends, once the file is whole.

Where an exception cannot go, Python prints "Exception ignored in ..." and goes on: a stop raised inside an
at-fork handler (logging's, while a DataLoader forks its workers) or a `__del__` was lost that way, and the run
finished with exit 0. So forks hold a stop like a write does (and a DataLoader's pass starts inside
`deferred_stops()`: utils/data/loaders.py), and a stop that is swallowed all the same is held and raised at the
next `deferred_stops()` end (`_swallowed`); main.py's `late()` catches one that never was. A forked child (a loader
worker before its worker_init_fn ran) leaves the stop to the process that installed the handlers. A stop is
raised once: while the run stops (its message, its teardown) and after `settle()` (the outcome is decided), a
further signal is only recorded (`late()`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from utils.errors import Terminated

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_owner: int | None = None  # the PID that installed the handlers; None: not installed
_deferring = 0  # nesting depth of deferred_stops() (and forks) in the main thread
_held: int | None = None  # the first stop signal that arrived while deferring
_raised: int | None = None  # the stop raised and not swallowed: later signals are recorded, not raised
_settled = False  # settle(): the outcome is decided, signals are recorded only
_late: int | None = None  # a signal recorded after a stop was raised or the outcome settled


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def stop_exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def stop_name(stop: BaseException) -> str:
    """How a stop's line starts."""
    return "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"


def exit_code(stop: BaseException) -> int:
    """The shell's convention: 128 + the signal's number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


def _raise_stop(signum: int):
    global _raised
    _raised = signum
    raise stop_exception(signum)


def _on_stop(signum, frame):
    global _held, _late
    if os.getpid() != _owner:  # a forked child: its parent stops the run and shuts it down
        return
    if _raised or _settled:
        _late = _late or signum
        return
    if _deferring:
        _held = _held or signum
        return
    _raise_stop(signum)


def _swallowed(unraisable):
    """sys.unraisablehook while the handlers are installed: a stop that Python could not propagate (raised inside
    an at-fork handler, a __del__, a weakref callback) is held, to be raised where a stop can go: as the next
    `deferred_stops()` block ends (every file write, every start of a loader's pass) or at `raise_held()`.
    Anything else goes to the hook that was there before."""
    global _raised, _held
    stop = unraisable.exc_value
    if _owner == os.getpid() and isinstance(stop, (KeyboardInterrupt, Terminated)):
        _raised, _held = None, _held or (signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM)
        return
    _previous_hook(unraisable)


_previous_hook = sys.unraisablehook


@contextmanager
def stop_signals(restore: bool = True):
    """SIGINT -> KeyboardInterrupt and SIGTERM -> Terminated while the block runs (deferrable); the previous
    handlers come back afterwards (`restore=False`: they stay, recording only, for a process that ends with the
    block). A signal the parent process set to be ignored (`nohup`, `cmd &` in a script) stays ignored. Does
    nothing outside the main thread, where Python cannot set handlers."""
    global _owner, _deferring, _held, _raised, _settled, _late, _previous_hook
    if not _in_main_thread():
        yield
        return
    _owner, _deferring, _held, _raised, _settled, _late = os.getpid(), 0, None, None, False, None
    _previous_hook, sys.unraisablehook = sys.unraisablehook, _swallowed
    previous = {signum: signal.signal(signum, _on_stop) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        settle()
        if restore:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sys.unraisablehook = _previous_hook
            _owner = None


def settle() -> None:
    """The outcome is decided (the exit status and its line): from now on a stop signal is only recorded."""
    global _settled
    _settled = True


def late() -> BaseException | None:
    """A stop (as its exception) that did not end the action: a signal recorded after `settle()` (or after a stop
    was raised), or a stop raised and then swallowed where no hook sees it (`except BaseException: pass` in a
    library); None if none. For an action that ended without a stop."""
    signum = _late or _raised or _held
    return stop_exception(signum) if signum else None


@contextmanager
def deferred_stops():
    """Hold a stop signal that arrives during the block and raise it when the block ends. Only the handlers of
    `stop_signals()` can hold; elsewhere (and outside the main thread) the block runs unchanged."""
    global _deferring
    if not _in_main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        raise_held()


def raise_held() -> None:
    """Raise a stop held for later (outside deferred_stops, or after a fork), if any."""
    global _held
    if not _deferring and _held is not None and not (_raised or _settled):
        signum, _held = _held, None
        _raise_stop(signum)


# A fork holds a stop from its first at-fork handler to its last: an exception inside one is printed and dropped
# by Python, and one inside logging's leaves its module lock taken. `before` handlers run last-registered first,
# `after_in_parent` ones first-registered first: registered once at import (after logging's), these bracket them.
# No handler can raise the held stop (its exception would be dropped too): the next deferred_stops() block does.
_fork_holds = False


def _before_fork():
    global _deferring, _fork_holds
    if _owner == os.getpid() and _in_main_thread():
        _deferring += 1
        _fork_holds = True


def _after_fork_in_parent():
    global _deferring, _fork_holds
    if _fork_holds:
        _fork_holds = False
        _deferring -= 1


def _after_fork_in_child():
    global _deferring, _fork_holds, _held
    _deferring, _fork_holds, _held = 0, False, None


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
