"""The eight architectures of the paper: a name -> SMP class and the few settings that set each apart.

Adding an architecture is one entry here; the AFMA wrapper in `segmentation.py` serves them all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import segmentation_models_pytorch as smp
from segmentation_models_pytorch.base.initialization import initialize_head
from torch import nn
from torchvision.models.resnet import Bottleneck


ENCODER_STRIDE = 32  # the total stride of an SMP encoder's five undilated stages


@dataclass(frozen=True)
class Architecture:
    smp_name: str  # the name smp.create_model() knows
    settings: dict[str, Any] = field(default_factory=dict)  # keyword arguments beyond SMP's defaults
    min_size: int = 1  # the smallest input height/width the decoder can take
    output_stride: int = ENCODER_STRIDE  # the encoder's total stride (dilated encoders stop at 8)
    # The authors' dilation (torchvision's replace_stride_with_dilation): the first block of each dilated stage
    # keeps the previous stage's dilation. SMP's output_stride dilates every block of the stage alike.
    first_block_keeps_dilation: bool = False
    head_kernel_size: int | None = None  # the segmentation head's kernel, where the authors' differs from SMP's


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture("unet"),
    # The authors' UNet++ head is a 1x1 convolution; SMP's is 3x3.
    "unet++": Architecture("unetplusplus", head_kernel_size=1),
    "fpn": Architecture("fpn"),
    "linknet": Architecture("linknet"),
    "manet": Architecture("manet"),
    # PAN's feature pyramid attention halves its stride-16 input three more times.
    "pan": Architecture("pan", min_size=128),
    # The reference PSPNet runs all five encoder stages, dilated to output stride 8 as torchvision dilates a
    # ResNet, and upsamples by 8; SMP's default stops the encoder after stage 3.
    "pspnet": Architecture("pspnet", {"encoder_depth": 5, "output_stride": 8, "upsampling": 8}, output_stride=8,
                           first_block_keeps_dilation=True),
    # SMP's DeepLabV3 already matches the reference: five stages at output stride 8.
    "deeplabv3": Architecture("deeplabv3", output_stride=8),
}


# A network input divisible by this suits every architecture (each model's size_divisor is its output stride).
INPUT_MULTIPLE = math.lcm(*(architecture.output_stride for architecture in ARCHITECTURES.values()))


def feature_stride(arch: str, depth: int) -> int:
    """The stride of the encoder feature at `depth`: 2**depth, until a dilated encoder stops at its output stride."""
    return min(2**depth, ARCHITECTURES[arch].output_stride)


def create_smp_model(arch: str, encoder_name: str, encoder_weights: str | None, classes: int) -> smp.base.SegmentationModel:
    """The plain SMP model for `arch`, logits out (no activation): the AFMA-off baseline."""
    architecture = ARCHITECTURES[arch]
    model = smp.create_model(architecture.smp_name, encoder_name=encoder_name, encoder_weights=encoder_weights,
                             classes=classes, **architecture.settings)
    if architecture.first_block_keeps_dilation:
        keep_previous_dilation(model.encoder)
    if (kernel := architecture.head_kernel_size) is not None:
        conv = model.segmentation_head[0]
        model.segmentation_head[0] = nn.Conv2d(conv.in_channels, conv.out_channels, kernel, padding=kernel // 2)
        initialize_head(model.segmentation_head)  # SMP's initialisation of the head it replaces
    return model


def keep_previous_dilation(encoder: nn.Module) -> None:
    """Give the first block of each dilated ResNet stage the previous stage's dilation, as torchvision does.

    Only the 3x3 convolution of a Bottleneck (ResNet-50 and deeper) changes: torchvision refuses to dilate
    BasicBlocks (ResNet-18/34), so those keep SMP's dilation, and so do encoders that are not ResNets.
    The weights are untouched: dilation and padding are not parameters.
    """
    previous = 1
    for stage in (getattr(encoder, name, None) for name in ("layer3", "layer4")):
        if stage is None or not isinstance(stage[0], Bottleneck):
            return
        conv = stage[0].conv2
        dilation = stage[1].conv2.dilation[0]  # the stage's own dilation, which its later blocks keep
        conv.dilation, conv.padding = (previous, previous), (previous, previous)
        previous = dilation
