"""Every write of a run is a kill point: a SIGKILL right after any one of them, then --resume, ends with exactly the
uninterrupted run's best epoch and test metrics (CPU, fixed seed).

Every file of a run goes through utils.files.write_atomic, whose last step is one os.replace: the folder changes
only there. So the folder a SIGKILL leaves at any instant is the folder as it stands after some N-th os.replace.
The uninterrupted run is made once; after each of its renames the test takes a snapshot of the folder (hard links:
no write of the project changes a file in place, it renames a new one over it), and resumes every snapshot in turn.
The snapshots leave out the run claim (.lock, rewritten in place by its owner), which a dead run's kernel lock
does not hold anyway.
"""
import json
import os
import shutil
import signal
import sys
from collections import Counter

import pytest
import torch

import pytest

import main
from tests.conftest import FAST

pytestmark = pytest.mark.e2e  # kills a training run after each write and resumes it


def run_with_snapshots(monkeypatch, argv, run, snapshots):
    """main.main(argv) into `run`, with a hard-linked copy of `run` in snapshots/N after its N-th rename.
    Returns (exit code, the renamed files' names in order)."""
    real, renamed = os.replace, []

    def replace(source, target, *args, **kwargs):
        real(source, target, *args, **kwargs)
        renamed.append(os.path.basename(target))
        shutil.copytree(run, snapshots / str(len(renamed)), copy_function=os.link,
                        ignore=shutil.ignore_patterns(".lock", "tensorboard"))

    monkeypatch.setattr(os, "replace", replace)
    try:
        return main.main(argv), renamed
    finally:
        monkeypatch.setattr(os, "replace", real)


def outcome(run):
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["run"]["best_epoch"], metrics["test"], metrics["val"]


def test_a_kill_after_any_write_then_resume_ends_as_the_uninterrupted_run(tiny_camvid, tmp_path, monkeypatch, capsys):
    # --save-every 0: last.pt after every epoch, so best.pt and last.pt are both due at each new best.
    argv = [*FAST, "--data-dir", str(tiny_camvid), "--epochs", "3", "--save-every", "0", "--seed", "3"]
    reference, snapshots = tmp_path / "reference", tmp_path / "killed"
    code, writes = run_with_snapshots(monkeypatch, [*argv, "--output-dir", str(reference)], reference, snapshots)
    assert code == 0
    expected = outcome(reference)
    assert {"config.json", "best.pt", "last.pt", "history.csv", "metrics.json"} <= set(writes)
    recovered = []
    for kill_after, name in enumerate(writes, start=1):
        run = snapshots / str(kill_after)
        (run / ".last.pt.cut.tmp").write_bytes(b"half a checkpoint")  # what a kill inside a write leaves
        code = main.main(["--resume", str(run)])
        err = capsys.readouterr().err
        if code == 2:  # killed after metrics.json: the run is finished, and resume says so
            assert "already trained and tested" in err
        else:
            assert code == 0, err
            assert not list(run.glob(".*.tmp"))  # the killed write's leftover is removed at the next start
        assert outcome(run) == expected, f"killed after write {kill_after} ({name})"
        recovered.append(name)
        shutil.rmtree(run)  # a snapshot holds its checkpoints' links only until it is checked
    assert recovered == writes  # every write point was killed and recovered
    print(f"{len(writes)} write points, each killed and recovered: {writes}")


# ------------------------------------------------------------------------------------------------ stop signals
class StopInjector:
    """sys.setprofile hook that sends a stop signal at a chosen instant of a run, chosen by counting, not by time:
    it counts the Python calls of the main thread from the first call of `start`, and signals this process at
    `point`:
      ("call", n)               the n-th call counted, whatever it is;
      ("function", name, k)     the k-th call of the function of that qualified name;
      ("worker", forks)         in the loader worker forked by the `forks`-th fork, as its process starts (before its
                                worker_init_fn): that worker and this process, as a Ctrl-C to the process group.
    With point None it only counts: `calls` per name, and `ends`, the count at the first call of `end`. A count
    differs a little from run to run (how often the main process polls its loader workers): the points near the
    end are named functions."""

    def __init__(self, start, point=None, signum=signal.SIGINT, end="late"):
        self.start, self.point, self.signum, self.end, self.pid = start, point, signum, end, os.getpid()
        self.counting, self.count, self.ends, self.calls, self.fired = False, 0, None, Counter(), None
        self.forks = []  # per fork, logging's _releaseLock calls before it: the next one is the fork's own

    def __call__(self, frame, event, arg):
        if event != "call":
            return
        name = frame.f_code.co_qualname
        if not self.counting and name != self.start:
            return
        self.counting = True
        self.count += 1
        self.calls[name] += 1
        if name == self.end and self.ends is None:
            self.ends = self.count
        if name == "_before_fork":
            self.forks.append(self.calls["_releaseLock"])
        if self.point is None:
            return
        kind, *where = self.point
        if os.getpid() != self.pid:  # a forked loader worker (the hook and its counts are copied by the fork)
            if kind == "worker" and name == "_worker_loop" and self.calls["_before_fork"] == where[0]:
                self.fire(name, os.getpid(), self.pid)
            elif kind != "worker":
                sys.setprofile(None)
        elif (kind == "call" and self.count == where[0]) or (kind == "function" and [name, self.calls[name]] == where):
            self.fire(name, self.pid)

    def fire(self, name, *pids):
        self.fired = name
        sys.setprofile(None)  # the rest runs at full speed
        for pid in pids:
            os.kill(pid, self.signum)


def resume_with(injector, run):
    """main.py --resume RUN (with a loader worker per split, so that the evaluation forks) under `injector`."""
    sys.setprofile(injector)
    try:
        return main.main(["--resume", str(run), "--workers", "1"])
    finally:
        sys.setprofile(None)


def figures(run):
    return sorted(path.name for path in run.glob("*.png"))


@pytest.fixture
def python_handlers():
    """Python's own handlers, whatever the test runner was started with (`cmd &` in a script ignores SIGINT)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])


@pytest.mark.e2e
def test_a_stop_at_any_instant_of_a_runs_end_says_what_is_kept_and_resume_finishes_it(tiny_camvid, tmp_path,
                                                                                   monkeypatch, capfd, python_handlers):
    """A SIGINT or SIGTERM sent at many instants of the last epoch, the final evaluation (its loader's fork included:
    inside logging's at-fork handlers, in the worker before its worker_init_fn), the figures, metrics.json and the
    teardown: each ends the run with exit 130 / 143 and one line, no traceback and nothing "ignored"; the line says
    what the folder holds; --resume then ends with exactly the uninterrupted run's metrics and figures.

    Two folders of one 2-epoch run are resumed: as epoch 1's last.pt left it (the stops in the last epoch), and as
    epoch 2's left it (the final evaluation on: the same code as in one go, in a third of the time). The instants
    are counted Python calls and named functions, never times: each is reached whatever the machine's speed."""
    argv = [*FAST, "--data-dir", str(tiny_camvid), "--epochs", "2", "--save-every", "0", "--seed", "3"]
    reference, snapshots = tmp_path / "reference", tmp_path / "snapshots"
    code, writes = run_with_snapshots(monkeypatch, [*argv, "--output-dir", str(reference)], reference, snapshots)
    assert code == 0
    checkpoints = [number for number, name in enumerate(writes, start=1) if name == "last.pt"]
    expected, drawn = outcome(reference), figures(reference)

    def fresh(name, after):
        run = tmp_path / name
        shutil.copytree(snapshots / str(after), run, copy_function=os.link)  # no write changes a file in place
        return run

    # The uninterrupted end, counted: from the claimed folder of a trained run (its final evaluation's loaders fork:
    # val, then test) to main's last look for a late signal.
    counter = StopInjector("train_in")
    run = fresh("counted", checkpoints[1])
    assert resume_with(counter, run) == 0
    assert outcome(run) == expected and figures(run) == drawn
    assert counter.calls["_before_fork"] == 2 and counter.calls["write_atomic"] >= 5
    writes = counter.calls["write_atomic"]  # config.json, per_image_confusion.npz, the figures, metrics.json
    # (where, from which folder, counted from which call, the file the stop comes before: it must not be written)
    points = [(checkpoints[0], "train_one_epoch", point, "metrics.json") for point in [
        ("function", "Tensor.backward", 1),  # the last epoch's training step
        ("function", "write_atomic", 1),  # its checkpoints
    ]] + [(checkpoints[1], "train_in", point, before) for point, before in [
        *[(("call", counter.ends * i // 4), None) for i in range(1, 4)],
        # The test loader's fork: inside an at-fork handler, inside logging's, in the worker before its
        # worker_init_fn. The stop comes as the test pass starts, not after it.
        (("function", "_before_fork", 2), "per_image_confusion.npz"),
        (("function", "_releaseLock", counter.forks[1] + 1), "per_image_confusion.npz"),
        (("worker", 2), "per_image_confusion.npz"),
        (("function", "_MultiProcessingDataLoaderIter.__del__", 1), "metrics.json"),  # Python drops it there
        *[(("function", "write_atomic", k), "metrics.json" if k < writes else None) for k in range(1, writes + 1)],
        (("function", "close_loaders", 1), None),
        (("function", "cleanup", 1), None),
        (("function", "late", 1), None),  # after the outcome is decided, as main reads whether a signal came late
    ]]
    capfd.readouterr()
    finished = set()  # the folders --resume has finished, by their files: a stop that leaves the same is not resumed
    for number, (after, start, point, before) in enumerate(points):
        signum = (signal.SIGINT, signal.SIGTERM)[number % 2]
        run = fresh(f"stopped{number}", after)
        injector = StopInjector(start, point, signum)
        code = resume_with(injector, run)
        err = capfd.readouterr().err
        where = f"{signal.Signals(signum).name} at {point} (in {injector.fired})"
        assert injector.fired or point[0] == "worker", where  # a worker's copy of the hook fired there
        assert code == 128 + signum, f"{where}: exit {code}\n{err[-3000:]}"
        assert "Traceback" not in err and "Exception ignored" not in err, f"{where}:\n{err[-3000:]}"
        line = err.strip().splitlines()[-1]
        assert line.startswith("interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"), f"{where}: {line}"
        assert not before or not (run / before).exists(), f"{where}: the run went on to write {before}"
        # The line says what the folder holds, and --resume finishes what it left.
        left = tuple(sorted(path.name for path in run.iterdir() if path.name != ".lock"))
        if (run / "metrics.json").is_file():
            assert "nothing is lost" in line, f"{where}: {line}"
        else:
            kept = torch.load(run / "last.pt", weights_only=True)["epoch"]
            said = "(epoch 1) is kept" if kept == 1 else "is trained to epoch 2 of 2"
            assert said in line and line.endswith(f"python main.py --resume {run}"), f"{where}: {line}"
            if left not in finished:
                assert main.main(["--resume", str(run), "--workers", "0"]) == 0, where
                capfd.readouterr()
        if left not in finished:
            assert outcome(run) == expected and figures(run) == drawn, where
            finished.add(left)
        shutil.rmtree(run)
    print(f"{len(points)} stop points, each stopped cleanly and finished by --resume: {points}")
