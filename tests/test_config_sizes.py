"""--train-size / --eval-size (TRAIN_SIZE / EVAL_SIZE in main.py): the folder data set's crops over its classes
file's, recorded in the model spec's dataset_params so that a checkpoint rebuilds the pipeline with nothing else;
refused by the published data sets (the paper's sizes), by a resumed run that would change them, and when not HxW."""
import json

import pytest
import torch

import main
from tests.data.test_folder_dataset import CLASSES, make_folder
from utils.config import SETTING, check_resume_flags, make_config
from utils.data.transforms import network_size
from utils.apps.evaluate import checkpoint_run
from utils.engine.checkpoint import checkpoint_spec, load_checkpoint
from utils.errors import CheckpointError, UsageError

FOLDER = ["--dataset", "folder", "--encoder", "resnet18", "--scale", "0.5", "--patch-size", "4", "--workers", "0"]
SIZES = ["--train-size", "64x64", "--eval-size", "96X128"]


def new_run(*argv):
    args, explicit = main.parse_args([*FOLDER, *argv])
    return main.new_run(args, explicit)


def refusal(capsys, *argv) -> str:
    """main.py's exit status 2 and its one line."""
    assert main.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()[len("error: "):]


@pytest.fixture
def data(tmp_path):
    return make_folder(tmp_path / "data", size=(80, 100))  # the file's crops: 32x48 and 48x64


def test_the_flags_override_the_classes_files_sizes_and_the_spec_records_them(data):
    config = new_run("--data-dir", str(data), *SIZES)
    assert config.model.dataset_params == CLASSES | {"train_size": [64, 64], "eval_size": [96, 128]}
    assert config.model.train_size == network_size((64, 64), 0.5) == (32, 32)
    assert config.model.eval_size == network_size((96, 128), 0.5) != network_size((48, 64), 0.5)
    assert (config.train_size, config.eval_size) == ("64x64", "96x128")  # config.json's, as the flags' text
    assert config.sources["train_size"] == "flag" and make_config(config.settings(), config.sources) == config
    plain = new_run("--data-dir", str(data))  # no flags: the file's own
    assert plain.model.dataset_params == CLASSES and (plain.train_size, plain.eval_size) == ("", "")
    assert plain.model.train_size == network_size((32, 48), 0.5)
    one = new_run("--data-dir", str(data), "--eval-size", "96x128")  # one flag: the other size stays the file's
    assert (one.model.dataset_params["train_size"], one.model.dataset_params["eval_size"]) == ([32, 48], [96, 128])


def test_the_constants_in_main_py_give_the_sizes_too(data, monkeypatch):
    monkeypatch.setitem(main.DEFAULTS, "train_size", "40x40")
    config = new_run("--data-dir", str(data))
    assert config.model.dataset_params["train_size"] == [40, 40] and config.sources["train_size"] == "default"


@pytest.mark.parametrize("flags, missing", [([], "train_size"), (["--train-size", "64x64"], "eval_size")])
def test_sizes_in_neither_the_classes_file_nor_the_flags_are_refused_in_one_line(data, capsys, flags, missing):
    (data / "classes.json").write_text(json.dumps({k: v for k, v in CLASSES.items() if "size" not in k}))
    flag = SETTING[missing].flag
    message = refusal(capsys, *FOLDER, "--data-dir", str(data), "--output-dir", str(data.parent / "run"), *flags)
    assert message.startswith(f'{data / "classes.json"}: "{missing}" is missing: set it there')
    assert message.endswith(f"or give {flag} HxW") and not (data.parent / "run").exists()
    assert new_run("--data-dir", str(data), *SIZES).model.dataset_params["eval_size"] == [96, 128]


@pytest.mark.parametrize("dataset", ["camvid", "cityscapes", "birds", "skinlesion", "lits"])
def test_the_published_data_sets_refuse_the_size_flags_in_one_line(capsys, dataset):
    message = refusal(capsys, *FOLDER, "--dataset", dataset, "--eval-size", "96x128")
    assert message.startswith(f"--eval-size 96x128 is not valid with --dataset {dataset}: a published data set "
                              f"trains and evaluates at the paper's crop sizes")


def test_a_size_constant_set_in_main_py_is_named_when_a_published_data_set_refuses_it(capsys, monkeypatch):
    monkeypatch.setitem(main.DEFAULTS, "train_size", "64x64")
    message = refusal(capsys, *FOLDER, "--dataset", "camvid")
    assert message.startswith("--train-size 64x64 (main.py's TRAIN_SIZE) is not valid with --dataset camvid")


@pytest.mark.parametrize("value", ["64", "0x64", "64x-1", "axb", "64x64x3", "64x", "1.5x2"])
@pytest.mark.parametrize("flag", ["--train-size", "--eval-size"])
def test_a_size_that_is_not_two_positive_integers_is_refused_naming_the_flag(data, capsys, flag, value):
    message = refusal(capsys, *FOLDER, "--data-dir", str(data), flag, value)
    assert message.startswith(f"{flag} {value!r} is not valid: give the crop as HxW")


def test_a_checkpoint_carries_the_sizes_to_its_evaluation_with_nothing_else(data, tmp_path, capsys):
    config = new_run("--data-dir", str(data), *SIZES)
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "model_spec": config.model.to_dict(), "config": config.to_dict()}, path)
    assert checkpoint_spec(load_checkpoint(path), path).dataset_params == config.model.dataset_params
    (data / "classes.json").unlink()  # the checkpoint alone describes the data set
    args, explicit = main.parse_args(["--checkpoint", str(path), "--data-dir", str(data), "--workers", "0"])
    evaluated, _, _ = checkpoint_run(args, explicit, main.DEFAULTS)
    assert evaluated.model.dataset_params["eval_size"] == [96, 128] and evaluated.model.eval_size == config.model.eval_size
    assert (evaluated.train_size, evaluated.eval_size) == ("64x64", "96x128")
    # The classes file back with its own sizes: the run's flags still rule, as they did in training.
    (data / "classes.json").write_text(json.dumps(CLASSES))
    assert checkpoint_run(args, explicit, main.DEFAULTS)[0].model.dataset_params == config.model.dataset_params
    # On another data set its sizes stay behind: the classes decide (a published data set's sizes are the paper's).
    args, explicit = main.parse_args(["--checkpoint", str(path), "--dataset", "camvid", "--workers", "0"])
    with pytest.raises(CheckpointError, match="--dataset camvid has the classes"):
        checkpoint_run(args, explicit, main.DEFAULTS)
    # The sizes are the checkpoint's: evaluating does not take them.
    assert "leave out --eval-size" in refusal(capsys, "--checkpoint", str(path), "--eval-size", "64x64")


def test_a_resumed_run_keeps_its_sizes(data, tmp_path):
    saved = new_run("--data-dir", str(data), *SIZES)
    check_resume_flags(saved, {"train_size": " 64X64", "eval_size": "96x128"}, tmp_path)  # the same sizes
    with pytest.raises(UsageError, match=r"--train-size \(was '64x64', given '32x32'\) cannot change in a resumed"):
        check_resume_flags(saved, {"train_size": "32x32"}, tmp_path)
    with pytest.raises(UsageError, match="--eval-size"):
        check_resume_flags(saved, {"eval_size": ""}, tmp_path)
    assert not SETTING["train_size"].resumable and not SETTING["eval_size"].resumable
