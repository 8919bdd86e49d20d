"""torch.hub entry points: AFMA on any of the project's architectures, and a saved model loaded back.

    model = torch.hub.load("OWNER/REPO", "unet", encoder_name="resnet34", classes=12, att_depth=2)
    model = torch.hub.load("OWNER/REPO", "afma", arch="fpn", classes=5)
    model = torch.hub.load("OWNER/REPO", "from_pretrained", "afma-unet")   # a folder, or a hub id "user/model"

(or a clone: torch.hub.load("path/to/clone", ..., source="local")). torch.hub puts the repository on sys.path
while it imports this file, and the project's package is called `models`, as many projects' own packages are:
so it is loaded here under a private name, never as `models`, and works whatever `models` the caller has
imported, and leaves the caller's `models` alone.
"""
import hashlib as _hashlib
import importlib.util as _importlib_util
import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "segmentation_models_pytorch"]

_PACKAGE = _Path(__file__).resolve().parent / "models"


def _models():
    """This repository's `models` package: the one already imported from here, else a private copy."""
    init = _PACKAGE / "__init__.py"
    imported = _sys.modules.get("models")
    if imported is not None and _Path(getattr(imported, "__file__", "") or "").resolve() == init:
        return imported
    name = f"_afma_hub_models_{_hashlib.sha1(str(_PACKAGE).encode()).hexdigest()[:10]}"
    if name not in _sys.modules:
        spec = _importlib_util.spec_from_file_location(name, init, submodule_search_locations=[str(_PACKAGE)])
        module = _importlib_util.module_from_spec(spec)
        _sys.modules[name] = module  # before running it: its relative imports look the package up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del _sys.modules[name]
            raise
    return _sys.modules[name]


def afma(arch="unet", encoder_name="resnet34", encoder_weights="imagenet", classes=12, att_depth=2, patch_size=10,
         **inputs):
    """A segmentation model with Across Feature Map Attention: build_model(arch, ...) of the AFMA project.

    arch: one of the project's architectures (unet, unet++, fpn, linknet, manet, pan, pspnet, deeplabv3, ...);
    encoder_name: any SMP encoder, or "tu-<timm model>"; encoder_weights: "imagenet" (as SMP's default; fetched
    from the Hugging Face hub) or None; classes: a count or the class names, the last one unlabelled/background;
    att_depth: the encoder depth AFMA attends to (1-5), None for the plain SMP model; patch_size: 10 in the paper.
    forward(x) returns (logits, attention).
    """
    return _models().build_model(arch, encoder_name, encoder_weights, classes, att_depth, patch_size, **inputs)


def from_pretrained(name, **options):
    """A model saved by save_pretrained (or tools/save_pretrained.py), from its folder or a hub id "user/model";
    in eval mode. options: device, revision, cache_dir, token, force_download, local_files_only."""
    return _models().SegmentationModel.from_pretrained(name, **options)


def _entry(arch):
    def build(encoder_name="resnet34", encoder_weights="imagenet", classes=12, att_depth=2, patch_size=10, **inputs):
        return afma(arch, encoder_name, encoder_weights, classes, att_depth, patch_size, **inputs)

    build.__name__ = build.__qualname__ = _entry_name(arch)
    build.__doc__ = f"{arch} with AFMA: afma(arch={arch!r}, ...) (see afma's help for the arguments)."
    return build


def _entry_name(arch):
    return arch.replace("+", "plus").replace("-", "_")


# One entry per architecture, named after it ("unet++" -> unetplusplus).
for _arch in _models().ARCHITECTURES:
    globals()[_entry_name(_arch)] = _entry(_arch)
