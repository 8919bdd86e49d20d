"""Stop signals: Ctrl-C and SIGTERM stop a run, but wait until the file being written is whole."""
import os
import signal

import pytest
import torch

from utils.engine.checkpoint import CheckpointSaver, load_checkpoint
from utils.errors import Terminated
from utils.files import write_atomic
from utils import signals
from utils.signals import deferred_stops, late, settle, stop_signals


@pytest.fixture(autouse=True)
def pythons_own_handlers():
    """Python's own handlers, whatever the test runner was started with (`cmd &` in a script ignores SIGINT)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])


def signal_self(signum):
    os.kill(os.getpid(), signum)


@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_stop_signal_becomes_its_exception_and_the_old_handlers_come_back(signum, stop):
    before = signal.getsignal(signum)
    with pytest.raises(stop), stop_signals():
        signal_self(signum)
        raise AssertionError("the handler runs at once outside deferred_stops")
    assert signal.getsignal(signum) is before


def test_a_signal_during_deferred_stops_is_raised_when_the_outermost_block_ends():
    reached = []
    with pytest.raises(Terminated), stop_signals():
        with deferred_stops():
            with deferred_stops():
                signal_self(signal.SIGTERM)
                signal_self(signal.SIGINT)  # the first signal held is the one raised
                reached.append("inner")
            reached.append("outer")
        reached.append("after")
    assert reached == ["inner", "outer"]


def test_without_the_projects_handlers_deferred_stops_holds_nothing():
    reached = []
    with pytest.raises(KeyboardInterrupt), deferred_stops():
        signal_self(signal.SIGINT)
        reached.append("after the signal")
    assert reached == []


def test_a_signal_set_to_be_ignored_stays_ignored():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with stop_signals():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            signal_self(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_signal_inside_torch_save_stops_after_the_file_is_whole(tmp_path):
    """torch.save cut by the exception itself fails with a RuntimeError from its zip writer; held, the stop
    comes after the rename, and the file loads."""
    state = {"w": torch.arange(1_000_000, dtype=torch.float32)}

    def write(file):
        signal_self(signal.SIGTERM)
        torch.save(state, file)

    with pytest.raises(Terminated), stop_signals():
        write_atomic(tmp_path / "a.pt", write)
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], state["w"])
    assert [path.name for path in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left


def test_a_stop_during_a_checkpoint_write_leaves_both_files_and_the_saver_knows_last_pt(tmp_path):
    saver = CheckpointSaver(tmp_path, save_every_minutes=0)

    def state():
        signal_self(signal.SIGINT)
        return {"model": {"w": torch.ones(3)}, "model_spec": {}, "config": {}, "epoch": 1,
                "history": [{"val_miou": 0.5}]}

    with pytest.raises(KeyboardInterrupt), stop_signals():
        saver.after_epoch(1, final=False, improved=True, state=state)
    assert saver.last_epoch == 1  # what main.py's "last.pt (epoch N) is kept" message reads
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(tmp_path / "best.pt", weights_only=True)["val_miou"] == 0.5


def test_a_stop_while_reading_a_checkpoint_comes_after_the_read_not_as_a_corrupt_file(tmp_path, monkeypatch):
    """The signal arrives inside torch.load. A reader cut by the exception reports its own error (torch's zip
    reader a RuntimeError, which load_checkpoint would call a corrupt file); held, the read finishes whole and
    the stop comes after it."""
    torch.save({"model": {}, "model_spec": {}, "config": {}}, tmp_path / "last.pt")
    real_load, finished = torch.load, []

    def load(*args, **kwargs):
        try:
            signal_self(signal.SIGINT)
            state = real_load(*args, **kwargs)
        except BaseException as error:  # what a reader cut in the middle does with the exception
            raise RuntimeError("PytorchStreamReader failed reading zip archive") from error
        finished.append(state)
        return state

    monkeypatch.setattr(torch, "load", load)
    with pytest.raises(KeyboardInterrupt), stop_signals():
        load_checkpoint(tmp_path / "last.pt")
    assert finished == [{"model": {}, "model_spec": {}, "config": {}}]


def test_a_forked_child_leaves_the_stop_to_the_process_that_installed_the_handlers():
    """A loader worker is forked with the handlers of its parent, and a Ctrl-C reaches the whole process group:
    before its worker_init_fn ignores the signals, the worker must not stop with a traceback of its own."""
    with stop_signals():
        pid = os.fork()
        if pid == 0:  # the child: still running after the signal is what the parent reads from its exit status
            try:
                signal_self(signal.SIGTERM)
                os._exit(0)
            except BaseException:  # noqa: BLE001
                os._exit(1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class SignalsWhenCollected:
    """An object whose __del__ takes a stop signal: Python cannot raise from __del__ (nor from an at-fork handler),
    it prints "Exception ignored in ..." and goes on."""

    def __del__(self):
        signal_self(signal.SIGINT)


def test_a_stop_python_drops_is_held_and_raised_at_the_next_deferred_block_end(capfd):
    reached = []
    with pytest.raises(KeyboardInterrupt), stop_signals():
        SignalsWhenCollected()  # collected at once: the stop is raised inside its __del__
        reached.append("after the dropped stop")
        with deferred_stops():
            reached.append("in the next block")
        reached.append("after the block")
    assert reached == ["after the dropped stop", "in the next block"]
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_stop_is_raised_once_and_later_signals_are_recorded():
    with stop_signals():
        with pytest.raises(KeyboardInterrupt):
            signal_self(signal.SIGINT)
        signal_self(signal.SIGTERM)  # while the run stops (its message, its teardown): recorded, not raised
        assert isinstance(late(), Terminated)


def test_after_settle_a_signal_is_recorded_and_a_held_one_is_not_raised():
    with stop_signals():
        with deferred_stops():
            signal_self(signal.SIGINT)  # held...
            settle()  # ...when the outcome was decided: not raised as the block ends
        signal_self(signal.SIGTERM)  # recorded, not raised
        assert isinstance(late(), Terminated)


def test_a_forks_at_fork_handlers_take_no_stop(capfd):
    """A stop that arrives while os.fork runs its at-fork handlers (logging's take and release its module lock) is
    held until a stop can go: the fork, and logging, are whole; the stop comes at the next deferred block end."""
    import logging

    reached = []
    with pytest.raises(Terminated), stop_signals():
        signals._before_fork()  # what os.fork runs first (registered after logging's: so run before them)
        signal_self(signal.SIGTERM)  # inside the fork's handlers
        logging._acquireLock()
        logging._releaseLock()
        signals._after_fork_in_parent()
        pid = os.fork()  # a real fork goes through too
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        reached.append("the fork is done")
        with deferred_stops():
            pass
        reached.append("after the block")
    assert reached == ["the fork is done"]
    assert logging._lock.acquire(blocking=False)  # not left taken
    logging._lock.release()


@pytest.mark.e2e
@pytest.mark.parametrize("module", ["models", "utils.config", "utils.signals"])
def test_a_ctrl_c_while_main_loads_its_libraries_is_one_line(module):
    """The imports take seconds before any handler exists: a Ctrl-C there (injected at the import of `module`,
    not timed) ends with one line and 130, no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    inject = ("import builtins, runpy, sys\n"
              "real = builtins.__import__\n"
              "def load(name, *args, **kwargs):\n"
              f"    if name == {module!r}:\n"
              "        raise KeyboardInterrupt\n"
              "    return real(name, *args, **kwargs)\n"
              "builtins.__import__ = load\n"
              "sys.argv = ['main.py']\n"
              "runpy.run_path('main.py', run_name='__main__')\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", inject], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 130
    assert done.stderr.strip() == "interrupted while the libraries were loading: nothing was started"
