"""Pretrained weights, and saved AFMA models, on a node without a network: the cache at once, or one clear error
at once."""
import json
import socket

import pytest
import segmentation_models_pytorch as smp
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from models import PretrainedError, SegmentationModel, WeightsUnavailable, build_model, normalisation
from models.hub import hub_unreachable


@pytest.fixture
def no_dns(monkeypatch):
    """No host name resolves (what an offline node sees), and no proxy is set."""
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_the_hub_counts_as_unreachable_only_without_name_resolution_and_without_a_proxy(no_dns, monkeypatch):
    assert hub_unreachable()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # the proxy resolves names for us
    assert not hub_unreachable()
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [])
    assert not hub_unreachable()


def test_missing_weights_fail_at_once_with_one_message_naming_the_host(no_dns, hub_cache, monkeypatch):
    lookups, fail = [], socket.getaddrinfo  # the no_dns fixture's

    def counted(host, *args, **kwargs):
        lookups.append(host)
        return fail(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    with pytest.raises(WeightsUnavailable, match="huggingface.co cannot be resolved and they are not cached"):
        build_model("unet", "resnet18", "imagenet", classes=3, att_depth=2)
    with pytest.raises(WeightsUnavailable, match="huggingface.co cannot be resolved"):
        normalisation("resnet18", "imagenet")
    # At once: one look-up of the host per call, then the cache alone; the hub's own retries (about 25 s of them)
    # would look it up again at every try.
    assert lookups == ["huggingface.co", "huggingface.co"]
    assert constants.HF_HUB_OFFLINE is False  # offline mode was for the call only


def test_cached_weights_load_offline(no_dns, hub_cache):
    settings = smp.encoders.encoders["resnet18"]["pretrained_settings"]["imagenet"]
    snapshot = (hub_cache / f"models--{settings['repo_id'].replace('/', '--')}" / "snapshots" / settings["revision"])
    snapshot.mkdir(parents=True)
    torch.manual_seed(0)
    weights = smp.encoders.get_encoder("resnet18", weights=None).state_dict()
    save_file({key: value.contiguous() for key, value in weights.items()}, snapshot / "model.safetensors")
    (snapshot / "config.json").write_text(json.dumps({"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}))

    model = build_model("unet", "resnet18", "imagenet", classes=3, att_depth=2)
    loaded = model.net.encoder.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in weights.items() if key in loaded)
    assert normalisation("resnet18", "imagenet") == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))


# ------------------------------------------------------------------------ a saved AFMA model from the hub's cache
def saved_model(folder):
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=4).eval()
    model.save_pretrained(folder)
    return model


def test_a_hub_model_that_is_not_cached_fails_at_once_with_one_line(no_dns, hub_cache):
    with pytest.raises(PretrainedError, match="huggingface.co cannot be resolved and it is not cached") as caught:
        SegmentationModel.from_pretrained("someone/afma-unet")
    assert "\n" not in str(caught.value)
    assert constants.HF_HUB_OFFLINE is False


def test_a_cached_hub_model_loads_offline(no_dns, hub_cache):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repository = hub_cache / "models--someone--afma-unet"
    model = saved_model(repository / "snapshots" / commit)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)

    loaded = SegmentationModel.from_pretrained("someone/afma-unet")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
