"""Checkpoints: the saver's policy, the spec round trip, the random-state round trip, atomic files."""
import json
import math
import os
import random

import numpy as np
import pytest
import torch

from models import build_model
from utils.engine.checkpoint import CheckpointSaver, Progress, adopt_newer_best, load_checkpoint, load_model, save
from utils.run_folder import Stage, run_status
from utils.engine.seeding import rng_state, set_rng_state
from utils.errors import CheckpointError
from utils.files import write_json


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_state(epoch, miou=0.5):
    return lambda: {"model": {"w": torch.tensor([float(epoch)])}, "model_spec": {}, "config": {}, "epoch": epoch,
                    "history": [{"val_miou": miou}]}


def test_saver_writes_last_after_the_first_epoch_then_every_n_minutes_and_at_the_end(tmp_path):
    clock = Clock()
    saver = CheckpointSaver(tmp_path, save_every_minutes=5, clock=clock)
    written = []
    for epoch, minute in [(1, 1), (2, 3), (3, 5.5), (4, 7), (5, 11), (6, 12)]:
        clock.now = minute * 60
        names = [p.name for p in saver.after_epoch(epoch, epoch == 6, False, fake_state(epoch))]
        if "last.pt" in names:
            written.append(epoch)
    assert written == [1, 4, 6]  # 1: the first; 4: 6 minutes after epoch 1; not 5 (4 after 4); 6: the last
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 6


def test_saver_writes_best_only_when_improved_and_every_epoch_with_zero_minutes(tmp_path):
    saver = CheckpointSaver(tmp_path, save_every_minutes=0)
    assert [p.name for p in saver.after_epoch(1, False, True, fake_state(1, 0.3))] == ["best.pt", "last.pt"]  # best first: last.pt names its epoch
    assert saver.last_epoch == 1
    assert [p.name for p in saver.after_epoch(2, False, False, fake_state(2, 0.2))] == ["last.pt"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and best["val_miou"] == 0.3 and "optimizer" not in best
    assert CheckpointSaver(tmp_path / "none", 0, enabled=False).after_epoch(1, True, True, fake_state(1)) == []


def test_a_checkpoint_rebuilds_its_own_model_from_its_spec(tmp_path):
    torch.manual_seed(0)
    model = build_model("fpn", "resnet18", None, classes=("a", "b", "void"), att_depth=3, patch_size=4,
                        dataset="camvid", scale=0.25, train_size=(128, 160), eval_size=(160, 256))
    save({"model": model.state_dict(), "model_spec": model.spec.to_dict(), "config": {}, "epoch": 3}, tmp_path / "m.pt")
    rebuilt, state = load_model(tmp_path / "m.pt")
    assert rebuilt.spec == model.spec and state["epoch"] == 3
    x = torch.randn(1, 3, 64, 64)
    model.eval(), rebuilt.eval()
    assert torch.equal(model(x)[0], rebuilt(x)[0])


def test_checkpoints_without_a_spec_or_corrupt_are_refused_naming_the_file(tmp_path):
    torch.save({"model": {}, "config": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="old.pt.*no model spec"):
        load_checkpoint(tmp_path / "old.pt")
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match="bad.pt.*corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_random_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's state
    save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(1)) == expected


def test_files_follow_the_umask_and_json_has_null_for_nan(tmp_path):
    old = os.umask(0o022)
    try:
        save({"x": torch.zeros(1)}, tmp_path / "a.pt")
        write_json(tmp_path / "m.json", {"miou": math.nan, "iou": {"pole": float("inf"), "road": 0.5}})
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and json.loads(text) == {"miou": None, "iou": {"pole": None, "road": 0.5}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "m.json"]  # no temporary file left


def test_run_status_names_each_stage_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    assert run_status(run).stage() is Stage.EMPTY
    run.mkdir()
    (run / ".lock").write_text("1 host\n")
    assert run_status(run).stage() is Stage.EMPTY  # a claim alone: nothing of a run yet
    (run / "notes.txt").write_text("mine")
    assert run_status(run).stage() is Stage.FOREIGN
    (run / "config.json").write_text("{}")
    assert run_status(run).stage() is Stage.STARTED
    save(fake_state(2)() | {"config": {"epochs": 3}}, run / "last.pt")
    status = run_status(run)
    assert status.epoch == 2 and status.stage() is Stage.RESUMABLE and status.stage(2) is Stage.TRAINED
    (run / "metrics.json").write_text("{}")
    assert run_status(run).stage(2) is Stage.FINISHED and run_status(run).stage(4) is Stage.RESUMABLE


def test_a_best_checkpoint_newer_than_last_is_the_best_so_far_at_resume(tmp_path, capsys):
    # Killed between best.pt (epoch 3) and last.pt (epoch 2): if the re-trained epoch 3 scores lower (a
    # non-deterministic GPU), best.pt is not rewritten, so the resumed run must already count best.pt's epoch 3.
    save({"model": {}, "model_spec": {}, "config": {}, "epoch": 3, "val_miou": 0.7}, tmp_path / "best.pt")
    progress = adopt_newer_best(Progress(2, 0.5, 1, [], []), tmp_path / "best.pt")
    assert (progress.best_miou, progress.best_epoch) == (0.7, 3)
    assert "holds epoch 3, after last.pt's epoch 2" in capsys.readouterr().out
    kept = adopt_newer_best(Progress(3, 0.7, 3, [], []), tmp_path / "best.pt")  # the usual case: nothing newer
    assert (kept.best_miou, kept.best_epoch) == (0.7, 3)
    save({"model": {}, "model_spec": {}, "config": {}, "epoch": 3, "val_miou": math.nan}, tmp_path / "best.pt")
    unlabelled = adopt_newer_best(Progress(2, -1.0, 1, [], []), tmp_path / "best.pt")  # no score to keep
    assert (unlabelled.best_miou, unlabelled.best_epoch) == (-1.0, 1)
