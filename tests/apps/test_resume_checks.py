"""What a resume refuses, and the requeue of the same command: a run records what it trained on (each split's
files, the number of processes and the global batch); --resume on other data or another number of processes is
refused in one line unless --allow-changed-run; --resume-if-exists (and a torchrun restart) continues the run in
--output-dir when it is this command's, and says a finished one is done."""
import json

import pytest
import torch

import main
import utils.run_folder as run_folder
from tests.conftest import FAST
from utils.errors import Terminated

pytestmark = pytest.mark.e2e  # every test here trains a run to resume


def run_main(*argv):
    return main.main([*FAST, *map(str, argv)])


@pytest.fixture
def trained(tiny_camvid, tmp_path):
    """A finished one-epoch run, whose last.pt records what it trained on."""
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    return run


def snapshot(run):
    return {path.name: path.stat().st_mtime_ns for path in run.iterdir()}


def refused(capsys, run, *argv):
    """--resume RUN --epochs 2 ... refused with one error line and nothing written; returns the line."""
    before = snapshot(run)
    assert main.main(["--resume", str(run), "--epochs", "2", *map(str, argv)]) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"error: --resume {run}: ") and message.count("\n") == 1, message
    assert message.rstrip().endswith("pass --allow-changed-run to resume anyway")
    assert snapshot(run) == before
    return message


def test_the_run_records_what_it_trained_on(trained):
    record = torch.load(trained / "last.pt", weights_only=True)["trained_on"]
    assert record["world_size"] == 1 and record["global_batch_size"] == 2
    assert {split: entry["files"] for split, entry in record["data"].items()} == {"train": 2, "val": 2, "test": 2}
    assert json.loads((trained / "config.json").read_text())["trained_on"] == record


def test_a_resume_on_a_split_with_a_pair_deleted_is_refused_naming_the_split(trained, tiny_camvid, capsys):
    for split in ("train", "val"):
        pair = [sorted((tiny_camvid / folder).iterdir())[0] for folder in (split, f"{split}annot")]
        saved = [path.read_bytes() for path in pair]
        for path in pair:
            path.unlink()
        message = refused(capsys, trained)
        assert f"the {split} split has 1 files, the run was trained with 2" in message
        for path, data in zip(pair, saved):
            path.write_bytes(data)


def test_a_split_with_the_same_count_but_other_files_is_refused(trained, tiny_camvid, capsys):
    for folder in ("val", "valannot"):
        image = sorted((tiny_camvid / folder).iterdir())[0]
        image.rename(image.with_name("renamed.png"))
    assert "the val split's 2 file names differ" in refused(capsys, trained)


def test_another_number_of_processes_is_refused_and_the_flag_resumes_saying_so(trained, capsys):
    state = torch.load(trained / "last.pt", weights_only=True)
    state["trained_on"] |= {"world_size": 2, "global_batch_size": 4}  # as if trained by torchrun, 2 processes
    torch.save(state, trained / "last.pt")
    assert "1 processes (global batch 2), the run was trained by 2 (global batch 4)" in refused(capsys, trained)
    assert main.main(["--resume", str(trained), "--epochs", "2", "--allow-changed-run"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "--allow-changed-run" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: --allow-changed-run: resuming {trained} although 1 processes")
    assert torch.load(trained / "last.pt", weights_only=True)["epoch"] == 2


def test_resume_if_exists_continues_the_same_command_and_says_a_finished_run_is_done(trained, tiny_camvid, capsys):
    command = [*FAST, "--data-dir", str(tiny_camvid), "--output-dir", str(trained)]
    capsys.readouterr()
    assert main.main([*command, "--epochs", "2"]) == 2  # a plain re-launch is refused
    assert "not an empty folder" in capsys.readouterr().err
    before = snapshot(trained)
    assert main.main([*command, "--epochs", "1", "--resume-if-exists"]) == 0
    assert "already trained and tested its 1 epochs: nothing to do" in capsys.readouterr().out
    assert snapshot(trained) == before  # no second evaluation, no second metrics.json
    assert main.main([*command, "--epochs", "1", "--lr", "0.5", "--resume-if-exists"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "holds a run with other settings (--lr 0.001 there, 0.5 now)" in message
    assert main.main([*command, "--epochs", "2", "--resume-if-exists"]) == 0  # resumable towards 2 epochs
    assert f"resuming {trained} after epoch 1 of 2" in capsys.readouterr().out
    assert json.loads((trained / "metrics.json").read_text())["run"]["epochs"] == 2


def test_a_torchrun_restart_continues_the_run_of_its_output_dir(trained, tiny_camvid, monkeypatch, capsys):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert run_main("--data-dir", tiny_camvid, "--epochs", 2, "--output-dir", trained) == 0
    assert f"resuming {trained} after epoch 1 of 2" in capsys.readouterr().out


def test_only_rank_0_reports_errors_and_stops(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    assert main.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: --resume")


def test_the_stop_message_names_the_epoch_the_folder_holds_on_every_rank(trained):
    # Every rank says what last.pt holds, not what its own saver wrote (ranks other than 0 write nothing).
    message = str(run_folder.interrupted(trained, Terminated(), 2))  # stopped while being trained on to epoch 2
    assert f"{trained / 'last.pt'} (epoch 1) is kept; continue with: python main.py --resume {trained}" in message
    (trained / "last.pt").unlink()
    assert "before the first checkpoint" in str(run_folder.interrupted(trained, KeyboardInterrupt()))
