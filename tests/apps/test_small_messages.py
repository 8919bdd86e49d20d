"""The smaller messages of issue 28 that said something untrue: each now says what is so."""
import json

import pytest

import main
from tests.conftest import FAST
from tests.test_errors import offline  # noqa: F401 - the fixture
from utils.network import build_network


def test_resume_given_a_checkpoint_file_names_its_folder(tmp_path, capsys):
    last = tmp_path / "run" / "last.pt"
    last.parent.mkdir()
    last.write_bytes(b"")
    assert main.main(["--resume", str(last)]) == 2
    assert capsys.readouterr().err == f"error: --resume {last} is a file: give the run's folder, --resume {last.parent}\n"


def test_random_init_after_a_failed_fetch_records_why_not_the_preset(offline):  # noqa: F811
    args, explicit = main.parse_args(["--preset", "paper-released", "--allow-random-init", "--encoder", "resnet18"])
    config = main.new_run(args, explicit)
    assert config.encoder_weights == "imagenet" and config.sources["encoder_weights"] == "preset paper-released"
    _, fallen_back = build_network(config)
    assert fallen_back.encoder_weights is None
    assert fallen_back.sources["encoder_weights"] == "--allow-random-init (the weights could not be fetched)"


@pytest.mark.e2e
def test_a_nan_loss_in_the_first_epoch_says_no_checkpoint_was_written(tiny_camvid, tmp_path, monkeypatch, capsys):
    from utils.losses import AFMALoss

    original = AFMALoss.forward
    monkeypatch.setattr(AFMALoss, "forward", lambda self, output, target: original(self, output, target) * float("nan"))
    out = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "2", "--output-dir", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("error: the training loss became non-finite at epoch 1, step 1")
    assert lines[0].endswith("; no checkpoint was written (there was no good epoch): start it again with a lower --lr")
    assert json.loads((out / "config.json").read_text()) and not (out / "last.pt").exists()
