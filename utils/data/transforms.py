"""Each data set's pipelines per split (docs/METHOD.md §5), and the input normalisation.

The pipelines are the authors' released code's, transform by transform, with albumentations 1.0's parameter laws
and kernels (utils/data/augment.py, checked against 1.0's own outputs). The geometry comes from the data set's
sizes: a `pad_size` means flip, pad, one of {random-sized crop, random crop} (CamVid, Cityscapes), none means
flip, shift-scale, pad, random crop (birds, skin lesions, LiTS). What follows the crop is the data set's own
`train_steps()`, declared with the data set in utils/data/datasets.py.

Two deliberate differences, everywhere: a pixel the frame does not hold (padding, warp and shift borders) gets
the mask value `border_label` of the data set (IGNORE_LABEL, which no metric or loss counts; the released one-hot
masks got all zeros there, which its loss trained as class 0), and evaluation pads (a no-op on frames as large
as the crop) with a constant border rather than 1.0's default mirror, whose mirrored label pixels would be scored.

`scale` shrinks everything for quick CPU runs: the raw frame is resized by `scale` first,
then pad sizes are scaled and crop sizes are scaled and rounded to a multiple of 32
(encoder-decoder networks need inputs divisible by their total stride). Every pixel the frame
does not hold (e.g. the strip a crop rounded up past the frame at --scale 0.25) is `border_label`.

The pipelines end in uint8 tensors: a quarter of float32's bytes through the loader's workers, pinned memory
and the host-to-device copy. `utils.engine.normalizer.Normalizer` turns them into the encoder's normalised float
input on the device, for training, evaluation, --predict and figures alike.
"""
import torch

from models.architectures import INPUT_MULTIPLE
from utils.data.augment import (CenterCrop, Compose, HorizontalFlip, OneOf, PadIfNeeded, RandomCrop,
                                RandomSizedCrop, Rescale, Resize, ShiftScaleRotate)
from utils.data.datasets import SPLITS


def network_size(size, scale):
    """Scale an (h, w) network input size, rounding to the nearest multiple of INPUT_MULTIPLE (32)."""
    return tuple(max(INPUT_MULTIPLE, int(v * scale / INPUT_MULTIPLE + 0.5) * INPUT_MULTIPLE) for v in size)


def pad_target(pad_size, crop_size, scale):
    """Scale a pad size (not rounded: it matches raw frames) but never below the crop."""
    return tuple(max(int(round(p * scale)), c) for p, c in zip(pad_size, crop_size))


def prescale(scale, frame_scale=1.0):
    """Resize the raw frame, stored at `frame_scale` of the data set's resolution, to `scale` of it (area for
    images, nearest for masks); none where the two are equal."""
    factor = scale / frame_scale
    return [] if factor == 1 else [Rescale(factor)]


def padded_crop_geometry(dataset_cls, split, scale):
    """CamVid and Cityscapes: flip, pad (image 255), one of {random-sized crop, random crop};
    evaluation pads and centre-crops (the whole 1024x2048 frame on Cityscapes)."""
    size = network_size(dataset_cls.train_size if split == "train" else dataset_cls.eval_size, scale)
    pad_h, pad_w = pad_target(dataset_cls.pad_size, size, scale)
    pad = PadIfNeeded(pad_h, pad_w, fill=255, fill_mask=dataset_cls.border_label)
    if split != "train":
        return [*prescale(scale, dataset_cls.frame_scale), pad, CenterCrop(*size)]
    # Crop heights of the padded frame (CamVid 240..720, Cityscapes 360..1024) at the 4/3 aspect.
    low, high = (min(max(1, round(h * scale)), pad_h) for h in dataset_cls.sized_crop_heights)
    sized_crop = RandomSizedCrop((low, high), size, w2h_ratio=dataset_cls.sized_crop_ratio)
    return [*prescale(scale, dataset_cls.frame_scale), HorizontalFlip(p=0.5), pad,
            OneOf([sized_crop, RandomCrop(*size)], p=1)]


def shift_scale_crop_geometry(dataset_cls, split, scale):
    """Birds, skin lesions, LiTS: flip, shift-scale, pad + random crop; evaluation pads (skin lesions: to
    192x256) and centre-crops, with no resize."""
    size = network_size(dataset_cls.train_size if split == "train" else dataset_cls.eval_size, scale)
    border = dataset_cls.border_label
    if split != "train":
        pad = pad_target(dataset_cls.eval_pad or size, size, scale)
        return [*prescale(scale, dataset_cls.frame_scale), PadIfNeeded(*pad, fill=0, fill_mask=border),
                CenterCrop(*size)]
    return [*prescale(scale, dataset_cls.frame_scale), HorizontalFlip(p=0.5),
            ShiftScaleRotate(shift_limit=0.1, scale_limit=0.5, rotate_limit=0, fill=0, fill_mask=border),
            PadIfNeeded(*size, fill=0, fill_mask=border), RandomCrop(*size)]


def build_transforms(dataset_cls, split, scale=1.0):
    """The pipeline of a dataset class and split: uint8 (3, H, W) image, uint8 mask out.

    split "predict" is the evaluation pipeline without its crop (for images of any size, which --predict
    pads to a size the model takes and crops back): the pre-resize and the scale alone.
    A dataset's `pre_resize` (h, w) (skin lesions: the released code's images were stored at 192x256) comes
    first, in every split; its `train_steps()` (noise, warp, photometric groups) follow the training crop.
    """
    if split not in (*SPLITS, "predict"):
        raise ValueError(f"split {split!r} is not valid: use one of {', '.join(SPLITS)} or predict")
    pre = dataset_cls.pre_resize
    resize = [] if pre is None else [Resize(*pre)]
    if split == "predict":
        geometry = prescale(scale, dataset_cls.frame_scale)
    elif dataset_cls.pad_size is not None:
        geometry = padded_crop_geometry(dataset_cls, split, scale)
    else:
        geometry = shift_scale_crop_geometry(dataset_cls, split, scale)
    steps = dataset_cls.train_steps() if split == "train" else []
    return Compose([*resize, *geometry, *steps])

