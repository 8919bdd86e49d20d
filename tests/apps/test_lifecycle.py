"""A run's life cycle: presets and flags, resume (what may change, extending), restarts, SIGTERM, evaluation."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import main
from tests.conftest import FAST, ROOT
from utils.apps.evaluate import checkpoint_run
from utils.errors import Terminated

pytestmark = pytest.mark.e2e  # runs of main.py: trained, stopped by signals, resumed, evaluated


def run_main(*argv):
    return main.main([*FAST, *map(str, argv)])


def test_explicit_flags_override_the_preset_and_config_records_where_each_value_came_from():
    args, explicit = main.parse_args(["--preset", "paper-declared", "--epochs", "1", "--scale", "0.25", "--encoder-weights", "none"])
    config = main.new_run(args, explicit)
    assert config.epochs == 1 and config.model.scale == 0.25 and config.encoder_weights is None
    assert config.lr == 1e-4 and config.milestones == (400, 500, 700, 800, 900) and config.batch_size == 4
    assert config.sources["epochs"] == "flag" and config.sources["lr"] == "preset paper-declared"
    assert config.sources["arch"] == "default"


def test_resume_extends_a_finished_run_and_takes_the_flags_that_may_change(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    first = json.loads((run / "metrics.json").read_text())
    # Finished: without --epochs there is nothing to do, and saying so is one line.
    capsys.readouterr()
    assert main.main(["--resume", str(run)]) == 2
    assert "--epochs N" in capsys.readouterr().err
    # What the run computes cannot change; naming the flag, the old and the new value.
    assert main.main(["--resume", str(run), "--epochs", "2", "--lr", "0.5"]) == 2
    message = capsys.readouterr().err
    assert "--lr (was 0.001, given 0.5)" in message and "cannot change" in message
    # Its data moved, it runs on the CPU with other workers, and on to epoch 2.
    moved = tmp_path / "moved"
    tiny_camvid.rename(moved)
    assert main.main(["--resume", str(run), "--epochs", "2", "--data-dir", str(moved), "--workers", "0",
                      "--device", "cpu"]) == 0
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and [row["epoch"] for row in last["history"]] == [1, 2]
    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == 2 and config["data_dir"] == str(moved) and config["sources"]["epochs"] == "flag"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["epochs"] == 2 and metrics["earlier"][0]["epochs"] == 1
    assert metrics["earlier"][0]["test_miou"] == first["test"]["miou"]


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    args, explicit = main.parse_args([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)])
    (run / "config.json").write_text(json.dumps(main.new_run(args, explicit).to_dict()))
    assert main.main(["--resume", str(run)]) == 0
    assert "starting it again from epoch 1" in capsys.readouterr().out
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    # The same again through the original command, in a fresh copy of such a folder.
    again = tmp_path / "again"
    again.mkdir()
    (again / "config.json").write_text((run / "config.json").read_text())
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", again) == 0
    assert "stopped before its first checkpoint" in capsys.readouterr().out


def test_sigterm_stops_like_ctrl_c_with_exit_143_and_says_how_to_go_on(tiny_camvid, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "main.py", *FAST, "--data-dir", str(tiny_camvid), "--epochs", "50",
               "--output-dir", str(run)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "last.pt").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err  # the traceback, if it ended any other way
    assert "terminated (SIGTERM)" in err and f"--resume {run}" in err and "Traceback" not in err
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] >= 1


def test_checkpoint_evaluation_takes_the_trained_scale_and_honours_an_explicit_one(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    out = tmp_path / "evaluated"
    assert main.main(["--checkpoint", str(run / "best.pt"), "--data-dir", str(tiny_camvid), "--workers", "0",
                      "--scale", "0.25", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["scale"] == 0.25 and metrics["evaluation"]["trained_scale"] == 0.125
    # the 640x960 crop at 0.25 is 160x240 of frame, padded to 160x256 (a multiple of 32): only the frame is scored
    assert sum(map(sum, metrics["val"]["confusion_matrix"])) == 2 * 160 * 240
    assert "trained at scale 0.125" in capsys.readouterr().out


def test_an_unexpected_error_keeps_its_traceback(tiny_camvid, tmp_path, monkeypatch):
    import utils.apps.train as training

    def broken(*args, **kwargs):
        raise ValueError("a bug, not a usage error")

    monkeypatch.setattr(training, "train_one_epoch", broken)
    try:
        run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", tmp_path / "run")
    except ValueError as error:
        assert "a bug" in str(error)
    else:
        raise AssertionError("a ValueError that is no AFMAError must not be turned into an error line")


def test_a_run_stopped_in_its_final_evaluation_is_finished_by_resume(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    expected = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()  # as if stopped during the test pass
    assert main.main(["--resume", str(run), "--workers", "0"]) == 0
    assert "not its final evaluation" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["test"] == expected["test"]


def test_a_run_with_best_but_no_last_checkpoint_starts_again(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    for name in ("last.pt", "metrics.json", "history.csv"):
        (run / name).unlink()
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    assert "stopped before its first checkpoint" in capsys.readouterr().out


def test_a_checkpoint_trained_on_a_gpu_is_evaluated_with_this_machines_device_and_workers(tiny_camvid, tmp_path):
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    state = torch.load(run / "best.pt", weights_only=True)
    state["config"].update(device="cuda", workers=15)
    torch.save(state, run / "gpu.pt")
    out = tmp_path / "evaluated"
    assert main.main(["--checkpoint", str(run / "gpu.pt"), "--data-dir", str(tiny_camvid), "--workers", "0",
                      "--output-dir", str(out)]) == 0  # on a CPU-only machine too
    args, explicit = main.parse_args(["--checkpoint", str(run / "gpu.pt"), "--data-dir", str(tiny_camvid)])
    config, _, _ = checkpoint_run(args, explicit, main.DEFAULTS)
    assert config.device == ("cuda" if torch.cuda.is_available() else "cpu") and config.workers != 15
    assert config.sources["device"] == "default" and config.sources["scale"] == "checkpoint"


def test_a_non_finite_validation_loss_stops_before_the_epochs_checkpoints(tiny_camvid, tmp_path, monkeypatch, capsys):
    import utils.apps.train as training

    original, calls = training.evaluate, {"n": 0}

    def poisoned(*args, **kwargs):
        result = original(*args, **kwargs)
        calls["n"] += 1
        return {**result, "loss": float("nan")} if calls["n"] == 2 else result

    monkeypatch.setattr(training, "evaluate", poisoned)
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 3, "--save-every", 0, "--output-dir", run) == 2
    assert "validation loss became non-finite after epoch 2" in capsys.readouterr().err
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1


def test_a_stop_while_the_figures_are_drawn_says_so_and_resume_draws_them(tiny_camvid, tmp_path, monkeypatch, capsys):
    """metrics.json is the run's last file: a stop in the last seconds (the figures) leaves a run that --resume
    tests and draws, and the stop's line says so (not a bare "interrupted")."""
    import utils.apps.train as training

    reference = tmp_path / "reference"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", reference) == 0
    drawn = sorted(path.name for path in reference.glob("*.png"))
    real = training.draw_run_figures

    def stopped(run_dir, *args):
        real(run_dir, *args)
        (run_dir / "per_class_iou.png").unlink()  # as if stopped before this one
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "draw_run_figures", stopped)
    run = tmp_path / "run"
    capsys.readouterr()
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"interrupted after the last epoch: {run} is trained to epoch 1 of 1 (last.pt and best.pt are "
                    f"kept) but not yet tested, nor its figures drawn; finish it with: python main.py --resume {run}")
    assert not (run / "metrics.json").exists()
    monkeypatch.setattr(training, "draw_run_figures", real)
    assert main.main(["--resume", str(run), "--workers", "0"]) == 0
    assert sorted(path.name for path in run.glob("*.png")) == drawn
    tested = [json.loads((folder / "metrics.json").read_text())["test"] for folder in (run, reference)]
    assert tested[0] == tested[1]


def test_under_torchrun_the_stop_line_gives_the_torchrun_command_with_the_runs_processes(tmp_path, monkeypatch):
    import utils.run_folder as run_folder

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"epoch": 3, "config": {"epochs": 10}}, run / "last.pt")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    message = str(run_folder.interrupted(run, KeyboardInterrupt()))
    assert message.endswith(f"(epoch 3) is kept; continue with: torchrun --nproc_per_node 2 main.py --resume {run}")
    monkeypatch.setenv("WORLD_SIZE", "8")  # two nodes of 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert "torchrun --nnodes 2 (and your rendezvous flags) --nproc_per_node 4 main.py" in str(
        run_folder.interrupted(run, Terminated()))
