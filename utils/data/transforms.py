"""Albumentations pipelines for each dataset and split (docs/METHOD.md §5), and the input normalisation.

Every pipeline is the authors' released code's (albumentations 1.0), transform by transform, mapped to
albumentations 2.x with the same parameters (the old defaults spelled out where 2.x changed them):

  released (1.0)                                2.x here
  ShiftScaleRotate(shift 0.1, scale 0.5,        Affine(translate_percent ±0.1 per axis, scale 0.5..1.5 with
    rotate 0, border_mode 0, p 1)                 keep_ratio, rotate 0, constant border, p 1)
  IAAAdditiveGaussianNoise() (imgaug: std       GaussNoise(std_range 0.01..0.05 of 255, per_channel False)
    2.55..12.75 on 0..255, one for all channels)
  IAAPerspective() (scale 0.05..0.1, keep_size) Perspective(scale 0.05..0.1, keep_size True)
  IAASharpen() (alpha 0.2..0.5, lightness       Sharpen(alpha 0.2..0.5, lightness 0.5..1.0)
    0.5..1.0)
  RandomBrightness() (limit 0.2, by max)        RandomBrightnessContrast(brightness 0.2, contrast 0)
  RandomContrast() (limit 0.2)                  RandomBrightnessContrast(brightness 0, contrast 0.2)
  GaussNoise() (var 10..50 on 0..255, per       GaussNoise(std_range sqrt(10..50)/255)
    channel)
  Blur(3), MotionBlur(3), CLAHE(), RandomGamma(), HueSaturationValue(), PadIfNeeded, RandomCrop,
  CenterCrop, RandomSizedCrop, HorizontalFlip: the same names and defaults.

Two deliberate differences, everywhere: a pixel the frame does not hold (padding, warp borders) gets the mask
value IGNORE_LABEL, which no metric or loss counts (the released code's one-hot masks got all zeros there, or
sky's index 0 on CamVid), and evaluation pads (a no-op on frames as large as the crop) with a constant border
rather than 1.0's default mirror, whose mirrored label pixels would be scored. Masks are resampled with
nearest-neighbour only (the released code warped its float one-hot masks linearly).

`scale` shrinks everything for quick CPU runs: the raw frame is resized by `scale` first,
then pad sizes are scaled and crop sizes are scaled and rounded to a multiple of 32
(encoder-decoder networks need inputs divisible by their total stride). Every pixel the frame
does not hold (e.g. the strip a crop rounded up past the frame at --scale 0.25) is IGNORE_LABEL.

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

from models.architectures import INPUT_MULTIPLE  # noqa: E402
from utils.data.datasets import SPLITS  # noqa: E402
from utils.labels import IGNORE_LABEL  # noqa: E402

# The reference used old albumentations' GaussNoise default, variance 10..50 on 0..255 pixels.
# Albumentations 2.x takes the standard deviation as a fraction of 255 and defaults to a far
# stronger 0.2..0.44, so the old range is spelled out here.
GAUSS_NOISE_STD = (float(np.sqrt(10) / 255), float(np.sqrt(50) / 255))


def network_size(size, scale):
    """Scale an (h, w) network input size, rounding to the nearest multiple of INPUT_MULTIPLE (32)."""
    return tuple(max(INPUT_MULTIPLE, int(v * scale / INPUT_MULTIPLE + 0.5) * INPUT_MULTIPLE) for v in size)


def pad_target(pad_size, crop_size, scale):
    """Scale a pad size (not rounded: it matches raw frames) but never below the crop."""
    return tuple(max(int(round(p * scale)), c) for p, c in zip(pad_size, crop_size))


def prescale(scale):
    """Resize the raw frame by `scale` (area for images, nearest for masks); none at 1."""
    if scale == 1:
        return []
    return [A.RandomScale(scale_limit=(scale - 1, scale - 1), area_for_downscale="image",
                          mask_interpolation=cv2.INTER_NEAREST, p=1)]


def constant_pad(size, fill):
    """Pad to at least `size` (h, w) with a constant border: image `fill`, mask IGNORE_LABEL."""
    return A.PadIfNeeded(min_height=size[0], min_width=size[1], border_mode=cv2.BORDER_CONSTANT,
                         fill=fill, fill_mask=IGNORE_LABEL)


def perspective(p):
    return A.Perspective(scale=(0.05, 0.1), keep_size=True, mask_interpolation=cv2.INTER_NEAREST,
                         fill=0, fill_mask=IGNORE_LABEL, p=p)


def padded_crop_geometry(dataset_cls, split, scale):
    """CamVid and Cityscapes: flip, pad (image 255), one of {random-sized crop, random crop}, noise, warp;
    evaluation pads and centre-crops (the whole 1024x2048 frame on Cityscapes)."""
    size = network_size(dataset_cls.train_size if split == "train" else dataset_cls.eval_size, scale)
    pad_h, pad_w = pad_target(dataset_cls.pad_size, size, scale)
    pad = constant_pad((pad_h, pad_w), fill=255)
    if split != "train":
        return [*prescale(scale), pad, A.CenterCrop(*size)]
    # Crop heights of the padded frame (CamVid 240..720, Cityscapes 360..1024) at the 4/3 aspect.
    low, high = (min(max(1, round(h * scale)), pad_h) for h in dataset_cls.sized_crop_heights)
    sized_crop = A.RandomSizedCrop(min_max_height=(low, high), size=size, w2h_ratio=4 / 3,
                                   mask_interpolation=cv2.INTER_NEAREST)
    return [*prescale(scale), A.HorizontalFlip(p=0.5), pad,
            A.OneOf([sized_crop, A.RandomCrop(*size)], p=1),
            A.GaussNoise(std_range=GAUSS_NOISE_STD, p=0.1), perspective(0.1)]


def photometric(variant):
    """The three one-of groups (p 0.9 each) after the geometry of the birds, skin lesion and LiTS pipelines."""
    if variant == "lits":  # LiTS's own: brightness-contrast for CLAHE/brightness and for contrast
        light = [A.RandomBrightnessContrast(p=1), A.RandomGamma(p=1)]
        colour = [A.RandomBrightnessContrast(p=1), A.HueSaturationValue(p=1)]
    else:
        light = [A.CLAHE(p=1), A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0, p=1),
                 A.RandomGamma(p=1)]
        colour = [A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.2, p=1),
                  A.HueSaturationValue(p=1)]
    sharp = [A.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=1), A.Blur(blur_limit=3, p=1),
             A.MotionBlur(blur_limit=3, p=1)]
    return [A.OneOf(light, p=0.9), A.OneOf(sharp, p=0.9), A.OneOf(colour, p=0.9)]


def shift_scale_crop_geometry(dataset_cls, split, scale):
    """Birds, skin lesions, LiTS: flip, shift-scale, pad + random crop, noise, warp, three one-of groups;
    evaluation pads (skin lesions: to 192x256) and centre-crops, with no resize."""
    size = network_size(dataset_cls.train_size if split == "train" else dataset_cls.eval_size, scale)
    if split != "train":
        pad = pad_target(dataset_cls.eval_pad or size, size, scale)
        return [*prescale(scale), constant_pad(pad, fill=0), A.CenterCrop(*size)]
    lits = dataset_cls.name == "lits"
    # LiTS's GaussNoise ran on HU floats: variance 10..50 HU^2, i.e. sqrt(10..50)/500 of the uint8 range here.
    noise = (A.GaussNoise(std_range=(float(np.sqrt(10) / 500), float(np.sqrt(50) / 500)), p=0.2) if lits
             else A.GaussNoise(std_range=(0.01, 0.05), per_channel=False, p=0.2))
    return [*prescale(scale), A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.5, 1.5), keep_ratio=True, translate_percent=(-0.1, 0.1), rotate=0,
                     border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_LABEL,
                     mask_interpolation=cv2.INTER_NEAREST, p=1),
            constant_pad(size, fill=0), A.RandomCrop(*size), noise, perspective(0.5), *photometric(dataset_cls.name)]


def build_transforms(dataset_cls, split, scale=1.0):
    """The albumentations pipeline of a dataset class and split: uint8 (3, H, W) image, uint8 mask out.

    split "predict" is the evaluation pipeline without its crop (for images of any size, which --predict
    pads to a size the model takes and crops back): the pre-resize and the scale alone.
    A dataset's `pre_resize` (h, w) (skin lesions: the released code's images were stored at 192x256) comes
    first, in every split.
    """
    if split not in (*SPLITS, "predict"):
        raise ValueError(f"split {split!r} is not valid: use one of {', '.join(SPLITS)} or predict")
    pre = dataset_cls.pre_resize
    resize = [] if pre is None else [A.Resize(*pre, area_for_downscale="image",
                                              mask_interpolation=cv2.INTER_NEAREST)]
    if split == "predict":
        geometry = prescale(scale)
    elif dataset_cls.pad_size is not None:
        geometry = padded_crop_geometry(dataset_cls, split, scale)
    else:
        geometry = shift_scale_crop_geometry(dataset_cls, split, scale)
    return A.Compose([*resize, *geometry, ToTensorV2()])


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
