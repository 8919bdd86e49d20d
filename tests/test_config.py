"""The settings table (utils/config.py SETTINGS) drives main.py's flags, its defaults, the config and what a
resume may change; make_config checks without printing or reaching the hub; each action refuses what it ignores."""
import json

import pytest
import torch

import main
import utils.config as config_module
from models import ATTENTION_DEPTHS
from tests.conftest import FAST, ROOT
from utils.apps.evaluate import checkpoint_run
from utils.config import SETTING, SETTINGS, Setting, check_checkpoint_flags, check_resume_flags, \
    make_config, setting_defaults
from utils.errors import UsageError
from utils.losses import AFMALoss


def new_run(*argv):
    args, explicit = main.parse_args([*argv, "--encoder", "resnet18", "--scale", "0.25"])
    return main.new_run(args, explicit)


def test_every_setting_has_its_flag_its_type_and_its_default_in_the_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # one line per flag: argparse would break the paths at their hyphens
    with pytest.raises(SystemExit):
        main.parse_args(["--help"])
    text = capsys.readouterr().out
    samples = {str: "x", int: "3", float: "0.5"}
    for setting in SETTINGS:
        default = main.DEFAULTS[setting.name]
        assert f"{setting.help} (default: {default if default != '' else 'none'})" in text, setting.name
        if setting.type is bool:
            assert main.parse_args([f"--no-{setting.flag[2:]}"])[1] == {setting.name: False}
            assert main.parse_args([setting.flag])[1] == {setting.name: True}
        else:
            assert main.parse_args([setting.flag, samples[setting.type]])[1] == {
                setting.name: setting.type(samples[setting.type])}


def test_a_config_gives_its_settings_back_and_records_the_flags_given():
    config = new_run("--ce-weight", "2", "--mse-weight", "3")
    assert list(config.settings()) == [s.name for s in SETTINGS]
    assert make_config(config.settings(), config.sources) == config  # settings() gives the config back
    assert config.to_dict()["ce_weight"] == 2 and config.to_dict()["mse_weight"] == 3
    assert config.sources["ce_weight"] == "flag" and config.sources["lr"] == "default"


def test_an_attention_depth_reads_the_same_wherever_it_is_typed(tmp_path):
    """--att-depth's text and the model's depth convert in its row alone: a new run, a resume, a checkpoint's
    model and the flags --compare passes on agree, whichever spelling of off was typed."""
    row = SETTING["att_depth"]
    assert [row.value(row.text(depth)) for depth in (None, *ATTENTION_DEPTHS)] == [None, *ATTENTION_DEPTHS]
    baseline = new_run("--att-depth", "OFF")
    assert baseline.model.att_depth is None and baseline.settings()["att_depth"] == "off"
    check_resume_flags(baseline, {"att_depth": "none"}, tmp_path)  # the same depth: accepted
    check_checkpoint_flags(baseline.model, {"att_depth": "Off"}, tmp_path / "best.pt")
    with pytest.raises(UsageError, match="--att-depth 2 contradicts"):
        check_checkpoint_flags(baseline.model, {"att_depth": "2"}, tmp_path / "best.pt")
    with pytest.raises(UsageError, match="--att-depth '7' is not valid"):
        new_run("--att-depth", "7")


def test_a_resumed_run_may_change_exactly_the_settings_marked_resumable(tmp_path):
    saved = new_run()
    for setting in SETTINGS:
        value = saved.settings()[setting.name]
        other = (not value) if setting.type is bool else f"{value}9" if setting.type is str else value + 1
        if setting.resumable or setting.name == "output_dir":  # output_dir: the run's own folder, checked apart
            check_resume_flags(saved, {setting.name: other}, tmp_path)
        else:
            with pytest.raises(UsageError, match=setting.flag):
                check_resume_flags(saved, {setting.name: other}, tmp_path)


def test_a_setting_without_its_constant_in_main_py_is_named():
    with pytest.raises(NameError, match="no constant CE_WEIGHT"):
        setting_defaults({key: value for key, value in vars(main).items() if key != "CE_WEIGHT"})


def test_a_new_table_line_is_a_flag_and_needs_its_constant(monkeypatch):
    monkeypatch.setattr(config_module, "SETTINGS", (*SETTINGS, Setting("new_knob", int, "a new knob")))
    monkeypatch.setattr(main, "SETTINGS", config_module.SETTINGS)
    with pytest.raises(NameError, match="NEW_KNOB"):
        setting_defaults(vars(main))
    monkeypatch.setattr(main, "DEFAULTS", setting_defaults(vars(main) | {"NEW_KNOB": 7}))
    assert main.parse_args(["--new-knob", "3"])[1] == {"new_knob": 3}


@pytest.fixture
def no_hub(monkeypatch):
    """Any use of the hub (the name look-up, a download) fails the test."""
    import socket

    import segmentation_models_pytorch.encoders as encoders

    def hub(*args, **kwargs):
        raise AssertionError("make_config reached the hub")

    monkeypatch.setattr(encoders, "hf_hub_download", hub)
    monkeypatch.setattr(socket, "getaddrinfo", hub)


@pytest.mark.parametrize("fallback", [[], ["--allow-random-init"]])
def test_make_config_neither_prints_nor_reaches_the_hub(no_hub, capsys, fallback):
    config = new_run("--encoder-weights", "imagenet", *fallback)
    assert config.encoder_weights == "imagenet"  # fetched, or fallen back from, when the network is built
    assert capsys.readouterr() == ("", "")


def test_the_network_gets_the_pretrained_weights_and_their_normalisation(monkeypatch):
    """build_network, not make_config, reads the weights' normalisation (their config on the hub)."""
    import utils.network as network

    def normalisation(encoder, weights):
        return ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)) if weights else ((0.1, 0.1, 0.1), (0.2, 0.2, 0.2))

    built = []
    monkeypatch.setattr(config_module, "normalisation", normalisation)
    monkeypatch.setattr(network, "build_model", lambda **kwargs: built.append(kwargs))
    config = new_run("--encoder-weights", "imagenet")
    assert config.model.mean == (0.1, 0.1, 0.1)  # random initialisation's, until the weights are fetched
    _, fetched = network.build_network(config)
    assert fetched.model.mean == tuple(built[-1]["mean"]) == (0.5, 0.5, 0.5) and built[-1]["encoder_weights"] == "imagenet"
    _, resumed = network.build_network(config, pretrained=False)  # its weights and spec are the checkpoint's
    assert resumed == config and "encoder_weights" not in built[-1]


def test_an_unknown_weights_tag_is_refused_without_the_hub(no_hub):
    with pytest.raises(UsageError, match="--encoder-weights bogus is not valid.*has imagenet"):
        new_run("--encoder-weights", "bogus")


def test_loss_weights_are_the_literal_weighted_sum():
    torch.manual_seed(0)
    from models import build_model

    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=4).double()
    output = model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    target = torch.randint(0, 3, (1, 64, 64))
    nll, mse = (AFMALoss(ce_weight=c, mse_weight=m)(output, target) for c, m in ((1.0, 0.0), (0.0, 1.0)))
    assert nll.item() == AFMALoss()((output[0], None), target).item()  # the baseline's loss: the NLL alone
    assert AFMALoss(ce_weight=2.5, mse_weight=0.75)(output, target).item() == pytest.approx(
        2.5 * nll.item() + 0.75 * mse.item(), rel=1e-12)
    assert AFMALoss(ce_weight=2.5)(output, target).item() != AFMALoss()(output, target).item()


@pytest.mark.e2e
def test_loss_weights_reach_the_criterion_of_training_and_evaluation(tiny_camvid, tmp_path, monkeypatch):
    import utils.engine.setup as setup

    made = []

    class Recording(AFMALoss):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append((self.ce_weight, self.mse_weight))

    monkeypatch.setattr(setup, "AFMALoss", Recording)  # the loss of training and evaluation alike (prepare_run)
    run = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--ce-weight", "2.5", "--mse-weight",
                      "0.5", "--output-dir", str(run)]) == 0
    assert made == [(2.5, 0.5)]
    config = json.loads((run / "config.json").read_text())
    assert (config["ce_weight"], config["mse_weight"]) == (2.5, 0.5) and config["sources"]["ce_weight"] == "flag"
    # Evaluating the checkpoint reports the loss it was trained with, or the one a flag gives.
    for extra, expected in (([], (2.5, 0.5)), (["--ce-weight", "1"], (1.0, 0.5))):
        evaluated, _, _ = checkpoint_run(*main.parse_args(["--checkpoint", str(run / "best.pt"), *extra]), main.DEFAULTS)
        assert (evaluated.ce_weight, evaluated.mse_weight) == expected
    assert main.main(["--checkpoint", str(run / "best.pt"), "--data-dir", str(tiny_camvid), "--workers", "0"]) == 0
    assert made[-1] == (2.5, 0.5)


def test_a_resumed_run_refuses_other_loss_weights(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    saved = new_run("--data-dir", str(tiny_camvid), "--epochs", "1", "--workers", "0")  # had it been taken: seconds
    (run / "config.json").write_text(json.dumps(saved.to_dict()))
    assert main.main(["--resume", str(run), "--ce-weight", "2"]) == 2
    message = capsys.readouterr().err
    assert "--ce-weight (was 5.0, given 2.0) cannot change in a resumed run" in message
    assert not (run / "last.pt").exists()


@pytest.mark.parametrize("action,words", [
    (["--predict", "photo.png", "--checkpoint", "missing.pt"],
     "error: --predict takes its model from --checkpoint: leave out --dataset, --epochs, --lr, --workers (it uses "
     "only --scale, --device, --output-dir, --tile, --tile-overlap)"),
    (["--checkpoint", "missing.pt"],
     "error: --checkpoint missing.pt evaluates the model it holds: leave out --epochs, --lr (it uses only --dataset, "
     "--data-dir, --batch-size, --ce-weight, --mse-weight, --scale, --device, --amp, --tf32, --seed, "
     "--deterministic, --workers, --output-dir)"),
])
def test_evaluating_and_predicting_refuse_the_training_flags_they_would_ignore(capsys, action, words):
    assert main.main([*action, "--dataset", "camvid", "--epochs", "3", "--lr", "0.1", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == words


def test_evaluating_and_predicting_take_the_flags_they_use(capsys):
    """These reach the checkpoint (missing here), the model flags to be checked against it."""
    assert main.main(["--predict", "photo.png", "--checkpoint", "missing.pt", "--device", "cpu", "--scale", "0.5",
                      "--output-dir", "out", "--arch", "unet"]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main.main(["--checkpoint", "missing.pt", "--data-dir", "data", "--batch-size", "3", "--workers", "0",
                      "--ce-weight", "1", "--amp", "--arch", "unet"]) == 2
    message = capsys.readouterr().err
    assert "missing.pt" in message and "leave out" not in message
    assert main.main(["--checkpoint", "missing.pt", "--preset", "paper-released"]) == 2
    assert "leave out --preset paper-released" in capsys.readouterr().err


def test_the_default_data_dir_is_main_pys_wherever_it_runs_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert new_run().data_dir == str(ROOT / "dataset" / "camvid")
    (tmp_path / "here").mkdir()
    assert new_run("--data-dir", "here").data_dir == "here"  # a path typed is the working folder's
    monkeypatch.setitem(main.DEFAULTS, "data_dir", str(tmp_path / "nowhere"))
    assert main.main([*FAST, "--epochs", "1"]) == 2
    message = capsys.readouterr().err.strip()
    assert message == (f"error: the default --data-dir {tmp_path / 'nowhere'} is missing: it should be the camvid "
                       f"data set's root folder (set DATA_DIR in main.py or pass --data-dir)")
    with pytest.raises(UsageError, match=r"--data-dir elsewhere \(the run's\) is missing: .* pass --data-dir"):
        make_config(main.DEFAULTS | {"data_dir": "elsewhere"}, {"data_dir": "run"})


def test_negative_loss_weights_are_refused():
    with pytest.raises(UsageError, match="--mse-weight -1.0 is not valid"):
        new_run("--mse-weight", "-1")


@pytest.mark.parametrize("argv,constants,weights", [
    ([], {}, (main.CE_WEIGHT, main.MSE_WEIGHT)),  # main.py's constants
    (["--ce-weight", "2.5", "--mse-weight", "0.5"], {}, (2.5, 0.5)),
    ([], {"ce_weight": 3.0, "mse_weight": 0.25}, (3.0, 0.25)),  # the constants edited
])
def test_a_runs_loss_has_the_runs_loss_weights(monkeypatch, argv, constants, weights):
    """The loss of training and evaluation (prepare_run) is built with the config's weights, not AFMALoss's own."""
    from models import build_model
    from utils.engine.setup import prepare_run

    for key, value in constants.items():
        monkeypatch.setitem(main.DEFAULTS, key, value)
    config = new_run(*argv)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=4)
    criterion = prepare_run(model, torch.device("cpu"), config).criterion
    assert (criterion.ce_weight, criterion.mse_weight) == (config.ce_weight, config.mse_weight) == weights
