"""Logs a batch job can read: a progress bar on a terminal only; in a log file, one plain line per epoch and
per evaluation."""
import io
import re
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT
from utils.engine import distributed


class Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_the_bar_is_drawn_on_a_terminal_only(monkeypatch, terminal):
    stream = Stream(terminal)
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(distributed.progress(range(3), "epoch 1 train")) == [0, 1, 2]
    assert ("epoch 1 train" in stream.getvalue()) is terminal


def test_another_rank_draws_no_bar(monkeypatch):
    stream = Stream(terminal=True)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    assert list(distributed.progress(range(3), "epoch 1 train")) == [0, 1, 2]
    assert stream.getvalue() == ""


@pytest.mark.e2e
def test_a_run_logged_to_a_file_writes_one_line_per_epoch_and_per_evaluation(tiny_camvid, tmp_path):
    log = tmp_path / "job.log"
    with log.open("w") as file:  # a cluster job's output: a file, not a terminal
        subprocess.run([sys.executable, "main.py", *FAST, "--data-dir", str(tiny_camvid), "--epochs", "3",
                        "--output-dir", str(tmp_path / "run")], cwd=ROOT, stdout=file, stderr=subprocess.STDOUT,
                       check=True, timeout=600)
    text = log.read_bytes().decode()  # not read_text(), whose universal newlines turn a "\r" into a "\n"
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines if re.match(r"epoch \d+/3:", line)] == [f"epoch {e}/3" for e in (1, 2, 3)]
    assert [line.split(":")[0] for line in lines if re.match(r"(val|test): mIoU", line)] == ["val", "test"]
