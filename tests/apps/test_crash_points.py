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
