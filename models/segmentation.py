"""One wrapper for every architecture: SMP encoder -> (AFMA | SMP decoder + head) -> corrected logits."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from .afma import AFMA, FactoredAttention
from .architectures import encode, feature_channels, feature_stride, size_divisor
from .hub import guard_inner_network, load_pretrained, push_to_hub, save_pretrained
from .spec import ModelSpec


class SegmentationModel(nn.Module):
    """An SMP segmentation model with Across Feature Map Attention at encoder depth `att_depth`, or without
    (att_depth None: the plain baseline), behind one interface.

    forward(x) -> (logits, attention): the head's logits (after its upsampling, before any activation),
    corrected as z * (1 + R); attention is a `FactoredAttention` (`.dense()` gives the (B, C, Li, Lf) AFMA),
    or None when AFMA is off (att_depth None), in which case the logits are exactly the plain SMP model's.
    """

    def __init__(self, net: nn.Module, spec: ModelSpec, min_size: int = 1):
        super().__init__()
        self.net = net
        self.spec = spec  # what rebuilds this model: build_model(**spec.to_dict())
        self.classes = len(spec.classes)
        self.att_depth = spec.att_depth
        self.patch_size = spec.patch_size
        encoder = net.encoder
        self.size_divisor = size_divisor(spec.arch, encoder)
        self.afma = None
        self.min_size_reason = "for its decoder"
        if spec.att_depth is not None:
            channels = feature_channels(net, spec.in_channels)[spec.att_depth]
            self.afma = AFMA(channels, self.classes, spec.att_depth, spec.patch_size, spec.in_channels)
            # The attention-depth feature must hold one whole patch.
            patch_min = spec.patch_size * feature_stride(spec.arch, spec.att_depth)
            if patch_min > min_size:
                min_size = patch_min
                self.min_size_reason = f"one {spec.patch_size}x{spec.patch_size} patch at attention depth {spec.att_depth}"
            guard_inner_network(net)  # SMP's save_pretrained on self.net would drop the AFMA weights
        self.min_size = _round_up(min_size, self.size_divisor)

    # ------------------------------------------------------------------ save and load as SMP's models do
    def save_pretrained(self, directory) -> Path:
        """Write config.json (the spec) and model.safetensors (every weight) into `directory`."""
        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, name, **options) -> "SegmentationModel":
        """The model in a folder written by save_pretrained, or in a hub repository ("user/model"); in eval mode.
        `options`: device, revision, cache_dir, token, force_download, local_files_only."""
        return load_pretrained(name, **options)

    def push_to_hub(self, repo_id: str, **options):
        """save_pretrained into the hub repository `repo_id` (created if missing). `options`: private, token,
        revision, commit_message, create_pr."""
        return push_to_hub(self, repo_id, **options)

    @property
    def afma_enabled(self) -> bool:
        return self.afma is not None

    def valid_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest valid input size at least height x width (pad to it, then crop the output back)."""
        return tuple(max(_round_up(n, self.size_divisor), self.min_size) for n in (height, width))

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError naming the size and the nearest valid one, rather than mis-size the output."""
        d = self.size_divisor
        nearest = self.valid_size(height, width)
        if (height, width) != nearest:
            reason = f"divisible by {d}"
            if self.min_size > d:
                reason += f" and at least {self.min_size} ({self.min_size_reason})"
            raise ValueError(
                f"input size {height}x{width} is not valid for this model: height and width must be {reason}; "
                f"the nearest valid size is {nearest[0]}x{nearest[1]} (pad or crop to it)"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, FactoredAttention | None]:
        height, width = x.shape[-2:]
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_input_size(height, width)
        features, decoder_inputs = encode(self.net, x)
        logits = self.net.segmentation_head(self.net.decoder(*decoder_inputs))
        if self.afma is None:
            return logits, None
        attention = self.afma(x, features[self.att_depth])
        return self.afma.correct(logits, attention), attention


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)

