"""SMP 0.6's twelve architectures (the paper's eight and four more): a name -> SMP class and the few settings
that set each apart.

Adding an architecture is one entry here; the AFMA wrapper in `segmentation.py` serves them all. A ViT encoder
(DPT's) gives its block outputs, all at one stride, and its prefix tokens: `encode` lays them out as a CNN
encoder's features (the image first, then depth 1, 2, ...), so that AFMA's depth d is the d-th feature map
everywhere.
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
    vit: bool = False  # a ViT encoder ('tu-' timm ViTs only): every feature at the one stride `output_stride`
    input_multiple: int | None = None  # inputs must be multiples of this; None: of the encoder's output stride
    batch_norm_pooling: bool = False  # batch-normalises an image-pooled 1x1 map: training needs batches of 2+


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture("unet"),
    # The authors' UNet++ head is a 1x1 convolution; SMP's is 3x3.
    "unet++": Architecture("unetplusplus", head_kernel_size=1),
    "fpn": Architecture("fpn"),
    "linknet": Architecture("linknet"),
    "manet": Architecture("manet"),
    # PAN's feature pyramid attention halves its stride-16 input three more times, and pools it to 1x1.
    "pan": Architecture("pan", min_size=128, batch_norm_pooling=True),
    # The reference PSPNet runs all five encoder stages, dilated to output stride 8 as torchvision dilates a
    # ResNet, and upsamples by 8; SMP's default stops the encoder after stage 3.
    "pspnet": Architecture("pspnet", {"encoder_depth": 5, "output_stride": 8, "upsampling": 8}, output_stride=8,
                           first_block_keeps_dilation=True),
    # SMP's DeepLabV3 already matches the reference: five stages at output stride 8.
    "deeplabv3": Architecture("deeplabv3", output_stride=8, batch_norm_pooling=True),
    # Beyond the paper, as SMP 0.6 builds them. DeepLabV3+ dilates its last stage (output stride 16).
    "deeplabv3+": Architecture("deeplabv3plus", output_stride=16, batch_norm_pooling=True),
    "upernet": Architecture("upernet", batch_norm_pooling=True),
    "segformer": Architecture("segformer"),  # SMP's default encoder here is resnet34; the paper's Segformer: mit_b0..b5
    # DPT takes a timm ViT of patch 16 (e.g. tu-vit_tiny_patch16_224), at any input size a multiple of 16.
    # Its decoder also halves the stride-16 features and adds them back upsampled: inputs are multiples of 32.
    "dpt": Architecture("dpt", {"dynamic_img_size": True}, output_stride=16, vit=True, input_multiple=32),
}
# The paper's eight, the rows of its tables (the ledger and the speed benchmark cover these).
PAPER_ARCHITECTURES = ("unet", "unet++", "fpn", "linknet", "manet", "pan", "pspnet", "deeplabv3")


# A network input divisible by this suits every architecture (each model's size_divisor is its output stride).
INPUT_MULTIPLE = math.lcm(*(a.input_multiple or a.output_stride for a in ARCHITECTURES.values()))


def size_divisor(arch: str, encoder: nn.Module) -> int:
    """What every input height and width of `arch` with this encoder must be a multiple of."""
    return ARCHITECTURES[arch].input_multiple or encoder.output_stride


def feature_stride(arch: str, depth: int) -> int:
    """The stride of the encoder feature at `depth`: 2**depth, until a dilated encoder stops at its output stride
    (a ViT's features all have its patch stride)."""
    architecture = ARCHITECTURES[arch]
    return architecture.output_stride if architecture.vit else min(2**depth, architecture.output_stride)


def check_encoder_fits(arch: str, encoder_name: str) -> str | None:
    """Why `arch` cannot take this encoder, known without building it; None if it can."""
    if ARCHITECTURES[arch].vit and not encoder_name.startswith("tu-"):
        return (f"{arch} takes a timm ViT encoder, 'tu-<name>' (e.g. tu-vit_tiny_patch16_224, or SMP's default "
                f"tu-vit_base_patch16_224.augreg_in21k)")
    return None


def feature_channels(net: nn.Module, in_channels: int) -> list[int]:
    """The channels of `encode`'s features: the image's, then depth 1, 2, ... (0: an empty depth, e.g. MiT's 1)."""
    channels = list(net.encoder.out_channels)
    return [in_channels, *channels] if _is_vit(net) else channels


def encode(net: nn.Module, x):
    """(features, the decoder's arguments): the features as a CNN encoder gives them, the image first."""
    if not _is_vit(net):
        features = net.encoder(x)
        return features, (features,)
    features, prefix_tokens = net.encoder(x)
    return [x, *features], (features, prefix_tokens)


def _is_vit(net: nn.Module) -> bool:
    return isinstance(net, smp.DPT)


def create_smp_model(arch: str, encoder_name: str, encoder_weights: str | None, classes: int,
                     in_channels: int = 3) -> smp.base.SegmentationModel:
    """The plain SMP model for `arch`, logits out (no activation): the AFMA-off baseline."""
    architecture = ARCHITECTURES[arch]
    model = smp.create_model(architecture.smp_name, encoder_name=encoder_name, encoder_weights=encoder_weights,
                             classes=classes, in_channels=in_channels, **architecture.settings)
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
