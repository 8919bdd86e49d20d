"""Bad input: one clear line naming the file or option, exit status 2, and nothing written."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

import main
from tests.conftest import FAST


def fails(capsys, out, *argv, flags=FAST):
    """Run main.py, assert it failed cleanly without writing `out`, and return its one-line message."""
    assert main.main([*flags, "--output-dir", str(out), *map(str, argv)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message
    assert not out.exists(), "a failed run must not write its folder"
    return message


def first(root, folder):
    return sorted((root / folder).iterdir())[0]


def test_missing_data_folder(tmp_path, capsys):
    assert str(tmp_path / "nowhere") in fails(capsys, tmp_path / "out", "--data-dir", tmp_path / "nowhere")


def test_empty_split(tiny_camvid, tmp_path, capsys):
    for folder in ("train", "trainannot"):
        shutil.rmtree(tiny_camvid / folder)
        (tiny_camvid / folder).mkdir()
    assert "no train images" in fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid)


def test_image_without_label_names_both(tiny_camvid, tmp_path, capsys):
    label = first(tiny_camvid, "trainannot")
    label.unlink()
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid)
    assert str(label) in message and str(tiny_camvid / "train" / label.name) in message


def test_label_without_image_names_both(tiny_camvid, tmp_path, capsys):
    image = first(tiny_camvid, "val")
    image.unlink()
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid)
    assert str(image) in message and str(tiny_camvid / "valannot" / image.name) in message


def test_corrupt_image(tiny_camvid, tmp_path, capsys):
    image = first(tiny_camvid, "test")
    image.write_bytes(image.read_bytes()[:2000])  # truncated PNG
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid)
    assert str(image) in message and "corrupt" in message


def test_image_and_label_of_different_sizes(tiny_camvid, tmp_path, capsys):
    label = first(tiny_camvid, "valannot")
    cv2.imwrite(str(label), np.zeros((360, 480), np.uint8))
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid)
    assert str(label) in message and "360" in message and "720" in message


def test_label_value_out_of_range(tiny_camvid, tmp_path, capsys):
    label = first(tiny_camvid, "trainannot")
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[5, 5] = 17
    cv2.imwrite(str(label), values)
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid)
    assert str(label) in message and "17" in message


def test_size_the_model_cannot_take(tiny_camvid, tmp_path, capsys):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--arch", "pan", "--att-depth", "off")
    assert "--scale 0.125" in message and "64x96" in message and "nearest valid size is 128x128" in message


def test_patch_that_cannot_fit_is_refused_before_any_memory_is_allocated(tiny_camvid, tmp_path, capsys):
    """A 200x200 patch would need a 40000 x 80000 patch transform (12.8 GB): refused from the sizes alone."""
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--patch-size", "200")
    assert "--patch-size 200" in message and "at most 16" in message and "--scale" in message
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--att-depth", "5")
    assert "--patch-size 4" in message and "stride 32" in message and "--scale than 0.125" in message


@pytest.mark.parametrize("option,value,words", [
    ("--arch", "unet3", ["arch='unet3'", "deeplabv3"]),
    ("--encoder", "resnet19", ["encoder_name='resnet19'"]),
    ("--dataset", "kitti", ["--dataset 'kitti'", "cityscapes"]),
    ("--att-depth", "7", ["--att-depth '7'", "off"]),
    ("--epochs", "0", ["--epochs 0"]),
    ("--milestones", "0,5", ["--milestones '0,5'", "1 or more"]),
    ("--milestones", "-3", ["--milestones '-3'", "1 or more"]),
    ("--device", "cuda:0" if not torch.cuda.is_available() else "tpu", ["--device"]),
])
def test_unknown_settings(tiny_camvid, tmp_path, capsys, option, value, words):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, option, value)
    assert all(word in message for word in words), message


@pytest.fixture
def trained(tiny_camvid, tmp_path):
    run = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 0
    return run


@pytest.mark.e2e
def test_checkpoint_of_another_model(trained, tiny_camvid, tmp_path, capsys):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--checkpoint", trained / "best.pt", "--arch", "fpn",
                    flags=())
    assert str(trained / "best.pt") in message and "arch='unet'" in message and "arch='fpn'" in message
    assert "--arch" in message
    state = torch.load(trained / "best.pt", weights_only=True)
    state["model_spec"]["classes"] = state["model_spec"]["classes"][:5]
    torch.save(state, trained / "five.pt")
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--checkpoint", trained / "five.pt", flags=())
    assert "five.pt" in message and "classes" in message


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["evaluate", "predict", "resume"])
def test_truncated_checkpoint(trained, tiny_camvid, tmp_path, capsys, mode):
    name = "last.pt" if mode == "resume" else "best.pt"
    checkpoint = trained / name
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    before = sorted(p.name for p in trained.iterdir())
    argv = {"evaluate": ["--data-dir", tiny_camvid, "--checkpoint", checkpoint],
            "predict": ["--predict", first(tiny_camvid, "test"), "--checkpoint", checkpoint],
            "resume": ["--resume", trained, "--output-dir", trained]}[mode]  # --output-dir: the run's own
    message = fails(capsys, tmp_path / "out", *argv, flags=())
    assert str(checkpoint) in message and "corrupt" in message
    assert sorted(p.name for p in trained.iterdir()) == before


@pytest.mark.e2e
def test_existing_run_folder_is_not_overwritten(trained, tiny_camvid, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained.iterdir()}
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--output-dir", str(trained)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in trained.iterdir()} == before


@pytest.fixture
def offline(monkeypatch):
    """The Hugging Face hub out of reach, at once (the real client retries for most of a minute)."""
    import segmentation_models_pytorch.encoders as encoders

    def unreachable(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(encoders, "hf_hub_download", unreachable)


def test_unreachable_weights_stop_the_run_in_one_line(offline, tiny_camvid, tmp_path, capsys):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--encoder-weights", "imagenet")
    assert "'imagenet' weights for encoder resnet18" in message and "--allow-random-init" in message


def test_unreachable_weights_stop_a_comparison_before_its_folder(offline, tiny_camvid, tmp_path, capsys):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--compare", "unet", "--encoder-weights",
                    "imagenet")
    assert "'imagenet' weights for encoder resnet18" in message and "--allow-random-init" in message


@pytest.mark.e2e
def test_unreachable_weights_fall_back_to_random_init_when_allowed(offline, tiny_camvid, tmp_path, capsys):
    out = tmp_path / "out"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--encoder-weights", "imagenet",
                      "--allow-random-init", "--output-dir", str(out)]) == 0
    assert "training from random initialisation instead" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["encoder_weights"] is None


@pytest.mark.e2e
def test_resuming_and_evaluating_a_pretrained_run_need_no_download(offline, trained, tiny_camvid, tmp_path):
    """Their weights are in the checkpoint: an offline node resumes and evaluates an ImageNet-initialised run."""
    for name in ("last.pt", "best.pt"):
        state = torch.load(trained / name, weights_only=True)
        state["config"]["encoder_weights"] = "imagenet"
        torch.save(state, trained / name)
    assert main.main(["--resume", str(trained), "--epochs", "2", "--workers", "0"]) == 0
    assert torch.load(trained / "last.pt", weights_only=True)["config"]["encoder_weights"] == "imagenet"
    assert main.main(["--checkpoint", str(trained / "best.pt"), "--data-dir", str(tiny_camvid), "--workers", "0",
                      "--output-dir", str(tmp_path / "evaluated")]) == 0


@pytest.mark.parametrize("argv,words", [
    (["--lr", "inf"], ["--lr inf", "positive number"]),
    (["--scale", "0"], ["--scale 0", "between"]),
    (["--resume", "x", "--compare", "unet"], ["--resume and --compare", "one of them"]),
    (["--checkpoint", "x.pt", "--compare", "unet"], ["--compare and --checkpoint"]),
])
def test_impossible_combinations_are_refused(tiny_camvid, tmp_path, capsys, argv, words):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, *argv)
    assert all(word in message for word in words), message


def test_an_output_folder_that_cannot_be_made_is_one_line(tiny_camvid, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--output-dir", str(blocker / "run")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: --output-dir") and "cannot be created" in message and "\n" not in message


def test_resume_of_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main.main(["--resume", str(tmp_path)]) == 2
    message = capsys.readouterr().err.strip()
    assert "does not hold the settings of a run" in message and "\n" not in message


@pytest.mark.e2e
def test_predict_refuses_contradicting_flags_and_bad_scales(trained, tiny_camvid, tmp_path, capsys):
    image = first(tiny_camvid, "test")
    for extra, words in ((["--arch", "fpn"], "contradicts"), (["--scale", "0.001"], "--scale 0.001")):
        out = tmp_path / "predicted"
        assert main.main(["--predict", str(image), "--checkpoint", str(trained / "best.pt"), "--output-dir",
                          str(out), *extra]) == 2
        assert words in capsys.readouterr().err and not out.exists()


def test_compare_checks_every_model_against_its_crops_before_training(tiny_camvid, tmp_path, capsys):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--compare", "all")
    assert message.startswith("error: pan:") and "for its decoder" in message and "--scale" in message


@pytest.mark.e2e
def test_a_checkpoint_with_a_nonsense_model_spec_is_one_line(trained, tiny_camvid, tmp_path, capsys):
    state = torch.load(trained / "best.pt", weights_only=True)
    state["model_spec"]["classes"] = []
    torch.save(state, trained / "nonsense.pt")
    for argv in (["--data-dir", tiny_camvid, "--checkpoint", trained / "nonsense.pt"],
                 ["--predict", first(tiny_camvid, "test"), "--checkpoint", trained / "nonsense.pt"]):
        message = fails(capsys, tmp_path / "out", *argv, flags=())
        assert "nonsense.pt" in message and "classes" in message


def test_deeplabv3_with_batches_of_one_is_refused_before_the_run_folder(tiny_camvid, tmp_path, capsys):
    message = fails(capsys, tmp_path / "out", "--data-dir", tiny_camvid, "--arch", "deeplabv3", "--batch-size", 1,
                    "--epochs", 1)
    assert "--batch-size 2" in message


@pytest.mark.e2e
def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_keeps_the_earlier_ones(tiny_camvid, tmp_path,
                                                                                        monkeypatch, capsys):
    import errno

    import utils.engine.checkpoint as checkpoints

    run = tmp_path / "run"
    real, calls = checkpoints.torch.save, []

    def save(state, file):
        calls.append(state["epoch"])
        if len(calls) > 2:  # epoch 1's best.pt and last.pt are written; the next write finds the disk full
            file.write(b"part of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(state, file)

    monkeypatch.setattr(checkpoints.torch, "save", save)
    argv = [*FAST, "--data-dir", str(tiny_camvid), "--epochs", "2", "--save-every", "0", "--output-dir", str(run)]
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
