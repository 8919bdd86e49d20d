"""AFMA segmentation models.

    model = build_model("unet", "resnet34", "imagenet", classes=12, att_depth=2)
    model = build_model(**model.spec.to_dict())        # the same model again, from what a checkpoint holds
    model.save_pretrained("afma-unet")                 # config.json + model.safetensors, as SMP's models
    model = SegmentationModel.from_pretrained("afma-unet")   # or a hub id, "user/afma-unet"
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from contextlib import nullcontext

import segmentation_models_pytorch as smp

from .afma import AFMA, FactoredAttention, gold_afma, modify_output, patch_attention
from .architectures import ARCHITECTURES, check_encoder_fits, create_smp_model, feature_channels, feature_stride
from .hub import PretrainedError, hub_access, hub_host
from .segmentation import SegmentationModel
from .spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, SettingError, per_channel, variant_name

__all__ = [
    "AFMA", "ARCHITECTURES", "ATTENTION_DEPTHS", "FactoredAttention", "ModelSpec", "PretrainedError",
    "SegmentationModel", "SettingError", "WeightsUnavailable", "build_model", "check_encoder_fits", "check_weights",
    "gold_afma", "modify_output", "normalisation", "patch_attention", "per_channel", "variant_name",
]

ATTENTION_DEPTHS = (1, 2, 3, 4, 5)


class WeightsUnavailable(RuntimeError):
    """Pretrained encoder weights were asked for but could not be fetched (offline, proxy, missing file)."""


def build_model(
    arch: str,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    classes: int | Sequence[str] = 12,
    att_depth: int | None = 2,
    patch_size: int = 10,
    **inputs,
) -> SegmentationModel:
    """An AFMA model (or, with att_depth None, the plain SMP baseline) for one of SMP's twelve architectures.

    `classes` is a count or the class names (the last is unlabelled / background). `inputs` are the other
    fields of `ModelSpec` (in_channels, dataset, scale, train_size, eval_size, mean, std): `in_channels` (3
    unless given) is SMP's, and the AFMA image branch takes as many; the others are kept in `model.spec`, so that a
    checkpoint can rebuild the model and prepare its inputs; with train/eval sizes given, a patch that cannot
    fit them is refused here, before any memory is allocated for it.
    Impossible settings raise `SettingError` (a ValueError) naming the option and the allowed values.
    """
    names = tuple(f"class{i}" for i in range(classes)) if isinstance(classes, int) else tuple(classes)
    spec = ModelSpec(arch, encoder_name, names, att_depth, patch_size, **inputs)
    check_spec(spec)
    net = _create(arch, encoder_name, encoder_weights, len(names), spec.in_channels)
    if att_depth is not None:
        channels = feature_channels(net, spec.in_channels)
        usable = [d for d in ATTENTION_DEPTHS if d < len(channels) and channels[d] > 0]
        if att_depth not in usable:
            raise SettingError("att_depth", att_depth, f"{arch} with encoder {encoder_name} has "
                               f"{'empty' if att_depth < len(channels) else 'no'} features at that depth; "
                               f"choose one of {tuple(usable)}")
    return SegmentationModel(net, spec, ARCHITECTURES[arch].min_size)


def check_spec(spec: ModelSpec) -> None:
    """Everything about a spec that can be checked without building the network."""
    _check_choice("arch", spec.arch, ARCHITECTURES)
    _check_encoder(spec.encoder_name)
    if (reason := check_encoder_fits(spec.arch, spec.encoder_name)) is not None:
        raise SettingError("encoder_name", spec.encoder_name, reason)
    if not isinstance(spec.in_channels, int) or isinstance(spec.in_channels, bool) or spec.in_channels < 1:
        raise SettingError("in_channels", spec.in_channels, "the number of image channels, 1 or more (3: RGB)")
    for name in ("mean", "std"):
        if len(getattr(spec, name)) != spec.in_channels:
            raise SettingError(name, getattr(spec, name), f"give one value per input channel ({spec.in_channels})")
    if min(spec.std) <= 0:
        raise SettingError("std", spec.std, "every standard deviation must be positive")
    if spec.att_depth is not None and spec.att_depth not in ATTENTION_DEPTHS:
        raise SettingError("att_depth", spec.att_depth, f"choose one of {ATTENTION_DEPTHS} or None (AFMA off)")
    if not isinstance(spec.patch_size, int) or spec.patch_size < 1:
        raise SettingError("patch_size", spec.patch_size, "it must be a positive integer (the paper uses 10)")
    if len(spec.classes) < 2:
        raise SettingError("classes", len(spec.classes), "at least 2 (the last one is unlabelled/background)")
    sizes = [size for size in (spec.train_size, spec.eval_size) if size]
    if spec.att_depth is not None and sizes:
        stride = feature_stride(spec.arch, spec.att_depth)
        smallest = min(min(size) for size in sizes)
        if spec.patch_size * stride > smallest:
            raise SettingError("patch_size", spec.patch_size, f"at attention depth {spec.att_depth} the feature map "
                               f"has stride {stride}, so a {spec.patch_size}x{spec.patch_size} patch needs inputs of at "
                               f"least {spec.patch_size * stride} pixels, and the smallest input here is {smallest}; "
                               f"use a patch of at most {max(1, smallest // stride)}")


def normalisation(encoder_name: str, encoder_weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean and std (0..1 pixel scale) the encoder's weights expect; ImageNet's for random init."""
    if encoder_weights is None:
        return IMAGENET_MEAN, IMAGENET_STD
    with hub_access() as cache_only:
        try:
            params = smp.encoders.get_preprocessing_params(encoder_name, pretrained=encoder_weights)
        except (KeyError, ValueError) as error:
            raise SettingError("encoder_weights", encoder_weights, f"encoder {encoder_name} has no such weights "
                               f"({error.args[0] if error.args else error})") from None
        except OSError as error:  # SMP fetches the weights' config.json from the hub
            raise weights_unavailable(encoder_name, encoder_weights, error, cache_only) from error
    return tuple(params["mean"]), tuple(params["std"])


def check_weights(encoder_name: str, encoder_weights: str | None) -> None:
    """The encoder has pretrained weights of that tag: known without the hub (SMP's encoder table, timm's
    configs), so that a wrong tag is refused before anything is fetched."""
    if encoder_weights is None:
        return
    if encoder_name.startswith("tu-"):  # timm's pretrained variant is part of the name; SMP ignores the tag
        import timm

        if not timm.models.is_model_pretrained(encoder_name[3:]):
            raise SettingError("encoder_weights", encoder_weights, f"timm model {encoder_name[3:]} has no "
                               f"pretrained weights; use none (random initialisation)")
        return
    tags = list(smp.encoders.encoders[encoder_name]["pretrained_settings"])
    if encoder_weights not in tags:
        raise SettingError("encoder_weights", encoder_weights, f"encoder {encoder_name} has "
                           f"{', '.join(tags) or 'no pretrained weights'}; or none (random initialisation)")


def weights_unavailable(encoder_name: str, encoder_weights: str, error: Exception,
                        cache_only: bool = False) -> WeightsUnavailable:
    why = f"{hub_host()} cannot be resolved and they are not cached" if cache_only else type(error).__name__
    return WeightsUnavailable(
        f"could not fetch {encoder_weights!r} weights for encoder {encoder_name} ({why}); connect "
        f"to the internet or pre-fill the Hugging Face cache, or train from random initialisation with "
        f"--encoder-weights none"
    )


def _create(arch: str, encoder_name: str, encoder_weights: str | None, classes: int, in_channels: int = 3):
    with hub_access() if encoder_weights else nullcontext(False) as cache_only:
        try:
            return create_smp_model(arch, encoder_name, encoder_weights, classes, in_channels)
        except (KeyError, ValueError) as error:  # SMP's word for an unknown weights tag or a bad combination
            message = error.args[0] if error.args else str(error)
            option, value = ("encoder_weights", encoder_weights) if encoder_weights else ("encoder_name", encoder_name)
            raise SettingError(option, value, f"{arch} with encoder {encoder_name}: {message}") from None
        except TypeError as error:  # a timm CNN under DPT: its constructor refuses the ViT's keywords
            if not ARCHITECTURES[arch].vit:
                raise
            raise SettingError("encoder_name", encoder_name, f"{arch} takes a timm ViT encoder, and {encoder_name} is "
                               f"not one ({error}); e.g. tu-vit_tiny_patch16_224") from None
        except OSError as error:  # the download: offline, proxy, HTTP error, a missing file in the hub's cache
            if encoder_weights is None:
                raise
            raise weights_unavailable(encoder_name, encoder_weights, error, cache_only) from error


def _check_choice(option: str, value: str, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingError(option, value, f"choose one of {', '.join(choices)}", hint)


def _check_encoder(encoder_name: str) -> None:
    if encoder_name.startswith("tu-"):
        import timm

        if not timm.is_model(encoder_name[3:]):
            raise SettingError("encoder_name", encoder_name, f"no timm model is named {encoder_name[3:]!r}")
        return
    names = smp.encoders.get_encoder_names()
    if encoder_name not in names:
        close = difflib.get_close_matches(encoder_name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SettingError("encoder_name", encoder_name, "choose an SMP encoder (segmentation_models_pytorch."
                           "encoders.get_encoder_names(), e.g. resnet18, resnet34, resnet50) or a timm model as "
                           "'tu-<name>'", hint)
