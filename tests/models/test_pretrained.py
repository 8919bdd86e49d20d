"""save_pretrained / from_pretrained / push_to_hub, SMP's own methods on an AFMA model, and the command that turns
a run's best.pt into a saved-model folder."""
import json
import os
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file

from models import PretrainedError, SegmentationModel, build_model
from models import hub
from tools import save_pretrained as tool

SIZE = 64


def trained_like(att_depth=2, **spec):
    """A small model whose weights and batch-norm statistics are far from their initial values, as after training
    (AFMA's initial weights barely move the logits, so an AFMA module lost on the way would go unnoticed)."""
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=("road", "pole", "void"), att_depth=att_depth, patch_size=4,
                        **spec)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    model.train()(torch.rand(2, 3, SIZE, SIZE))  # moves the running statistics
    return model.eval()


def outputs(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        logits, attention = model(torch.rand(2, 3, SIZE, SIZE))
    return logits, attention


def test_a_saved_model_loads_back_as_the_same_model_with_equal_output(tmp_path):
    model = trained_like(dataset="camvid", train_size=(64, 96), eval_size=(96, 128), mean=(0.5, 0.5, 0.5))
    model.save_pretrained(tmp_path / "saved")
    assert sorted(path.name for path in (tmp_path / "saved").iterdir()) == ["config.json", "model.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert {path.stat().st_mode & 0o777 for path in (tmp_path / "saved").iterdir()} == {0o666 & ~umask}  # as open()

    loaded = SegmentationModel.from_pretrained(tmp_path / "saved")
    assert loaded.spec == model.spec and not loaded.training
    (logits, attention), (again, attention_again) = outputs(model), outputs(loaded)
    assert torch.equal(logits, again) and torch.equal(attention.dense(), attention_again.dense())
    # The comparison can tell: the same model with the AFMA module as built gives other logits.
    fresh = build_model(**model.spec.to_dict()).eval()
    fresh.load_state_dict({key: value for key, value in model.state_dict().items() if not key.startswith("afma.")},
                          strict=False)
    assert (outputs(fresh)[0] - logits).abs().max() > 1e-3


def test_smp_own_save_of_the_inner_network_is_refused_naming_the_call(tmp_path, monkeypatch):
    model = trained_like()
    with pytest.raises(PretrainedError, match=r"without its AFMA weights.*model\.save_pretrained"):
        model.net.save_pretrained(tmp_path / "net")
    monkeypatch.setattr(hub, "HfApi", lambda **kwargs: pytest.fail("push_to_hub reached the hub"))
    with pytest.raises(PretrainedError, match=r"model\.push_to_hub"):
        model.net.push_to_hub("user/afma-unet")
    assert not (tmp_path / "net").exists()


def test_the_baseline_network_saves_with_smp_as_before(tmp_path):
    """Without AFMA the inner network is the whole model: SMP's own round trip stays open."""
    model = trained_like(att_depth=None)
    model.net.save_pretrained(tmp_path / "net")
    assert torch.equal(smp.from_pretrained(tmp_path / "net").eval()(torch.ones(1, 3, SIZE, SIZE)),
                       model.net(torch.ones(1, 3, SIZE, SIZE)))


def test_smp_from_pretrained_refuses_an_afma_folder_naming_the_loader(tmp_path):
    trained_like().save_pretrained(tmp_path / "saved")
    with pytest.raises(AttributeError, match=r"models\.SegmentationModel\.from_pretrained"):
        smp.from_pretrained(tmp_path / "saved")


def test_an_smp_folder_is_refused_naming_smp_loader(tmp_path):
    smp.Unet("resnet18", encoder_weights=None, classes=3).save_pretrained(tmp_path / "smp")
    with pytest.raises(PretrainedError, match=r"plain SMP Unet .*segmentation_models_pytorch\.from_pretrained"):
        SegmentationModel.from_pretrained(tmp_path / "smp")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").unlink(), r"has no config\.json"),
    (lambda d: (d / "model.safetensors").unlink(), r"has no model\.safetensors"),
    (lambda d: write(d / "config.json", "{arch: unet"), r"cannot be read as JSON"),
    (lambda d: write(d / "config.json", "[1, 2]"), r"not a saved AFMA model's config \(not a JSON object\)"),
    (lambda d: write(d / "config.json", json.dumps({"hidden_size": 768})), r"unknown model spec fields"),
    (lambda d: write(d / "config.json", json.dumps({"_model_class": "AFMA, worded otherwise", "hidden_size": 768})),
     r"unknown model spec fields \['hidden_size'\]"),
    (lambda d: write(d / "config.json", json.dumps({"arch": "unet", "encoder_name": "resnet18",
                                                    "classes": ["a"]})), r"classes=1 is not valid"),
    (lambda d: save_file({"net.weight": torch.zeros(1)}, d / "model.safetensors"), r"does not fit .*missing"),
    (lambda d: write(d / "model.safetensors", "truncated"), r"cannot be loaded into the model"),
])
def test_a_damaged_folder_is_one_line_naming_the_file(tmp_path, damage, message):
    folder = tmp_path / "saved"
    trained_like().save_pretrained(folder)
    damage(folder)
    with pytest.raises(PretrainedError, match=message) as caught:
        SegmentationModel.from_pretrained(folder)
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)


def test_weights_of_another_model_are_refused(tmp_path):
    trained_like().save_pretrained(tmp_path / "saved")
    other = build_model("unet", "resnet18", None, classes=5, att_depth=2, patch_size=4)
    save_file({key: value.contiguous() for key, value in other.state_dict().items()},
              tmp_path / "saved" / "model.safetensors")
    with pytest.raises(PretrainedError, match=r"cannot be loaded into the model .*size mismatch"):
        SegmentationModel.from_pretrained(tmp_path / "saved")


def test_a_missing_path_that_cannot_be_a_hub_id_is_one_line(tmp_path):
    with pytest.raises(PretrainedError, match=r"no such folder, and not a hub model id"):
        SegmentationModel.from_pretrained(tmp_path / "runs" / "nothing-here")


def test_a_file_is_not_a_folder(tmp_path):
    write(tmp_path / "model.safetensors", "")
    with pytest.raises(PretrainedError, match=r"is a file: give the folder"):
        SegmentationModel.from_pretrained(tmp_path / "model.safetensors")


class FakeHub:
    """HfApi as push_to_hub uses it; upload_folder copies the folder into `remote` (the repository's files)."""

    def __init__(self, remote):
        self.remote, self.calls = remote, []

    def __call__(self, token=None):
        self.calls.append(("HfApi", token))
        return self

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, repo_type, revision, commit_message, create_pr):
        self.calls.append(("upload_folder", repo_id, repo_type, commit_message))
        for path in Path(folder_path).iterdir():
            (self.remote / path.name).write_bytes(path.read_bytes())
        return "commit-url"


def test_push_to_hub_uploads_the_saved_folder_in_one_commit(tmp_path, monkeypatch):
    remote = tmp_path / "remote"
    remote.mkdir()
    fake = FakeHub(remote)
    monkeypatch.setattr(hub, "HfApi", fake)
    monkeypatch.setattr(hub, "hub_unreachable", lambda: False)
    model = trained_like()
    assert model.push_to_hub("user/afma-unet", private=True, token="secret") == "commit-url"
    assert [call[0] for call in fake.calls] == ["HfApi", "create_repo", "upload_folder"]
    assert fake.calls[1] == ("create_repo", "user/afma-unet", True, True)
    assert torch.equal(outputs(SegmentationModel.from_pretrained(remote))[0], outputs(model)[0])


def test_push_to_hub_offline_is_one_line_at_once(monkeypatch):
    monkeypatch.setattr(hub, "HfApi", lambda **kwargs: pytest.fail("push_to_hub tried the network"))
    monkeypatch.setattr(hub, "hub_unreachable", lambda: True)
    with pytest.raises(PretrainedError, match=r"cannot push to user/afma-unet: .* cannot be resolved"):
        trained_like().push_to_hub("user/afma-unet")


# ------------------------------------------------------------------------ tools/save_pretrained.py RUN/best.pt DIR
def best_pt(tmp_path, model):
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    torch.save({"model": model.state_dict(), "model_spec": model.spec.to_dict(), "config": {}, "epoch": 3}, path)
    return path


def test_the_command_turns_best_pt_into_a_folder_that_loads(tmp_path, capsys):
    model = trained_like()
    assert tool.main([str(best_pt(tmp_path, model)), str(tmp_path / "afma-unet")]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = SegmentationModel.from_pretrained(tmp_path / "afma-unet")
    assert torch.equal(outputs(loaded)[0], outputs(model)[0])
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no staging left


@pytest.mark.parametrize("case, message", [
    ("missing checkpoint", "does not exist"),
    ("folder not empty", "already exists and is not an empty folder"),
    ("not a checkpoint", "cannot be read as a checkpoint"),
    ("disk full", "cannot be written (No space left on device)"),
])
def test_the_command_fails_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, case, message):
    checkpoint, target = best_pt(tmp_path, trained_like()), tmp_path / "afma-unet"
    if case == "missing checkpoint":
        checkpoint = tmp_path / "run" / "nope.pt"
    elif case == "folder not empty":
        write(target / "notes.txt", "mine")
    elif case == "not a checkpoint":
        write(checkpoint, "not a zip")
    else:
        def full_disk(model, directory):  # the weights are written, then the config's write fails
            write(directory / "model.safetensors", "weights")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(SegmentationModel, "save_pretrained", full_disk)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    assert tool.main([str(checkpoint), str(target)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before
