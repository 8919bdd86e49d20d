"""Every write on a full disk or in a folder that cannot be written: one `error:` line naming the file and the
cause, the files written before kept, nothing half-written. The disk is made full by a monkeypatched write that
raises OSError(ENOSPC), never for real."""
import errno
import io
import os

import numpy as np
import pytest
import torch

import main
from tests.conftest import FAST
from utils.errors import WriteError
from utils.files import write_atomic, write_csv, write_json
from utils.reporting import plots

FULL = "No space left on device"


class FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then raises ENOSPC, as a full disk does."""

    def __init__(self, room=10):
        self.room = room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, FULL)
        self.room -= len(data)
        return len(data)


def figure_writer(file):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    try:
        fig.savefig(file, format="png")
    finally:
        plt.close(fig)


WRITERS = {  # how each kind of file is written, into a file object
    "bytes": lambda file: file.write(b"x" * 100),
    "checkpoint": lambda file: torch.save({"weights": torch.zeros(1000)}, file),  # torch says "unexpected pos"
    "npz": lambda file: np.savez(file, a=np.zeros(1000)),
    "figure": figure_writer,
}


@pytest.mark.parametrize("kind", WRITERS)
def test_a_full_disk_is_one_write_error_naming_the_file_and_the_cause_and_the_old_file_stays(tmp_path, monkeypatch,
                                                                                             kind):
    path = tmp_path / "file"
    path.write_bytes(b"before")
    monkeypatch.setattr("utils.files.os.fdopen", lambda handle, mode: (os.close(handle), FullDisk())[1])
    with pytest.raises(WriteError) as caught:
        write_atomic(path, WRITERS[kind])
    assert str(caught.value) == f"{path} cannot be written ({FULL}): the files written before it are kept"
    assert path.read_bytes() == b"before" and os.listdir(tmp_path) == ["file"]  # no temporary file left


@pytest.mark.parametrize("write", [lambda p: write_json(p, {"a": 1}), lambda p: write_csv(p, [{"a": 1}]),
                                   lambda p: plots.plot_history([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0,
                                                                  "val_miou": 0.5, "lr": 1e-3}], p)])
def test_a_folder_that_cannot_be_written_is_one_write_error(tmp_path, monkeypatch, write):
    def refused(**_):  # what mkstemp meets in a read-only folder (a test run as root could write there)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("utils.files.tempfile.mkstemp", refused)
    with pytest.raises(WriteError, match=r"out.json cannot be written \(Permission denied\)"):
        write(tmp_path / "out.json")
    assert os.listdir(tmp_path) == []


def written_name(fd):
    """The file a write_atomic's temporary file stands for: .NAME.random.tmp -> NAME."""
    return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))[1:].rsplit(".", 2)[0]


def disk_full_at(monkeypatch, fail: int | None):
    """fsync (every write_atomic's, once each) raises ENOSPC at the write number `fail`; returns the names written."""
    names, real = [], os.fsync

    def fsync(fd):
        names.append(written_name(fd))
        if len(names) == fail:
            raise OSError(errno.ENOSPC, FULL)
        real(fd)

    monkeypatch.setattr("utils.files.os.fsync", fsync)
    return names


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.e2e
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the written files through /proc")
def test_a_full_disk_at_every_write_of_a_run_is_one_line_naming_the_file_and_keeps_the_files_before(
        tiny_camvid, tmp_path, monkeypatch, capsys):
    argv = [*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1"]
    writes = disk_full_at(monkeypatch, None)
    assert main.main([*argv, "--output-dir", str(tmp_path / "whole")]) == 0
    assert {"config.json", "best.pt", "last.pt", "history.csv", "per_image_confusion.npz", "metrics.json",
            "predictions.png"} <= set(writes)
    for number, name in enumerate(list(writes), 1):
        run = tmp_path / f"full-at-{number}"
        written = disk_full_at(monkeypatch, number)
        assert main.main([*argv, "--output-dir", str(run)]) == 2, name
        assert one_error_line(capsys) .startswith(f"error: {run / name} cannot be written ({FULL}): ")
        assert not list(run.glob(".*.tmp"))
        assert all((run / before).is_file() for before in written[:-1])  # earlier files kept
        assert not (run / name).exists() or written[:-1].count(name)  # only an earlier version of it, if any


def test_a_full_disk_at_the_claim_is_one_line_naming_the_lock(tiny_camvid, tmp_path, monkeypatch, capsys):
    class FullLock:
        """RUN/.lock opened and locked for real; writing its owner's PID finds the disk full."""

        def __init__(self, path, mode):
            self.file = open(path, mode)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def write(self, text):
            raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr("utils.run_folder.open", FullLock, raising=False)
    run = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 2
    assert one_error_line(capsys) == f"error: {run / '.lock'} cannot be written ({FULL}): free space, or choose a " \
                                     f"folder you can write"
    assert not (run / "config.json").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the written files through /proc")
def test_a_full_disk_at_a_comparisons_record_is_one_line_and_leaves_no_record(tiny_camvid, tmp_path, monkeypatch,
                                                                               capsys):
    out = tmp_path / "compare"
    written = disk_full_at(monkeypatch, 1)  # after every check, comparison.json is its first write
    assert main.main([*FAST, "--compare", "linknet", "--data-dir", str(tiny_camvid), "--output-dir", str(out)]) == 2
    assert written == ["comparison.json"]
    assert one_error_line(capsys) == f"error: {out / 'comparison.json'} cannot be written ({FULL}): the files " \
                                     f"written before it are kept"
    assert os.listdir(out) == []
