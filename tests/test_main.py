"""main.py end to end on tiny data: the run folder, checkpoints, reproducibility, resume, distributed, errors."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import main
from tests.conftest import FAST, ROOT
from utils.errors import UsageError

RUN_FILES = {"config.json", "history.csv", "best.pt", "last.pt", "metrics.json"}
EVALUATE = [flag for flag in FAST if flag not in ("--lr", "1e-3")]  # evaluating a checkpoint refuses --lr


def run_main(*argv):
    return main.main([*FAST, *map(str, argv)])


@pytest.mark.e2e
def test_run_writes_its_folder_and_the_best_checkpoint_reproduces_test_miou(tiny_camvid, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 2, "--output-dir", out) == 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "unet" and config["model"]["att_depth"] == 2 and config["seed"] == 0
    assert config["sources"]["epochs"] == "flag" and config["sources"]["milestones"] == "default"
    assert {"torch", "segmentation_models_pytorch"} <= set(config["versions"]) and config["device"] == "cpu"
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["train_loss"]) > 0 for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val", "test"} <= set(metrics) and metrics["run"]["epochs"] == 2
    for split in (metrics["val"], metrics["test"]):
        assert {"miou", "global_iou", "accuracy", "loss", "per_class_iou"} <= set(split)
        assert list(split["per_class_iou"])[:3] == ["sky", "building", "pole"] and len(split["per_class_iou"]) == 11
    best = torch.load(out / "best.pt", weights_only=True)
    last = torch.load(out / "last.pt", weights_only=True)
    assert best["model_spec"]["arch"] == "unet" and best["model_spec"]["scale"] == 0.125 and last["epoch"] == 2
    assert {"model", "model_spec", "optimizer", "scheduler", "scaler", "epoch", "best_miou", "history", "rng"} <= set(last)
    # Reloading best.pt through the evaluation entry point, with no model flags (not even the run's --scale,
    # --encoder and --patch-size), gives the recorded test mIoU.
    capsys.readouterr()
    evaluated = tmp_path / "evaluated"
    assert main.main(["--data-dir", str(tiny_camvid), "--checkpoint", str(out / "best.pt"), "--workers", "0",
                      "--output-dir", str(evaluated)]) == 0
    again = json.loads((evaluated / "metrics.json").read_text())
    assert again["test"]["miou"] == metrics["test"]["miou"]
    assert again["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert "mIoU" in capsys.readouterr().out


@pytest.mark.e2e
def test_baseline_runs_and_same_seed_gives_identical_metrics(tiny_camvid, tmp_path):
    runs = [tmp_path / name for name in ("a", "b")]
    for out in runs:
        assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--att-depth", "off", "--output-dir", out) == 0
    a, b = (json.loads((out / "metrics.json").read_text()) for out in runs)
    assert a == b
    assert torch.load(runs[0] / "best.pt", weights_only=True)["model_spec"]["att_depth"] is None


@pytest.mark.e2e
def test_killed_run_resumes_to_the_same_weights_and_metrics(tiny_camvid, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 3, "--output-dir", whole) == 0
    command = [sys.executable, "main.py", *FAST, "--data-dir", str(tiny_camvid), "--epochs", "3",
               "--output-dir", str(killed)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (killed / "history.csv").exists():
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # mid-way through epoch 2, with no chance to clean up
    finally:
        process.wait()
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 1
    assert run_main("--resume", killed) == 0
    ours, reference = (torch.load(d / "last.pt", weights_only=True) for d in (killed, whole))
    assert ours["epoch"] == reference["epoch"] == 3
    for key, value in reference["model"].items():
        assert torch.equal(ours["model"][key], value), key
    assert json.loads((killed / "metrics.json").read_text()) == json.loads((whole / "metrics.json").read_text())


@pytest.mark.e2e
def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_checkpoints(tiny_camvid, tmp_path, monkeypatch, capsys):
    from utils.losses import AFMALoss

    original, calls = AFMALoss.forward, {"n": 0}

    def poisoned(self, output, target):
        loss = original(self, output, target)
        if self.training and torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 2:  # epoch 2 (one step per epoch with two images), step 1
                return loss * float("nan")
        return loss

    monkeypatch.setattr(AFMALoss, "forward", poisoned)
    out = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 3, "--output-dir", out) == 2
    message = capsys.readouterr().err
    assert "non-finite" in message and "epoch 2, step 1" in message
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert (out / "best.pt").exists() and not (out / "metrics.json").exists()


@pytest.mark.serial
@pytest.mark.e2e
def test_two_process_gloo_evaluation_equals_one_process(tiny_camvid, tmp_path):
    run = tmp_path / "run"
    assert run_main("--data-dir", tiny_camvid, "--epochs", 1, "--output-dir", run) == 0
    # Three val images so that the two ranks get unequal shards.
    extra = sorted((tiny_camvid / "val").iterdir())[0]
    for folder in ("val", "valannot"):
        (tiny_camvid / folder / "extra.png").write_bytes((tiny_camvid / folder / extra.name).read_bytes())
    single, double = tmp_path / "single", tmp_path / "double"
    assert main.main([*EVALUATE, "--data-dir", str(tiny_camvid), "--checkpoint", str(run / "best.pt"), "--output-dir",
                      str(single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "main.py", *EVALUATE, "--data-dir", str(tiny_camvid), "--checkpoint", str(run / "best.pt"),
               "--output-dir", str(double)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = (json.loads((d / "metrics.json").read_text()) for d in (single, double))
    assert sum(map(sum, one["val"]["confusion_matrix"])) == 3 * 90 * 120  # the 90x120 frames, not the 96x128 padded crops
    assert two["val"]["confusion_matrix"] == one["val"]["confusion_matrix"]
    assert two["test"]["confusion_matrix"] == one["test"]["confusion_matrix"]


@pytest.mark.serial
@pytest.mark.e2e
def test_two_process_training_runs(tiny_camvid, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
               "main.py", *FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert result.stdout.count("epoch 1/1") == 1  # only rank 0 speaks


# ------------------------------------------------------------------------------------------- presets
def preset_config(*argv):
    args, explicit = main.parse_args([*argv, "--scale", "0.25", "--encoder-weights", "none"])
    return main.new_run(args, explicit)


def test_paper_released_runs_the_constant_rate_and_paper_declared_the_milestones():
    released, declared = preset_config("--preset", "paper-released"), preset_config("--preset", "paper-declared")
    assert released.milestones == () and released.to_dict()["lr_schedule"] == "constant 0.0001"
    assert declared.milestones == (400, 500, 700, 800, 900)
    assert declared.to_dict()["lr_schedule"] == "0.0001, x0.5 at epochs 400, 500, 700, 800, 900"
    for config in (released, declared):
        assert config.epochs == 1000 and config.lr == 1e-4 and config.batch_size == config.global_batch_size == 4


def test_under_torchrun_a_preset_keeps_its_global_batch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = preset_config("--preset", "paper-released")
    assert config.batch_size == 2 and config.global_batch_size == 4
    assert config.to_dict()["global_batch_size"] == 4 and config.to_dict()["batch_size"] == 2
    explicit = preset_config("--preset", "paper-released", "--batch-size", "3")  # a flag is per process
    assert explicit.batch_size == 3 and explicit.global_batch_size == 6


def test_under_torchrun_a_preset_batch_that_does_not_divide_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UsageError, match=r"global batch of 4 does not divide among 3 processes: use --nproc_per_node "
                                         r"1 or 2 or 4, or give --batch-size"):
        preset_config("--preset", "paper-declared")
