"""--predict PATH --checkpoint FILE: segment images of any size as the model was evaluated.

Each input goes through its data set's evaluation pipeline (utils/data/transforms.py, split "predict": the
evaluation pipeline without its crop, i.e. the data set's pre-resize if it has one, the scale, the same
normalisation), is padded to the nearest
size the model takes, and its prediction is cropped and resized back to the input's own size.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from utils.data.datasets import IMAGE_SUFFIXES, SegmentationDataset, dataset_class
from utils.data.transforms import build_transforms
from utils.engine.checkpoint import load_model
from utils.engine.normalizer import Normalizer
from utils.errors import DataError
from utils.files import write_atomic
from utils.reporting.plots import colorize


def predict(path: Path, checkpoint: Path, output_dir: str | None, device: str = "cpu",
            scale: float | None = None, overwrite: bool = False) -> list[Path]:
    """Write <name>_mask.png (colours), <name>_overlay.png and <name>_labels.png (class indices) per input.

    The checkpoint's spec gives the architecture, classes, data set, normalisation and scale (`scale`
    overrides the last). The inputs are streamed (read one, write its files, then the next: a folder of large
    images needs the memory of one); every file is written atomically and checked; existing outputs are replaced
    only with `overwrite`.
    """
    model, _ = load_model(checkpoint)
    spec = model.spec if scale is None else model.spec.replace(scale=scale)
    dataset = dataset_class(spec.dataset, spec.dataset_params)
    files = input_files(path, dataset)
    out_dir = Path(output_dir) if output_dir else Path(checkpoint).parent / "predictions"
    names = output_names(files)
    targets = [[out_dir / f"{name}_{suffix}.png" for suffix in ("mask", "overlay", "labels")] for name in names]
    existing = [target for group in targets for target in group if target.exists()]
    if existing and not overwrite:
        raise DataError(f"{existing[0]} exists ({len(existing)} of the outputs do): pass --overwrite to replace them, "
                        f"or choose another --output-dir")
    transform = build_transforms(dataset, "predict", spec.scale)
    normalizer = Normalizer(spec.mean, spec.std, device)
    model.to(device, memory_format=normalizer.memory_format).eval()  # the layout of its inputs
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"--output-dir {out_dir} cannot be created ({error.strerror}): choose a folder you can "
                        f"write") from None
    written = []
    for file, (mask, overlay_path, labels_path) in zip(files, targets):
        image = read_input(file, dataset)
        try:
            labels = segment(model, transform, normalizer, image)
        except cv2.error:  # the resize to a size of 0 pixels
            raise DataError(f"{file}: {image.shape[1]}x{image.shape[0]} pixels is too small to segment at scale "
                            f"{spec.scale}") from None
        colours = colorize(labels, dataset.palette)
        overlay = cv2.addWeighted(image, 0.5, colours, 0.5, 0)
        written += [write_png(mask, cv2.cvtColor(colours, cv2.COLOR_RGB2BGR)),
                    write_png(overlay_path, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)),
                    write_png(labels_path, labels.astype(np.uint8))]
    return written


def write_png(path: Path, picture: np.ndarray) -> Path:
    """cv2.imwrite reports a failed write only by returning False: encode, then write atomically, and say so."""
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise DataError(f"{path} cannot be encoded as PNG")
    try:
        return write_atomic(path, encoded.tobytes())
    except OSError as error:  # write_atomic's WriteError names the cause in `reason`
        raise DataError(f"{path} cannot be written ({getattr(error, 'reason', error.strerror)}): nothing more was "
                        f"written") from None


@torch.inference_mode()
def segment(model, transform, normalizer, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) class indices at the image's own size."""
    height, width = image.shape[:2]
    x = normalizer(transform(image=image)["image"].unsqueeze(0))
    h, w = x.shape[-2:]
    valid_h, valid_w = model.valid_size(h, w)
    x = F.pad(x, (0, valid_w - w, 0, valid_h - h), mode="constant", value=0.0)  # 0: the mean colour
    logits, _ = model(x)
    labels = logits[0, :, :h, :w].argmax(0).cpu().numpy().astype(np.uint8)
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST) if (h, w) != (height, width) else labels


def read_input(file: Path, dataset) -> np.ndarray:
    """uint8 RGB: the data set's own reader for its own format (LiTS .npy slices windowed), else an image."""
    reader = dataset if file.suffix.lower() in dataset.image_suffixes else SegmentationDataset
    return reader.read_image(file)


def input_files(path: Path, dataset) -> list[Path]:
    """The file, or the folder's files that the data set can read (its own formats and common images)."""
    suffixes = tuple(dict.fromkeys(dataset.image_suffixes + IMAGE_SUFFIXES))
    if path.is_file():
        if path.suffix.lower() not in suffixes:
            raise DataError(f"--predict {path}: {dataset.name} models read {', '.join(suffixes)} files")
        return [path]
    if not path.is_dir():
        raise DataError(f"--predict {path} does not exist: give an image file or a folder of images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"--predict {path} holds no inputs ({', '.join(suffixes)})")
    return files


def output_names(files: list[Path]) -> list[str]:
    """One output name per input, never shared: the stem, or stem_extension where stems collide."""
    stems = [file.stem for file in files]
    names = [f"{file.stem}_{file.suffix[1:].lower()}" if stems.count(file.stem) > 1 else file.stem for file in files]
    if len(set(names)) < len(names):  # e.g. a.JPG and a.jpg on a case-sensitive file system
        names = [file.name.replace(".", "_") for file in files]
    return names
