"""The input normaliser: the loader's uint8 images, on the device, as the encoder expects them.

It lives in the engine (it moves batches to the device and picks their memory layout), not with the data's
transforms: utils/data imports utils/engine (the loaders' torchrun sharding), so the engine must not import
utils/data.
"""
from __future__ import annotations

import torch


class Normalizer:
    """uint8 (B, C, H, W) images -> the encoder's normalised float input on `device` (a mean and std per channel).

    (x / 255 - mean) / std as one multiply-add per pixel, after the uint8 copy; channels_last on CUDA, the
    layout the convolutions there run fastest in.
    """

    def __init__(self, mean, std, device):
        self.device = torch.device(device)
        std = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.scale, self.shift = 1 / (255 * std), -mean / std
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return torch.addcmul(self.shift, x.float(), self.scale)
