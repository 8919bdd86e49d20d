"""A run folder belongs to one run from its creation: a second run there is refused, naming the owner; a dead
run's claim does not block --resume."""
import errno
import json
import os
import subprocess
import sys

import pytest

import main
import utils.run_folder as run_folder
from tests.conftest import FAST

pytestmark = pytest.mark.e2e  # runs of main.py against a folder another process holds

HOLD = """
import fcntl, sys
file = open(sys.argv[1], "a+")
fcntl.flock(file, fcntl.LOCK_EX)
file.truncate(0); file.write("4242 otherhost\\n"); file.flush()
print("held", flush=True)
sys.stdin.read()
"""


def hold_claim(run):
    """Another process that owns `run` (as a run started at the same moment would) until its stdin closes."""
    run.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_in_a_claimed_folder_is_refused_naming_the_owner(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    holder = hold_claim(run)
    try:
        assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is in use by another run (PID 4242 on otherhost)" in err and str(run) in err
        assert sorted(path.name for path in run.iterdir()) == [".lock"]  # nothing of the refused run
    finally:
        holder.stdin.close()
        holder.wait()


def test_a_dead_runs_claim_does_not_block_resume_but_a_live_one_does(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 0
    run_folder.release_claim(run)  # as if that run's process had ended
    holder = hold_claim(run)
    try:
        assert main.main(["--resume", str(run), "--epochs", "2"]) == 2
        assert "PID 4242 on otherhost" in capsys.readouterr().err
    finally:
        holder.stdin.close()
        holder.wait()
    # The holder is dead; its "4242 otherhost" is still in the file, and blocks nothing.
    assert main.main(["--resume", str(run), "--epochs", "2"]) == 0


def test_an_existing_read_only_output_dir_is_one_line(tiny_camvid, tmp_path, monkeypatch, capsys):
    run = tmp_path / "read-only"
    run.mkdir()
    run.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: the file system refuses instead
        def read_only(path, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

        monkeypatch.setattr(run_folder, "open", read_only, raising=False)
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"error: --output-dir {run.resolve()} cannot be written") and message.count("\n") == 1
    assert list(run.iterdir()) == []


def test_resume_of_a_run_still_going_is_refused_before_anything_is_said_of_it(tiny_camvid, tmp_path, capsys):
    """A run that has written only its config.json (in its first epoch) would be described as "stopped before its
    first checkpoint: starting it again": the claim is checked first, and the refusal is all that is said."""
    run = tmp_path / "run"
    run.mkdir()
    args, explicit = main.parse_args([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)])
    (run / "config.json").write_text(json.dumps(main.new_run(args, explicit).to_dict()))
    holder = hold_claim(run)
    try:
        assert main.main(["--resume", str(run)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "is in use by another run (PID 4242 on otherhost)" in err
    finally:
        holder.stdin.close()
        holder.wait()


def test_runs_started_in_the_same_second_without_output_dir_get_a_folder_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_folder, "run_dir_name", lambda config: "runs/camvid-unet-resnet18-afma2-20260101-120000")
    args, explicit = main.parse_args([*FAST, "--epochs", "1"])
    config = main.new_run(args, explicit)
    first, second = run_folder.prepare_run_dir(config), run_folder.prepare_run_dir(config)
    assert (first.name, second.name) == ("camvid-unet-resnet18-afma2-20260101-120000",
                                         "camvid-unet-resnet18-afma2-20260101-120000-2")
    assert first.is_dir() and second.is_dir()
