"""hubconf.py through torch.hub.load(source="local"), as another project uses it: every architecture with AFMA, a
saved model loaded back, and a caller whose own `models` package was imported first."""
import sys
import types
from pathlib import Path

import pytest
import torch

from models import ARCHITECTURES, build_model

ROOT = str(Path(__file__).resolve().parents[1])
SMALL = {"encoder_name": "resnet18", "encoder_weights": None, "classes": 3, "patch_size": 4}


@pytest.fixture
def foreign_models(monkeypatch, request):
    """The caller's sys.modules: its own `models` package (or none), none of this project's `models.*`."""
    for name in [name for name in sys.modules if name == "models" or name.startswith("models.")]:
        monkeypatch.delitem(sys.modules, name)
    if request.param == "its own":
        monkeypatch.setitem(sys.modules, "models", types.ModuleType("models"))  # e.g. a Django app's models
    before = set(sys.modules)
    yield request.param
    for name in set(sys.modules) - before:
        if name.startswith("_afma_hub_models_"):
            del sys.modules[name]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_each_architecture_has_an_entry_that_builds_it_with_afma(arch, monkeypatch):
    """Each entry passes its architecture and the caller's arguments to build_model (recorded, not built: some
    architectures want other encoders than resnet18)."""
    import models

    monkeypatch.setattr(models, "build_model", lambda *args, **kwargs: (args, kwargs))
    entry = arch.replace("+", "plus").replace("-", "_")
    args, kwargs = torch.hub.load(ROOT, entry, source="local", encoder_name="tu-x", att_depth=3, classes=5, scale=0.5)
    assert args == (arch, "tu-x", "imagenet", 5, 3, 10) and kwargs == {"scale": 0.5}


def test_an_entry_builds_the_model_with_afma():
    model = torch.hub.load(ROOT, "pspnet", source="local", att_depth=3, **SMALL)
    assert (model.spec.arch, model.spec.att_depth, model.afma_enabled) == ("pspnet", 3, True)


def test_the_generic_entry_takes_the_architecture_by_name():
    model = torch.hub.load(ROOT, "afma", source="local", arch="fpn", **SMALL)
    assert (model.spec.arch, model.spec.encoder_name, model.classes) == ("fpn", "resnet18", 3)


def test_the_from_pretrained_entry_loads_a_saved_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=4).eval()
    model.save_pretrained(tmp_path / "saved")
    loaded = torch.hub.load(ROOT, "from_pretrained", str(tmp_path / "saved"), source="local")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("foreign_models", ["its own", "none"], indirect=True)
def test_entries_work_beside_the_callers_own_models_package_and_leave_it_alone(foreign_models):
    caller = sys.modules.get("models")
    model = torch.hub.load(ROOT, "unet", source="local", **SMALL)
    with torch.no_grad():
        logits, attention = model.eval()(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 3, 64, 64) and attention is not None
    assert sys.modules.get("models") is caller  # neither replaced nor added
    assert not [name for name in sys.modules if name.startswith("models.")]
