"""AFMA segmentation models: `build_model(arch, encoder_name, encoder_weights, classes, att_depth, patch_size)`."""
from __future__ import annotations

import difflib

import segmentation_models_pytorch as smp

from .afma import AFMA, FactoredAttention, gold_afma, modify_output, patch_attention
from .architectures import ARCHITECTURES, create_smp_model
from .segmentation import AFMASegmentationModel

__all__ = [
    "AFMA", "ARCHITECTURES", "AFMASegmentationModel", "FactoredAttention", "WeightsUnavailable",
    "build_model", "gold_afma", "modify_output", "patch_attention",
]

ATTENTION_DEPTHS = (1, 2, 3, 4, 5)


class WeightsUnavailable(RuntimeError):
    """Pretrained encoder weights were asked for but could not be fetched (offline, unknown tag...)."""


def build_model(
    arch: str,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    classes: int = 12,
    att_depth: int | None = 2,
    patch_size: int = 10,
) -> AFMASegmentationModel:
    """An AFMA model (or, with att_depth None, the plain SMP baseline) for one of the eight architectures.

    Impossible settings raise ValueError naming the option and the allowed values.
    """
    _check_choice("arch", arch, ARCHITECTURES)
    _check_encoder(encoder_name)
    if att_depth is not None and att_depth not in ATTENTION_DEPTHS:
        raise ValueError(f"att_depth={att_depth!r} is not valid: choose one of {ATTENTION_DEPTHS} or None (AFMA off)")
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size={patch_size!r} is not valid: it must be a positive integer (the paper uses 10)")
    if not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes={classes!r} is not valid: at least 2 (the last one is unlabelled/background)")
    net = _create(arch, encoder_name, encoder_weights, classes)
    if att_depth is not None:
        channels = net.encoder.out_channels
        usable = [d for d in ATTENTION_DEPTHS if d < len(channels) and channels[d] > 0]
        if att_depth not in usable:
            raise ValueError(
                f"att_depth={att_depth} is not valid for {arch} with encoder {encoder_name}: its features at that "
                f"depth are {'empty' if att_depth < len(channels) else 'absent'}; choose one of {tuple(usable)}"
            )
    return AFMASegmentationModel(net, classes, att_depth, patch_size, ARCHITECTURES[arch].min_size)


def _create(arch: str, encoder_name: str, encoder_weights: str | None, classes: int):
    try:
        return create_smp_model(arch, encoder_name, encoder_weights, classes)
    except (KeyError, ValueError) as error:  # SMP's word for an unknown weights tag or a bad combination
        message = error.args[0] if error.args else str(error)
        raise ValueError(f"{arch} with encoder {encoder_name} (weights {encoder_weights!r}): {message}") from None
    except Exception as error:  # the hub download: offline, proxy, missing file
        if encoder_weights is None:
            raise
        raise WeightsUnavailable(
            f"could not fetch {encoder_weights!r} weights for encoder {encoder_name} "
            f"({type(error).__name__}); connect to the internet or pre-fill the Hugging Face cache, "
            f"or train from random initialisation with --encoder-weights none"
        ) from None


def _check_choice(option: str, value: str, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{option}={value!r} is not valid{hint}: choose one of {', '.join(choices)}")


def _check_encoder(encoder_name: str) -> None:
    if encoder_name.startswith("tu-"):
        import timm

        if not timm.is_model(encoder_name[3:]):
            raise ValueError(f"encoder_name={encoder_name!r} is not valid: no timm model named {encoder_name[3:]!r}")
        return
    names = smp.encoders.get_encoder_names()
    if encoder_name not in names:
        close = difflib.get_close_matches(encoder_name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"encoder_name={encoder_name!r} is not valid{hint}: choose an SMP encoder "
            f"(segmentation_models_pytorch.encoders.get_encoder_names(), e.g. resnet18, resnet34, resnet50) "
            f"or a timm model as 'tu-<name>'"
        )
