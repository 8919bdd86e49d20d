"""The eight architectures of the paper: a name -> SMP class and the few settings that set each apart.

Adding an architecture is one entry here; the AFMA wrapper in `segmentation.py` serves them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import segmentation_models_pytorch as smp


@dataclass(frozen=True)
class Architecture:
    smp_name: str  # the name smp.create_model() knows
    settings: dict[str, Any] = field(default_factory=dict)  # keyword arguments beyond SMP's defaults
    min_size: int = 1  # the smallest input height/width the decoder can take
    output_stride: int = 32  # the encoder's total stride (dilated encoders stop at 8)


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture("unet"),
    "unet++": Architecture("unetplusplus"),
    "fpn": Architecture("fpn"),
    "linknet": Architecture("linknet"),
    "manet": Architecture("manet"),
    # PAN's feature pyramid attention halves its stride-16 input three more times.
    "pan": Architecture("pan", min_size=128),
    # The reference PSPNet runs all five encoder stages, dilated to output stride 8, and upsamples by 8;
    # SMP's default stops the encoder after stage 3.
    "pspnet": Architecture("pspnet", {"encoder_depth": 5, "output_stride": 8, "upsampling": 8}, output_stride=8),
    # SMP's DeepLabV3 already matches the reference: five stages at output stride 8.
    "deeplabv3": Architecture("deeplabv3", output_stride=8),
}


def feature_stride(arch: str, depth: int) -> int:
    """The stride of the encoder feature at `depth`: 2**depth, until a dilated encoder stops at its output stride."""
    return min(2**depth, ARCHITECTURES[arch].output_stride)


def create_smp_model(arch: str, encoder_name: str, encoder_weights: str | None, classes: int) -> smp.base.SegmentationModel:
    """The plain SMP model for `arch`, logits out (no activation): the AFMA-off baseline."""
    spec = ARCHITECTURES[arch]
    return smp.create_model(
        spec.smp_name, encoder_name=encoder_name, encoder_weights=encoder_weights, classes=classes, **spec.settings
    )
