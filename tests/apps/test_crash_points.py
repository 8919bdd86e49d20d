"""Every write of a run is a kill point: a SIGKILL right after any one of them, then --resume, ends with exactly the
uninterrupted run's best epoch and test metrics (CPU, fixed seed).

Every file of a run goes through utils.files.write_atomic, whose last step is one os.replace: the files on disk
change only there. A kill is modelled by an exception raised straight after the N-th os.replace that no code of the
project catches; the test checks that nothing is renamed while it unwinds, so the folder is exactly what a SIGKILL
at that instant leaves.
"""
import json
import os

import pytest

import main
from tests.conftest import FAST


class Killed(BaseException):
    """SIGKILL: no `except` of the project sees it (they catch Exception, KeyboardInterrupt and Terminated)."""


def run_with_kill(monkeypatch, argv, kill_after):
    """main.main(argv), killed after its `kill_after`-th rename (None: never). Returns (exit code or None, renames)."""
    real, renamed = os.replace, []

    def replace(source, target, *args, **kwargs):
        assert not (kill_after and len(renamed) >= kill_after), f"{target} renamed after the kill"
        real(source, target, *args, **kwargs)
        renamed.append(os.path.basename(target))
        if len(renamed) == kill_after:
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    try:
        code = main.main(argv)
    except Killed:
        code = None
    finally:
        monkeypatch.setattr(os, "replace", real)
    return code, renamed


def outcome(run):
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["run"]["best_epoch"], metrics["test"], metrics["val"]


@pytest.mark.parametrize("save_every", ["0"])  # last.pt after every epoch: best.pt and last.pt both due at each best
def test_a_kill_after_any_write_then_resume_ends_as_the_uninterrupted_run(tiny_camvid, tmp_path, monkeypatch,
                                                                          capsys, save_every):
    argv = [*FAST, "--data-dir", str(tiny_camvid), "--epochs", "3", "--save-every", save_every, "--seed", "3"]
    reference = tmp_path / "reference"
    code, writes = run_with_kill(monkeypatch, [*argv, "--output-dir", str(reference)], None)
    assert code == 0
    expected = outcome(reference)
    assert {"config.json", "best.pt", "last.pt", "history.csv", "metrics.json"} <= set(writes)
    recovered = []
    for kill_after in range(1, len(writes) + 1):
        run = tmp_path / f"killed-{kill_after}"
        code, _ = run_with_kill(monkeypatch, [*argv, "--output-dir", str(run)], kill_after)
        assert code is None, f"the run did not reach its write {kill_after}"
        (run / ".last.pt.cut.tmp").write_bytes(b"half a checkpoint")  # what a kill inside a write leaves
        code = main.main(["--resume", str(run)])
        err = capsys.readouterr().err
        if code == 2:  # killed after metrics.json: the run is finished, and resume says so
            assert "already trained and tested" in err
        else:
            assert code == 0, err
        assert outcome(run) == expected, f"killed after write {kill_after} ({writes[kill_after - 1]})"
        assert not list(run.glob(".*.tmp")) or code == 2
        recovered.append(writes[kill_after - 1])
    assert recovered == writes  # every write point was killed and recovered
    print(f"save_every={save_every}: {len(writes)} write points, each killed and recovered: {writes}")
