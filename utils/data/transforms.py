"""Albumentations pipelines for each dataset and split (docs/METHOD.md §5), and the input normalisation.

Three geometries, chosen from the dataset class's attributes:
- pad_size set (CamVid): pad, then random-sized/random crops for training and a centre crop
  for evaluation, exactly as the reference;
- resize True (birds, skin lesions, LiTS): resize to the network size;
- otherwise (Cityscapes): random crops + flips for training, the full frame for evaluation.

`scale` shrinks everything for quick CPU runs: the raw frame is resized by `scale` first,
then pad sizes are scaled and crop/resize sizes are scaled and rounded to a multiple of 32
(encoder-decoder networks need inputs divisible by their total stride). Masks are only ever
resampled with nearest-neighbour interpolation, so no invented class indices appear, and every
pixel the frame does not hold (padding, warp borders; e.g. the strip a crop rounded up past the
frame at --scale 0.25) is IGNORE_LABEL, which no metric or loss counts.

The pipelines end in uint8 tensors: a quarter of float32's bytes through the loader's workers, pinned memory
and the host-to-device copy. `Normalizer` turns them into the encoder's normalised float input on the device,
for training, evaluation, --predict and figures alike.
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from utils.labels import IGNORE_LABEL  # noqa: E402

# The reference used old albumentations' GaussNoise default, variance 10..50 on 0..255 pixels.
# Albumentations 2.x takes the standard deviation as a fraction of 255 and defaults to a far
# stronger 0.2..0.44, so the old range is spelled out here.
GAUSS_NOISE_STD = (float(np.sqrt(10) / 255), float(np.sqrt(50) / 255))
NETWORK_STRIDE = 32


def network_size(size, scale):
    """Scale an (h, w) network input size, rounding to the nearest multiple of 32."""
    return tuple(max(NETWORK_STRIDE, int(v * scale / NETWORK_STRIDE + 0.5) * NETWORK_STRIDE)
                 for v in size)


def pad_target(pad_size, crop_size, scale):
    """Scale a pad size (not rounded: it matches raw frames) but never below the crop."""
    return tuple(max(int(round(p * scale)), c) for p, c in zip(pad_size, crop_size))


def prescale(scale):
    """Resize the raw frame by `scale` (area for images, nearest for masks); none at 1."""
    if scale == 1:
        return []
    return [A.RandomScale(scale_limit=(scale - 1, scale - 1), area_for_downscale="image",
                          mask_interpolation=cv2.INTER_NEAREST, p=1)]


def padded_crop_geometry(dataset_cls, split, scale):
    """CamVid-style: pad to pad_size (image 255, mask IGNORE_LABEL: never scored), then crop."""
    train_size = network_size(dataset_cls.train_size, scale)
    eval_size = network_size(dataset_cls.eval_size, scale)
    largest_crop = tuple(map(max, train_size, eval_size))
    pad_h, pad_w = pad_target(dataset_cls.pad_size, largest_crop, scale)
    pad = A.PadIfNeeded(min_height=pad_h, min_width=pad_w, border_mode=cv2.BORDER_CONSTANT,
                        fill=255, fill_mask=IGNORE_LABEL)
    if split != "train":
        return [*prescale(scale), pad, A.CenterCrop(*eval_size)]
    # Spec: crop heights 240..720 of the 720-high padded frame, at the frame's 4/3 aspect.
    sized_crop = A.RandomSizedCrop(min_max_height=(pad_h // 3, pad_h), size=train_size,
                                   w2h_ratio=pad_w / pad_h, mask_interpolation=cv2.INTER_NEAREST)
    return [*prescale(scale), A.HorizontalFlip(p=0.5), pad,
            A.OneOf([sized_crop, A.RandomCrop(*train_size)], p=1),
            A.GaussNoise(std_range=GAUSS_NOISE_STD, p=0.1),
            A.Perspective(mask_interpolation=cv2.INTER_NEAREST, fill_mask=IGNORE_LABEL, p=0.1)]


def crop_geometry(dataset_cls, split, scale):
    """Cityscapes-style: random crop + flip to train, the whole (padded) frame to evaluate.

    Padding only triggers on frames smaller than the target; it fills the mask with IGNORE_LABEL
    so padded pixels are never scored, not even as the void class's false positives.
    """
    size = network_size(dataset_cls.train_size if split == "train" else dataset_cls.eval_size,
                        scale)
    pad = A.PadIfNeeded(min_height=size[0], min_width=size[1], border_mode=cv2.BORDER_CONSTANT,
                        fill=0, fill_mask=IGNORE_LABEL)
    if split != "train":
        return [*prescale(scale), pad, A.CenterCrop(*size)]
    return [*prescale(scale), pad, A.RandomCrop(*size), A.HorizontalFlip(p=0.5)]


def resize_geometry(dataset_cls, split, scale):
    """Resize straight to the network size (a prescale would only blur twice)."""
    size = network_size(dataset_cls.train_size if split == "train" else dataset_cls.eval_size,
                        scale)
    return [A.Resize(*size, area_for_downscale="image", mask_interpolation=cv2.INTER_NEAREST)]


def build_transforms(dataset_cls, split, scale=1.0):
    """The albumentations pipeline of a dataset class and split: uint8 (3, H, W) image, uint8 mask out.

    split "predict" is the evaluation pipeline without its crop (for images of any size, which --predict
    pads to a size the model takes and crops back): the resize of the resizing datasets, the scale of the
    others.
    """
    if split not in ("train", "val", "test", "predict"):
        raise ValueError(f"split {split!r} is not valid: use train, val or test")
    if dataset_cls.resize:
        geometry = resize_geometry(dataset_cls, "test" if split == "predict" else split, scale)
    elif split == "predict":
        geometry = prescale(scale)
    elif dataset_cls.pad_size is not None:
        geometry = padded_crop_geometry(dataset_cls, split, scale)
    else:
        geometry = crop_geometry(dataset_cls, split, scale)
    return A.Compose([*geometry, ToTensorV2()])


class Normalizer:
    """uint8 (B, 3, H, W) images -> the encoder's normalised float input on `device`.

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
