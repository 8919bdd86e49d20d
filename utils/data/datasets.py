"""Segmentation datasets in their published folder layouts (CamVid, Cityscapes, CUB birds,
ISIC 2018 skin lesions, LiTS liver CT).

Every dataset yields (image, mask): with a transform, a uint8 (3, H, W) image tensor (normalised later, on
the device) and a uint8 (H, W) mask of class indices 0..num_classes-1, where the LAST class is the
unlabelled/background class that mIoU leaves out (utils/labels.py). Bad data raises DataError with a one-line
message naming the file and the fix, because a training run that dies an hour in on a broken file is far
costlier than a check upfront.

Augmentation is a pure function of (seed, sample): index a dataset with `(index, seed)` (what
`utils.data.loaders.EpochSampler` yields) and the transform is seeded with `seed` for that sample alone, so
shuffling and augmentation are the same in any worker process, persistent or not, and after a resume.
"""

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.data.augment import (CLAHE, AdditiveGaussianNoise, Blur, BrightnessContrast, GaussNoise,
                                HueSaturationValue, MotionBlur, OneOf, Perspective, RandomGamma, Sharpen)
from utils.errors import DataError
from utils.labels import IGNORE_LABEL, void_index

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # common image files (--predict reads them all)


def pair_files(images, labels, label_for, image_for):
    """Pair every image with its label, or raise naming the file that has no partner.

    `label_for(image)` / `image_for(label)` give the path the partner must have; the result
    is sorted so that dataset indices are reproducible across machines.
    """
    apple = lambda path: Path(path).name.startswith("._")  # noqa: E731 - macOS's AppleDouble files, not frames
    images, labels = [p for p in images if not apple(p)], [p for p in labels if not apple(p)]
    label_set, image_set = set(labels), set(images)
    for image in images:
        if label_for(image) not in label_set:
            raise DataError(f"{label_for(image)} is missing: image {image} needs a label file "
                            f"there (add the label or remove the image)")
    for label in labels:
        if image_for(label) not in image_set:
            raise DataError(f"{image_for(label)} is missing: label {label} has no image "
                            f"(add the image or remove the label)")
    return [(image, label_for(image)) for image in sorted(images)]


def require_dir(path, hint):
    """Return path if it is a folder, else raise DataError saying what it should hold."""
    if not path.is_dir():
        raise DataError(f"{path} is missing: {hint}")
    return path


def read_bytes(path):
    """Read a whole file, turning a missing/unreadable file into a DataError."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror}): check the file exists "
                        f"and is readable") from err


# The end of a whole file: a JPEG's end-of-image marker, a PNG's IEND chunk, in its last KiB (not strictly at the
# end: some writers append padding after it).
END_MARKERS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}


def decode(path, flags):
    """Decode an image file with cv2, rejecting empty, corrupt and truncated files in one line.

    cv2.imdecode raises on an empty buffer, prints libpng's own error line before returning None for a truncated
    PNG, and silently decodes a truncated JPEG (grey bottom): a file must hold its end marker to be decoded.
    """
    data = read_bytes(path)
    if not data:
        raise DataError(f"{path} is empty (0 bytes): re-extract or re-download it, or remove it with its partner")
    marker = END_MARKERS.get(Path(path).suffix.lower())
    array = None if marker and marker not in data[-1024:] else cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise DataError(f"{path} cannot be decoded: the file is corrupt or truncated "
                        f"(re-extract or re-download it)")
    return array


def is_palette_png(path) -> bool:
    """A PNG of colour type 3: its IHDR chunk's colour type byte (offset 25) says so."""
    with open(path, "rb") as file:
        head = file.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[25] == 3


def read_channels(path, channels=3):
    """Read an image as uint8 (H, W, channels): 3 is RGB as always (a grey file replicated, an alpha channel
    dropped); 1 a grey file; 4 RGBA (a 4-channel PNG or TIFF). OpenCV's images hold 1, 3 or 4 channels (a
    data set of another count reads its own format, as LiTS does). 16-bit files are cut to 8 bits (value // 256)."""
    if channels == 3:
        return cv2.cvtColor(decode(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = decode(path, cv2.IMREAD_UNCHANGED)
    image = image if image.ndim == 3 else image[..., None]
    found = image.shape[2]
    if found != channels:
        what = {1: "grey", 4: "RGBA"}.get(channels, f"{channels}-channel")
        raise DataError(f"{path} has {found} channel{'s' * (found != 1)}, but {what} images of {channels} are read "
                        f"here (--in-channels {channels}): convert it, or use a model of --in-channels {found}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise DataError(f"{path} holds {image.dtype} pixels: images are read as 8- or 16-bit integers "
                        f"(convert it to 8-bit)")
    if channels == 4:  # OpenCV holds BGRA
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return np.ascontiguousarray(image)


def display_rgb(image):
    """An image of any channel count as uint8 RGB to look at (figures, overlays): grey (and a 2-channel image's
    first channel) replicated, channels past the third (RGBA's alpha) left out."""
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[2] < 3:
        return np.repeat(image[..., :1], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


class SegmentationDataset(torch.utils.data.Dataset):
    """Base class: finds (image, label) pairs for a split, reads and maps them.

    Subclasses set the class attributes below and implement `find_pairs`; those whose
    labels are not plain class-index PNGs override `map_label` (and the readers).
    """

    name = ""
    classes = ()  # the last one is the unlabelled/background class that mIoU excludes
    class_weights = None  # loss weights per class; None means uniform
    small_classes = ()  # reported separately: the objects AFMA is designed for
    palette = ()  # one RGB colour per class, for figures
    train_size = (0, 0)  # (h, w) network input during training
    eval_size = (0, 0)  # (h, w) network input during evaluation
    pad_size = None  # (h, w) to pad to before cropping (CamVid, Cityscapes), or None: shift-scale + crop
    sized_crop_heights = None  # (low, high) heights of the random-sized crops of the padded frame
    eval_pad = None  # (h, w) evaluation pads to before its centre crop; None: the crop size
    pre_resize = None  # (h, w) every image is resized to first, in every split; None: as stored
    note = ""  # one line main.py prints at the start of a run: what the user must know to read the results
    void_value = None  # raw label value that means "unlabelled" (mapped to the last class)
    frame_size = None  # (h, w) every frame must have, or None for any size
    # The stored frames are the data set at this scale of the resolution its sizes are for (CamVid's 480x360
    # copy: 0.5): --scale s resizes them by s / frame_scale, and every pad and crop is that of scale s.
    frame_scale = 1.0
    sized_crop_ratio = 4 / 3  # width / height of the random-sized crops (pad_size data sets)
    image_suffixes = (".png",)  # the files read as images (--predict reads these too)
    channels = 3  # image channels read (--in-channels; an instance's own where set): see read_channels
    # The mask value of a pixel the frame does not hold (padding, shift and warp borders): IGNORE_LABEL, never
    # scored or trained on. RELEASED_BORDER_LABEL is the released code's reading: its all-zero one-hot there,
    # which its loss trained as its first class (CamVid's sky, Cityscapes' road, the bird, the lesion; LiTS's
    # background), here that class's index.
    border_label = IGNORE_LABEL
    RELEASED_BORDER_LABEL = 0

    @classmethod
    def train_steps(cls):
        """The released training steps after the crop (noise, warp, photometric), as utils/data/augment.py
        transforms: each data set declares its own."""
        return []

    def __init__(self, root, split, transform=None):
        if split not in SPLITS:
            raise DataError(f"split {split!r} is not valid: use one of {', '.join(SPLITS)}")
        self.root = require_dir(Path(root), f"it should be the {self.name} dataset root "
                                             f"folder (check the root path you passed)")
        self.split = split
        self.transform = transform
        self.pairs = self.find_pairs()
        if not self.pairs:
            raise DataError(f"{self.split_dir()} holds no {self.split} images: "
                            f"put the {self.name} {self.split} split there")

    @property
    def num_classes(self):
        return len(self.classes)

    @classmethod
    def describe(cls, root, saved=None):
        """What of the data in `root` the pipeline depends on beyond the name (JSON-able; the model spec records
        it as `dataset_params`, so a checkpoint rebuilds the pipeline): none for most data sets."""
        return {}

    @classmethod
    def configured(cls, params):
        """The class for `describe`'s parameters."""
        if params:
            raise DataError(f"the {cls.name} data set takes no parameters, but got {sorted(params)}")
        return cls

    @classmethod
    def normalisation(cls, mean, std):
        """The (mean, std) that `Normalizer`'s (x/255 - mean)/std of this data set's uint8 images needs to give
        the encoder the input the released code gave it; for photographs the encoder's own."""
        return tuple(mean), tuple(std)

    def find_pairs(self):
        """Return the sorted (image_path, label_path) list of this split."""
        raise NotImplementedError

    def split_dir(self):
        """The folder named in 'no images' errors, so the user knows where to look."""
        return self.root / self.split

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        image_path, label_path = self.pairs[index]
        image, mask = self.read_image(image_path, self.channels), self.read_label(label_path)
        check_same_size(image_path, image, label_path, mask)
        if self.transform is None:
            return image, mask
        if seed is not None:
            self.transform.set_random_seed(seed)
        # uint8 through the transform (cv2 warps cannot handle int64 masks) and over the loader's wire.
        out = self.transform(image=image, mask=mask.astype(np.uint8))
        return out["image"], out["mask"]

    @classmethod
    def read_image(cls, path, channels=3):
        """Read an image as uint8 (H, W, channels): RGB for 3 (read_channels)."""
        return read_channels(path, channels)

    def read_label(self, path):
        """Read a label map as int64 class indices (H, W)."""
        return self.map_label(self.read_raw_label(path), path)

    def read_raw_label(self, path):
        """Read the stored label values; they must form a single-channel map."""
        raw = decode(path, cv2.IMREAD_UNCHANGED)
        if raw.ndim != 2 and is_palette_png(path):
            raise DataError(f"{path} is a palette PNG (indices into a colour table), which OpenCV reads as colours: "
                            f"save its indices as a single-channel (grayscale) PNG")
        if raw.ndim != 2:
            raise DataError(f"{path} has {raw.shape[2]} channels: labels must be single-channel "
                            f"maps of class indices (convert colour labels to indices)")
        return raw

    def map_label(self, raw, path):
        """Map stored class indices to 0..num_classes-1, `void_value` to the last class."""
        label = raw.astype(np.int64)
        if self.void_value is not None:
            label[raw == self.void_value] = void_index(self.classes)
        bad = label[(label < 0) | (label >= self.num_classes)]
        if bad.size:
            allowed = f"0..{self.num_classes - 1}" + (
                f" or {self.void_value}" if self.void_value is not None else "")
            raise DataError(f"{path} contains label value {int(bad[0])}: {self.name} labels must "
                            f"be {allowed} (fix or regenerate this label file)")
        return label

    def validate(self):
        """Read every pair of the split once, so bad files fail now rather than mid-training.

        In threads (OpenCV and NumPy release the GIL while decoding): a few seconds for CamVid, a minute or
        two rather than several for Cityscapes. The first bad pair in the split's order is the one reported.
        """
        def check(pair):
            image_path, label_path = pair
            image = self.read_image(image_path, self.channels)
            check_same_size(image_path, image, label_path, self.read_label(label_path))
            return image_path, image.shape[:2]

        threads = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            shapes = list(pool.map(check, self.pairs))
        finally:
            pool.shutdown(cancel_futures=True)  # a bad file stops the check at once
        # After the file checks, so that a broken file is named before a split of the wrong resolution.
        for path, shape in shapes:
            self.check_frame_size(path, shape)

    def check_frame_size(self, path, shape):
        """Refuse a frame of another (h, w) than `frame_size`: padded up to the crops, most of it would be padding."""
        if self.frame_size is not None and tuple(shape) != tuple(self.frame_size):
            (h, w), (want_h, want_w) = shape, self.frame_size
            raise DataError(f"{path} is {w}x{h} but {self.name} frames must be {want_w}x{want_h} (WxH): "
                            f"{self.frame_hint}")


def check_same_size(image_path, image, label_path, label):
    """Raise DataError if an image and its label differ in height/width."""
    if image.shape[:2] != label.shape[:2]:
        raise DataError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                        f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH): they must "
                        f"match pixel for pixel")


class CamVid(SegmentationDataset):
    """CamVid in the SegNet layout: {split}/ and {split}annot/ PNGs, label indices 0..11."""

    name = "camvid"
    classes = ("sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence",
               "car", "pedestrian", "bicyclist", "unlabelled")
    class_weights = (0.25652730831033116, 0.18528266685745448, 4.396287575365375,
                     0.1368693220338383, 0.9184731310542199, 0.38731986379829597,
                     3.5330742906141994, 1.8126852672146507, 0.7246197983929721,
                     5.855012980845159, 8.136508447439535, 1.0974099206087582)
    small_classes = ("pole", "signsymbol", "fence", "pedestrian", "bicyclist")
    palette = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
               (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
               (0, 128, 192), (0, 0, 0))
    train_size = (480, 640)
    eval_size = (640, 960)
    pad_size = (720, 960)
    sized_crop_heights = (240, 720)
    frame_size = (720, 960)
    frame_hint = ("all frames of a copy must have one size: 960x720 (the full-resolution release; build it with "
                  "`python tools/prepare_data.py camvid --source PATH --out DIR`) or 480x360 (the SegNet tutorial's "
                  "copy, the data set at half size)")

    @classmethod
    def describe(cls, root, saved=None):
        """The (h, w) of the first frame found (train, val, then test): 480x360 frames are the half-size copy."""
        for split in SPLITS:
            folder = Path(root) / split
            first = min(folder.glob("*.png"), default=None) if folder.is_dir() else None
            if first is not None:
                return {"frame_size": list(decode(first, cv2.IMREAD_UNCHANGED).shape[:2])}
        return {}  # no frames: find_pairs says what is missing

    @classmethod
    def configured(cls, params):
        unknown = set(params) - {"frame_size"}
        if unknown:
            raise DataError(f"the camvid data set takes only frame_size, but got {sorted(unknown)}")
        # Any other size reads as the full-size data set, whose check_frame_size then names the frame.
        return CamVidHalf if tuple(params.get("frame_size", ())) == CamVidHalf.frame_size else CamVid

    @classmethod
    def train_steps(cls):
        # data/CamVid.py 74-75: GaussNoise(p=0.1), Perspective(p=0.1), with 1.0's defaults.
        return [GaussNoise(var_limit=(10, 50), p=0.1), Perspective(p=0.1, fill_mask=cls.border_label)]

    def find_pairs(self):
        hint = (f"CamVid needs {self.split}/ and {self.split}annot/ under {self.root} "
                f"(python tools/make_sample.py writes a synthetic sample)")
        image_dir = require_dir(self.root / self.split, hint)
        label_dir = require_dir(self.root / f"{self.split}annot", hint)
        for folder in (image_dir, label_dir):
            other = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                           and p.suffix != ".png")
            if other:
                raise DataError(f"{other[0]} is not read: CamVid frames and labels must be .png files "
                                f"(convert them, or build the folder with tools/prepare_data.py camvid)")
        return pair_files(list(image_dir.glob("*.png")), list(label_dir.glob("*.png")),
                          lambda p: label_dir / p.name, lambda p: image_dir / p.name)


class CamVidHalf(CamVid):
    """The SegNet tutorial's 480x360 copy (SMP's CamVid example downloads it): the 960x720 frames at half size.

    At --scale 0.5 its frames are not resized and every pad and crop is that of a 960x720 frame at scale 0.5;
    a larger --scale is refused (upsampling would invent the detail small objects need)."""

    frame_size = (360, 480)
    frame_scale = 0.5


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations as train ids: 19 classes, 255 = void (the 20th class)."""

    name = "cityscapes"
    classes = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
               "bus", "train", "motorcycle", "bicycle", "void")
    small_classes = ("pole", "traffic light", "traffic sign", "person", "rider", "motorcycle",
                     "bicycle")
    palette = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
               (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
               (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
               (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 0))
    train_size = (640, 800)
    eval_size = (1024, 2048)
    pad_size = (1024, 1024)
    sized_crop_heights = (360, 1024)
    void_value = 255
    IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"

    @classmethod
    def train_steps(cls):
        # data/CityScapes.py 75-76, as CamVid's.
        return [GaussNoise(var_limit=(10, 50), p=0.1), Perspective(p=0.1, fill_mask=cls.border_label)]

    def split_dir(self):
        return self.root / "leftImg8bit" / self.split

    def find_pairs(self):
        image_dir = require_dir(self.split_dir(),
                                f"Cityscapes needs leftImg8bit/{self.split}/<city>/ "
                                f"(download leftImg8bit_trainvaltest.zip)")
        label_dir = require_dir(self.root / "gtFine" / self.split,
                                f"Cityscapes needs gtFine/{self.split}/<city>/ "
                                f"(download gtFine_trainvaltest.zip)")
        labels = list(label_dir.glob(f"*/*{self.LABEL_SUFFIX}"))
        if not labels:
            raise DataError(f"{label_dir} has no *{self.LABEL_SUFFIX} files: create them with "
                            f"`pip install cityscapesscripts` and "
                            f"`CITYSCAPES_DATASET={self.root} csCreateTrainIdLabelImgs`")

        def label_for(image):
            stem = image.name[: -len(self.IMAGE_SUFFIX)]
            return label_dir / image.parent.name / f"{stem}{self.LABEL_SUFFIX}"

        def image_for(label):
            stem = label.name[: -len(self.LABEL_SUFFIX)]
            return image_dir / label.parent.name / f"{stem}{self.IMAGE_SUFFIX}"

        images = list(image_dir.glob(f"*/*{self.IMAGE_SUFFIX}"))
        return pair_files(images, labels, label_for, image_for)


def photographs_photometric():
    """The three one-of groups (p 0.9 each) of the released birds and skin-lesion pipelines (data/Birds.py
    81-104): {CLAHE, RandomBrightness, RandomGamma}, {IAASharpen, Blur(3), MotionBlur(3)},
    {RandomContrast, HueSaturationValue}, with 1.0's (and imgaug's) defaults."""
    light = [CLAHE(), BrightnessContrast(brightness_limit=0.2, contrast_limit=0), RandomGamma()]
    sharp = [Sharpen(), Blur(3), MotionBlur(3)]
    colour = [BrightnessContrast(brightness_limit=0, contrast_limit=0.2), HueSaturationValue()]
    return [OneOf(light, p=0.9), OneOf(sharp, p=0.9), OneOf(colour, p=0.9)]


class BinaryMaskDataset(SegmentationDataset):
    """Foreground/background datasets whose masks are grayscale, foreground > 127.

    Thresholding (not exact 0/255 values) because CUB masks are soft annotator averages
    and resized masks of other sources have intermediate values at the edges.
    """

    def read_raw_label(self, path):
        return decode(path, cv2.IMREAD_GRAYSCALE)

    def map_label(self, raw, path):
        return np.where(raw > 127, 0, 1).astype(np.int64)


class Birds(BinaryMaskDataset):
    """CUB-200-2011 with its segmentation masks (bird vs background).

    CUB only defines train and test (train_test_split.txt), and the released code names no validation split.
    The val split here is `VAL_FROM` of the list: by default its test images, so the best epoch is chosen on
    the very images it is then scored on and the test figures are optimistic (the note printed at the start
    of a run says so). VAL_FROM = "train" validates on the training images instead (selection then sees no
    test image, but neither an unseen one).
    """

    name = "birds"
    image_suffixes = (".jpg",)
    classes = ("bird", "background")
    palette = ((255, 200, 0), (0, 0, 0))
    train_size = eval_size = (320, 320)

    @classmethod
    def train_steps(cls):
        # data/Birds.py 78-79: IAAAdditiveGaussianNoise(p=0.2), IAAPerspective (p 0.5 whatever it is given: 1.0
        # passes its arguments to Perspective's positions of scale and keep_size), then the photometric groups.
        return [AdditiveGaussianNoise(p=0.2), Perspective(p=0.5, fill_mask=cls.border_label),
                *photographs_photometric()]

    def split_dir(self):
        return self.root / "images"

    def read_list(self, name):
        """Read a CUB "<id> <value>" list file into a dict."""
        path = self.root / name
        if not path.is_file():
            raise DataError(f"{path} is missing: it comes with CUB_200_2011.tgz "
                            f"(extract the whole archive into {self.root})")
        rows = (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
        return {key: value.strip() for key, value in rows}

    VAL_FROM = "test"  # the train_test_split.txt half the val split reads: "test" or "train"

    @property
    def note(self):
        if self.VAL_FROM == "test":
            return ("note: CUB has no validation split; val is its test list, so the best epoch is selected on "
                    "the test images and the test figures are optimistic (Birds.VAL_FROM)")
        return "note: CUB has no validation split; val is its training list (Birds.VAL_FROM)"

    def find_pairs(self):
        paths, is_train = self.read_list("images.txt"), self.read_list("train_test_split.txt")
        half = self.VAL_FROM if self.split == "val" else self.split
        wanted = "1" if half == "train" else "0"
        pairs = []
        for image_id, rel in paths.items():
            if is_train.get(image_id) != wanted:
                continue
            image = self.root / "images" / rel
            label = (self.root / "segmentations" / rel).with_suffix(".png")
            if not image.is_file():
                raise DataError(f"{image} is missing: it is listed in "
                                f"{self.root / 'images.txt'} (re-extract the images)")
            if not label.is_file():
                raise DataError(f"{label} is missing: image {image} needs its mask there "
                                f"(extract segmentations.tgz into {self.root})")
            pairs.append((image, label))
        return sorted(pairs)


class SkinLesion(BinaryMaskDataset):
    """ISIC 2018 task 1: dermoscopy JPEGs with 0/255 lesion masks."""

    name = "skinlesion"
    image_suffixes = (".jpg",)
    classes = ("lesion", "background")
    palette = ((255, 80, 80), (0, 0, 0))
    train_size = eval_size = (192, 192)
    # The released code read images already resized to 192x256 (h x w) and evaluated the centre 192x192 of
    # them; resizing here is that, as an explicit setting (None: the images as stored).
    pre_resize = eval_pad = (192, 256)
    PHASES = {"train": "Training", "val": "Validation", "test": "Test"}

    @classmethod
    def train_steps(cls):
        # data/SkinLesion.py 69-96: as the birds'.
        return [AdditiveGaussianNoise(p=0.2), Perspective(p=0.5, fill_mask=cls.border_label),
                *photographs_photometric()]

    def split_dir(self):
        return self.root / f"ISIC2018_Task1-2_{self.PHASES[self.split]}_Input"

    def find_pairs(self):
        phase = self.PHASES[self.split]
        hint = "download and extract the ISIC 2018 task 1 {} archive there"
        image_dir = require_dir(self.split_dir(), hint.format(f"{phase} input"))
        label_dir = require_dir(self.root / f"ISIC2018_Task1_{phase}_GroundTruth",
                                hint.format(f"{phase} ground truth"))
        return pair_files(
            list(image_dir.glob("*.jpg")), list(label_dir.glob("*_segmentation.png")),
            lambda p: label_dir / f"{p.stem}_segmentation.png",
            lambda p: image_dir / f"{p.name[: -len('_segmentation.png')]}.jpg")


class LiTS(SegmentationDataset):
    """LiTS liver CT as 2-D .npy slices: images in HU, masks 0 background/1 liver/2 tumour.

    Slices are windowed to [-250, 250] HU (the abdominal window) and turned into 3-channel
    uint8 so the RGB pipeline and ImageNet encoders apply unchanged. The released code fed the encoder
    (HU/255 - mean)/std of the clipped float HU; `normalisation` gives the (mean, std) under which the
    Normalizer's (u/255 - mean')/std' of the uint8 u is exactly that of HU = -250 + 500 u/255 (the slice
    quantised to 500/255 HU steps, the one difference left).
    """

    name = "lits"
    classes = ("liver", "tumour", "background")
    small_classes = ("tumour",)
    palette = ((0, 200, 0), (255, 0, 0), (0, 0, 0))
    train_size = eval_size = (512, 512)
    image_suffixes = (".npy",)
    HU_WINDOW = (-250.0, 250.0)
    STORED_TO_CLASS = np.array([2, 0, 1])  # stored 0/1/2 -> background/liver/tumour indices
    RELEASED_BORDER_LABEL = 2  # the released class 0 was background (data/LiTS.py CLASSES), here the last

    @classmethod
    def train_steps(cls):
        """data/LiTS.py 91-120, read on the uint8 window (the project's reading: on the released float HU,
        1.0 clipped noise, brightness-contrast and HSV results to [0, 1] and RandomGamma gave NaN below 0 HU).
        GaussNoise keeps its 10..50 HU^2 variance: (255/500)^2 of that in uint8 levels."""
        levels = ((255 / 500) ** 2 * 10, (255 / 500) ** 2 * 50)
        return [GaussNoise(var_limit=levels, p=0.2), Perspective(p=0.5, fill_mask=cls.border_label),
                OneOf([BrightnessContrast(), RandomGamma()], p=0.9),
                OneOf([Sharpen(), Blur(3), MotionBlur(3)], p=0.9),
                OneOf([BrightnessContrast(), HueSaturationValue()], p=0.9)]

    @classmethod
    def normalisation(cls, mean, std):
        # (HU/255 - m)/s with HU = low + (high - low) u/255 is u (high - low)/(255^2 s) + (low/255 - m)/s,
        # i.e. (u/255 - m')/s' with s' = 255 s/(high - low) and m' = (255 m - low)/(high - low).
        low, high = cls.HU_WINDOW
        return (tuple((255 * m - low) / (high - low) for m in mean),
                tuple(255 * s / (high - low) for s in std))

    def find_pairs(self):
        hint = (f"LiTS needs {self.split}/images/*.npy and {self.split}/masks/*.npy "
                f"under {self.root}")
        image_dir = require_dir(self.root / self.split / "images", hint)
        label_dir = require_dir(self.root / self.split / "masks", hint)
        return pair_files(list(image_dir.glob("*.npy")), list(label_dir.glob("*.npy")),
                          lambda p: label_dir / p.name, lambda p: image_dir / p.name)

    @staticmethod
    def load_slice(path):
        """Load one 2-D .npy slice, raising DataError for corrupt or non-2-D files."""
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{path} cannot be loaded as .npy ({err}): "
                            f"re-export this slice") from err
        if array.ndim != 2:
            raise DataError(f"{path} has shape {array.shape}: LiTS slices must be 2-D (H, W)")
        return array

    @classmethod
    def read_image(cls, path, channels=3):
        """The windowed slice, replicated to `channels` (3 as released; 1 is the slice alone)."""
        low, high = cls.HU_WINDOW
        hu = np.clip(cls.load_slice(path).astype(np.float32), low, high)
        gray = np.rint((hu - low) / (high - low) * 255).astype(np.uint8)
        return np.repeat(gray[..., None], channels, axis=2)

    def read_raw_label(self, path):
        return self.load_slice(path)

    def map_label(self, raw, path):
        bad = raw[(raw != 0) & (raw != 1) & (raw != 2)]
        if bad.size:
            raise DataError(f"{path} contains label value {bad.flat[0]}: LiTS masks must be "
                            f"0 (background), 1 (liver) or 2 (tumour)")
        return self.STORED_TO_CLASS[raw.astype(np.int64)]


class FolderDataset(SegmentationDataset):
    """Your own data (docs/datasets.md): {split}/images/ and {split}/masks/ under the root, and CLASSES_FILE there.

    A mask is the PNG of its image's name (a.jpg: masks/a.png); its pixels are class indices, the positions of the
    classes in the file's list, or, where the file gives colours, those colours. The file's unlabelled class
    becomes the last (the one convention of utils/labels.py). Its training recipe is CamVid's: flip, pad, one of
    {random-sized crop, random crop}, noise, warp; evaluation pads and centre-crops to eval_size.

    `configured(params)` makes the class of one classes file (FOLDER_KEYS, as `read_classes_file` checked them);
    the model spec keeps the params, so a checkpoint evaluates and predicts with no file beside it.
    """

    name = "folder"
    image_suffixes = IMAGE_SUFFIXES
    params = None  # the checked content of the classes file; None in the unconfigured base class
    CLASSES_FILE = "classes.json"

    @classmethod
    def describe(cls, root, saved=None, sizes=None):
        """The classes file beside the splits, checked; without one, `saved` (the checkpoint's or run's). `sizes`
        ({"train_size": [h, w], "eval_size": ...}, --train-size / --eval-size) replace the file's: the params, and
        so the model spec, record the sizes used."""
        path = Path(root) / cls.CLASSES_FILE
        if not path.exists() and saved:
            return saved | {key: list(size) for key, size in (sizes or {}).items()}
        return read_classes_file(path, sizes)

    @classmethod
    def train_steps(cls):
        return CamVid.train_steps.__func__(cls)  # CamVid's recipe: its noise and warp after the crop

    @classmethod
    def configured(cls, params):
        if not params:
            raise DataError(f"the folder data set needs its {cls.CLASSES_FILE} (docs/datasets.md)")
        return folder_class(json.dumps(params, sort_keys=True))

    def __reduce__(self):
        # Loader workers under spawn pickle the data set: its class is made at run time, so rebuild it by params.
        return _new_folder_dataset, (self.params,), self.__dict__

    def split_dir(self):
        return self.root / self.split / "images"

    def find_pairs(self):
        hint = (f"the folder data set needs {self.split}/images/ and {self.split}/masks/ under {self.root} "
                f"(docs/datasets.md)")
        image_dir = require_dir(self.split_dir(), hint)
        mask_dir = require_dir(self.root / self.split / "masks", hint)
        images, masks = {}, []
        for file in sorted(image_dir.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                if file.stem in images:
                    raise DataError(f"{file} and {images[file.stem]} share the name {file.stem}: their masks would "
                                    f"be the same file (rename one)")
                images[file.stem] = file
        for file in sorted(mask_dir.iterdir()):
            if file.suffix == ".png":
                masks.append(file)
            elif file.suffix.lower() in IMAGE_SUFFIXES:
                raise DataError(f"{file} is not read: masks must be .png files (lossless; a JPEG's compression "
                                f"changes class values), convert it")
        return pair_files(list(images.values()), masks, lambda p: mask_dir / f"{p.stem}.png",
                          lambda p: images.get(p.stem, image_dir / f"{p.stem}.*"))

    def read_raw_label(self, path):
        raw = decode(path, cv2.IMREAD_UNCHANGED)
        if raw.ndim == 3 and raw.shape[2] == 3 and self.colours is not None:
            return cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
        if raw.ndim != 2:
            need = ("masks must be single-channel class indices or RGB colours" if self.colours is not None else
                    f"masks must be single-channel class indices (or give \"colours\" in {self.CLASSES_FILE} "
                    f"to read colour masks)")
            raise DataError(f"{path} has {raw.shape[2]} channels: {need}")
        return raw

    def map_label(self, raw, path):
        """File indices (or colours) to class indices: the file's order, with its unlabelled class moved last."""
        if raw.ndim == 3:
            packed = (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]
            position = np.searchsorted(self.colour_keys, packed).clip(0, len(self.colour_keys) - 1)
            unknown = self.colour_keys[position] != packed
            if unknown.any():
                y, x = np.unravel_index(np.argmax(unknown), unknown.shape)
                raise DataError(f"{path} has colour {tuple(int(c) for c in raw[y, x])} at pixel (x={x}, y={y}), which "
                                f"is none of the colours of {self.CLASSES_FILE}: fix the mask or add the colour")
            return self.colour_classes[position]
        bad = raw[raw >= len(self.to_class)]
        if bad.size:
            raise DataError(f"{path} contains label value {int(bad[0])}: the masks of this folder data set must be "
                            f"0..{len(self.to_class) - 1}, the positions of the classes in {self.CLASSES_FILE}")
        return self.to_class[raw.astype(np.int64)]


FOLDER_KEYS = {"classes": "class names, in the order of the mask values 0, 1, ...",
               "unlabelled": "the class that is unlabelled or background (left out of mIoU)",
               "train_size": "[h, w] training crop at --scale 1", "eval_size": "[h, w] evaluation crop at --scale 1",
               "pad_size": "optional [h, w] frames are padded to before cropping (default: eval_size)",
               "colours": "optional [r, g, b] per class: colour masks, and the colours of figures",
               "class_weights": "optional loss weight per class", "small_classes": "optional names of small classes"}


SIZE_FLAGS = {"train_size": "--train-size", "eval_size": "--eval-size"}


def read_classes_file(path, sizes=None):
    """A folder data set's classes file, checked key by key: a DataError names the file and the key. `sizes`
    (the flags' {"train_size": [h, w], ...}) replace the file's, which may then leave them out."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: the folder data set needs its classes file there (docs/datasets.md)")
    try:
        data = json.loads(read_bytes(path))
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err})") from None

    def bad(key, what):
        return DataError(f"{path}: \"{key}\" {what} ({key}: {FOLDER_KEYS[key]})")

    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object with the keys {', '.join(FOLDER_KEYS)}")
    if unknown := sorted(set(data) - set(FOLDER_KEYS)):
        raise DataError(f"{path}: unknown key \"{unknown[0]}\" (the keys are {', '.join(FOLDER_KEYS)})")
    data = data | {key: list(size) for key, size in (sizes or {}).items()}
    for key in ("classes", "unlabelled"):
        if key not in data:
            raise bad(key, "is missing")
    for key, flag in SIZE_FLAGS.items():
        if key not in data:
            raise DataError(f"{path}: \"{key}\" is missing: set it there ({FOLDER_KEYS[key]}) or give {flag} HxW")
    classes = data["classes"]
    if (not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise bad("classes", "must be a list of two or more distinct names")
    if len(classes) > IGNORE_LABEL:  # masks travel as uint8 with IGNORE_LABEL for padding
        raise bad("classes", f"must have at most {IGNORE_LABEL} classes")
    if data["unlabelled"] not in classes:
        raise bad("unlabelled", "must be one of the classes")
    for key in ("train_size", "eval_size", "pad_size"):
        size = data.get(key)
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and v > 0 for v in size)):
            raise bad(key, "must be two positive integers [h, w]")
    if "pad_size" in data and any(p < t for p, t in zip(data["pad_size"], data["train_size"])):
        given = f" (--train-size {'x'.join(map(str, sizes['train_size']))})" if "train_size" in (sizes or {}) else ""
        raise bad("pad_size", f"must be at least train_size {data['train_size']}{given}")
    colours = data.get("colours")
    if colours is not None and not (isinstance(colours, list) and len(colours) == len(classes) and all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in colours)):
        raise bad("colours", f"must be one [r, g, b] (0..255) per class, {len(classes)} in all")
    if colours is not None and len({tuple(c) for c in colours}) != len(colours):
        raise bad("colours", "must differ from class to class (a colour mask names its class by it)")
    weights = data.get("class_weights")
    if weights is not None and not (isinstance(weights, list) and len(weights) == len(classes) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < float("inf") for w in weights)):
        raise bad("class_weights", f"must be one number, 0 or more, per class, {len(classes)} in all")
    small = data.get("small_classes", [])
    if not isinstance(small, list) or any(name not in classes or name == data["unlabelled"] for name in small):
        raise bad("small_classes", "must be a list of class names (not the unlabelled one)")
    return data


@functools.lru_cache(maxsize=None)
def folder_class(params_json):
    """The FolderDataset subclass of one checked classes file (one class per content, so equal files share it)."""
    params = json.loads(params_json)
    names, void = params["classes"], params["unlabelled"]
    order = [name for name in names if name != void] + [void]  # the class indices: void last
    position = {name: names.index(name) for name in order}
    to_class = np.empty(len(names), np.int64)
    to_class[[position[name] for name in order]] = np.arange(len(order))
    train_size, eval_size = tuple(params["train_size"]), tuple(params["eval_size"])
    pad_size = tuple(params.get("pad_size") or eval_size)
    pad_size = tuple(max(p, t) for p, t in zip(pad_size, train_size))  # never below the training crop
    ratio = train_size[1] / train_size[0]
    colours = params.get("colours")
    attributes = dict(
        params=params, classes=tuple(order), to_class=to_class,
        palette=tuple(tuple(colours[position[n]]) for n in order) if colours else default_palette(len(order)),
        class_weights=(tuple(float(params["class_weights"][position[n]]) for n in order)
                       if params.get("class_weights") else None),
        small_classes=tuple(n for n in order if n in params.get("small_classes", [])),
        train_size=train_size, eval_size=eval_size, pad_size=pad_size, sized_crop_ratio=ratio,
        # CamVid's range, train height / 2 .. the padded frame, kept to the frame's width at the crops' aspect.
        sized_crop_heights=(max(1, train_size[0] // 2), min(pad_size[0], int(pad_size[1] / ratio))),
        colours=colours)
    if colours:
        packed = np.array([r << 16 | g << 8 | b for r, g, b in colours], np.int64)
        keys = np.argsort(packed)
        attributes |= dict(colour_keys=packed[keys], colour_classes=to_class[keys])
    return type("FolderDataset", (FolderDataset,), attributes)


def _new_folder_dataset(params):
    cls = FolderDataset.configured(params)
    return cls.__new__(cls)


def default_palette(count):
    """Distinct colours for figures when the classes file gives none: hues around the wheel, the last black."""
    hues = np.arange(count - 1, dtype=np.float64) * 0.618033988749895 % 1.0
    hsv = np.stack([hues * 180, np.full_like(hues, 200), np.full_like(hues, 230)], -1).astype(np.uint8)[None]
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0] if count > 1 else np.zeros((0, 3), np.uint8)
    return tuple(tuple(int(v) for v in colour) for colour in rgb) + ((0, 0, 0),)


# The published data sets, each with its fixed recipe; "folder" is the user's own, configured by its classes file.
DATASETS = {"camvid": CamVid, "cityscapes": Cityscapes, "birds": Birds,
            "skinlesion": SkinLesion, "lits": LiTS}
DATASET_TYPES = DATASETS | {"folder": FolderDataset}  # what --dataset takes


def dataset_class(name, params=None):
    """The class of data set `name` for the parameters its `describe` gave (a model spec's dataset_params)."""
    if name not in DATASET_TYPES:
        raise DataError(f"dataset {name!r} is unknown: use one of {', '.join(DATASET_TYPES)}")
    return DATASET_TYPES[name].configured(params or {})


def build_dataset(name, root, split, transform=None, params=None):
    """Instantiate a registered dataset by name (and its `describe` parameters)."""
    return dataset_class(name, params)(root, split, transform)
