"""Stop signals: Ctrl-C and SIGTERM stop a run, but wait until the file being written is whole."""
import os
import signal

import pytest
import torch

from utils.engine.checkpoint import CheckpointSaver, load_checkpoint
from utils.errors import Terminated
from utils.files import write_atomic
from utils.signals import deferred_stops, stop_signals


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
