"""--predict PATH --checkpoint FILE: segment images of any size as the model was evaluated; `segment_image`: the
same from Python, on an image array.

Each input goes through its data set's evaluation pipeline (utils/data/transforms.py, split "predict": the
evaluation pipeline without its crop, i.e. the data set's pre-resize if it has one, the scale, the same
normalisation), is padded to the nearest size the model takes, and its prediction is cropped and resized back to
the input's own size. A network input larger than WHOLE_IMAGE_LIMIT pixels (or than --tile) is segmented in
overlapping windows whose logits are averaged where they overlap: its memory is that of one window and a band of
logits one window high, whatever the image's size.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from utils.config import fitted_overlap
from utils.data.datasets import IMAGE_SUFFIXES, SegmentationDataset, dataset_class, display_rgb
from utils.data.transforms import build_transforms
from utils.engine.checkpoint import load_model
from utils.engine.distributed import log
from utils.engine.normalizer import Normalizer
from utils.errors import DataError
from utils.files import write_atomic
from utils.reporting.plots import colorize

# A network input above this many pixels is tiled even without --tile: a whole 10000x10000 image through a UNet
# takes tens of GB, a 2048x2048 one about 2 GB on the CPU (CamVid's 960x720 and Cityscapes' 2048x1024 fit whole).
WHOLE_IMAGE_LIMIT = 2048 * 2048
AUTO_TILE = 1024  # the window then (network pixels)
TILE_OVERLAP = 128  # network pixels shared by neighbouring windows (main.py's TILE_OVERLAP is the flag's default)


def segment_image(model, image: np.ndarray, scale: float | None = None, tile: int = 0,
                  tile_overlap: int | None = None) -> np.ndarray:
    """Segment one image array with a loaded model exactly as --predict does; (H, W) uint8 class indices.

    `model`: `utils.engine.checkpoint.load_model(path)[0]` (or any model of `build_model` with its data set in
    its spec), on the device to run on; it is put in eval mode. `image`: uint8 (H, W, C) with C the model's
    `spec.in_channels` (RGB order for 3, RGBA for 4), or (H, W) for one channel. `scale`: the checkpoint's unless
    given. `tile`: window size in network pixels, 0 for whole-image inference up to WHOLE_IMAGE_LIMIT pixels
    (tiles of AUTO_TILE above); windows share `tile_overlap` pixels, where their logits are averaged (None:
    TILE_OVERLAP, or a quarter of a smaller `tile`, as --tile without --tile-overlap).
    """
    spec = model.spec if scale is None else model.spec.replace(scale=scale)
    image = image[..., None] if image.ndim == 2 else image
    if image.dtype != np.uint8 or image.shape[2] != spec.in_channels:
        raise ValueError(f"image of {image.dtype} {tuple(image.shape)}: the model takes uint8 (H, W, "
                         f"{spec.in_channels}) images")
    device = next(model.parameters()).device
    normalizer = Normalizer(spec.mean, spec.std, device)
    model.eval()
    transform = build_transforms(dataset_class(spec.dataset, spec.dataset_params), "predict", spec.scale)
    overlap = fitted_overlap(tile, TILE_OVERLAP) if tile_overlap is None else tile_overlap
    return segment(model, transform, normalizer, image, window_size(model, transform, image, tile), overlap)


def window_size(model, transform, image: np.ndarray, tile: int) -> int:
    """The window of `tile`, or 0 (whole) where the image's network input fits WHOLE_IMAGE_LIMIT, else AUTO_TILE."""
    if tile:
        return tile
    h, w = network_input_size(transform, image)
    return AUTO_TILE if h * w > WHOLE_IMAGE_LIMIT else 0


def network_input_size(transform, image: np.ndarray) -> tuple[int, int]:
    """The (h, w) the transform gives the image (its pre-resize and scale), from a 1-pixel-deep stand-in."""
    return tuple(transform(image=np.zeros((*image.shape[:2], 1), np.uint8))["image"].shape[-2:])


def predict(path: Path, checkpoint: Path, output_dir: str | None, device: str = "cpu", scale: float | None = None,
            overwrite: bool = False, tile: int = 0, tile_overlap: int = TILE_OVERLAP) -> list[Path]:
    """Write <name>_mask.png (colours), <name>_overlay.png and <name>_labels.png (class indices) per input.

    The checkpoint's spec gives the architecture, classes, data set, channels, normalisation and scale (`scale`
    overrides the last). The inputs are streamed (read one, write its files, then the next: a folder of large
    images needs the memory of one); every file is written atomically and checked; existing outputs are replaced
    only with `overwrite`. Where the inputs differ from what the model was trained on, a note says so, and
    predict.json in the output folder records the settings and the notes of every call.
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
    notes = Notes(model.spec, dataset)
    if scale is not None:
        notes.say(f"--scale {scale:g} given: segmenting at {scale:g}, where the model was trained at --scale "
                  f"{model.spec.scale:g}")
    written = []
    for file, (mask, overlay_path, labels_path) in zip(files, targets):
        notes.check_channels(file)
        image = read_input(file, dataset, spec.in_channels)
        notes.check_frame(file, image.shape[:2])
        try:
            window = window_size(model, transform, image, tile)
            if window and not tile:
                h, w = network_input_size(transform, image)
                notes.say(f"{file.name} is {w}x{h} network pixels at --scale {spec.scale:g}, more "
                          f"than {WHOLE_IMAGE_LIMIT // 2**20} megapixels: segmented in {window}-pixel windows "
                          f"(--tile SIZE sets them)")
            labels = segment(model, transform, normalizer, image, window, tile_overlap)
        except cv2.error:  # the resize to a size of 0 pixels
            raise DataError(f"{file}: {image.shape[1]}x{image.shape[0]} pixels is too small to segment at scale "
                            f"{spec.scale}") from None
        colours = colorize(labels, dataset.palette)
        overlay = cv2.addWeighted(display_rgb(image), 0.5, colours, 0.5, 0)
        written += [write_png(mask, cv2.cvtColor(colours, cv2.COLOR_RGB2BGR)),
                    write_png(overlay_path, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)),
                    write_png(labels_path, labels.astype(np.uint8))]
    record(out_dir / "predict.json", dict(checkpoint=str(checkpoint), inputs=str(path), scale=spec.scale,
                                          scale_given=scale is not None, trained_scale=model.spec.scale, tile=tile,
                                          tile_overlap=tile_overlap, notes=notes.said))
    return written


class Notes:
    """One line each, once, where an input differs from what the model was trained on."""

    def __init__(self, spec, dataset):
        self.spec, self.dataset, self.said, self.sizes = spec, dataset, [], set()

    def say(self, message: str) -> None:
        if message not in self.said:
            self.said.append(message)
            log(f"note: {message}")

    def check_frame(self, file: Path, size) -> None:
        """A data set of one frame size (CamVid 960x720, Cityscapes 2048x1024): other frames show its objects at
        another size than the model learnt them (at the same --scale)."""
        frame = self.dataset.frame_size
        if frame is None or tuple(size) == tuple(frame) or tuple(size) in self.sizes:
            return
        self.sizes.add(tuple(size))
        ratio = size[1] / frame[1]
        fits = 1 / 64 <= self.spec.scale / ratio <= 4
        hint = f"; --scale {self.spec.scale / ratio:g} would show them at that size" if fits else ""
        self.say(f"{file.name} (and any other input of its size) is {size[1]}x{size[0]}, but the model was trained "
                 f"on {self.dataset.name} frames of {frame[1]}x{frame[0]}: its objects are about {ratio:g} times the "
                 f"size it learnt{hint}")

    def check_channels(self, file: Path) -> None:
        """A grey or RGBA image read by an RGB model is converted (read_channels): say so."""
        if self.spec.in_channels != 3 or file.suffix.lower() not in IMAGE_SUFFIXES:
            return
        try:
            with Image.open(file) as picture:
                found = len(picture.getbands())
        except (OSError, ValueError):  # unreadable: read_input says so
            return
        if found != 3:
            how = "replicated to RGB" if found == 1 else "read as RGB (the rest dropped)"
            self.say(f"{file.name} has {found} channel{'s' * (found != 1)}, the model takes 3 (RGB): {how}")


def record(path: Path, entry: dict) -> None:
    """Append this call's settings and notes to predict.json (a list, one entry per call into the folder)."""
    try:
        entries = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError):
        entries = []
    entries = entries if isinstance(entries, list) else [entries]
    try:
        write_atomic(path, json.dumps(entries + [entry], indent=2) + "\n")
    except OSError as error:
        raise DataError(f"{path} cannot be written ({error.strerror}): the predictions were written") from None


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
def segment(model, transform, normalizer, image: np.ndarray, tile: int = 0,
            tile_overlap: int = TILE_OVERLAP) -> np.ndarray:
    """(H, W, C) uint8 -> (H, W) class indices at the image's own size; in `tile`-pixel windows if given and the
    network input is larger than one (else whole, as one window is)."""
    height, width = image.shape[:2]
    x = transform(image=image)["image"].unsqueeze(0)  # uint8: normalised window by window
    h, w = x.shape[-2:]
    forward = window_logits(model, normalizer)
    if not tile or (h <= tile and w <= tile):
        labels = forward(x).argmax(0)
    else:
        size = model.valid_size(tile, tile)
        labels = torch.cat([rows.argmax(0) for _, rows in tiled_logit_rows(forward, x, size, tile_overlap)])
    labels = labels.cpu().numpy().astype(np.uint8)
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST) if (h, w) != (height, width) else labels


def window_logits(model, normalizer):
    """uint8 (1, C, h, w) -> the model's (classes, h, w) logits: normalised, padded to a size it takes, cropped."""
    def forward(x):
        h, w = x.shape[-2:]
        valid_h, valid_w = model.valid_size(h, w)
        x = F.pad(normalizer(x), (0, valid_w - w, 0, valid_h - h), mode="constant", value=0.0)  # 0: the mean colour
        return model(x)[0][0, :, :h, :w]
    return forward


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Where the windows along one side start: every window - overlap pixels, the last one flush with the end."""
    if length <= window:
        return [0]
    if not 0 <= overlap < window:
        raise ValueError(f"tile overlap {overlap} is not valid: 0 or more and less than the tile ({window})")
    return [*range(0, length - window, window - overlap), length - window]


def tiled_logit_rows(forward, x, size, overlap: int):
    """Yield (top, logits of rows top.. as the mean over the windows covering each pixel), band by band, top to
    bottom. Rows above the next band's windows are final: only one band of sums (window high) is kept."""
    height, width = x.shape[-2:]
    window_h, window_w = min(size[0], height), min(size[1], width)
    ys, xs = window_starts(height, window_h, overlap), window_starts(width, window_w, overlap)
    sums = counts = None
    top = 0  # the first row of the band `sums` holds
    for y in ys:
        if sums is not None and y > top:  # rows top..y are covered by no later window
            yield top, sums[:, : y - top] / counts[: y - top]
            sums = torch.cat([sums[:, y - top:], sums.new_zeros(sums.shape[0], y - top, width)], dim=1)
            counts = torch.cat([counts[y - top:], counts.new_zeros(y - top, width)])
            top = y
        for left in xs:
            logits = forward(x[..., y: y + window_h, left: left + window_w])
            if sums is None:
                sums = logits.new_zeros(logits.shape[0], window_h, width)
                counts = logits.new_zeros(window_h, width)
            sums[:, y - top: y - top + window_h, left: left + window_w] += logits
            counts[y - top: y - top + window_h, left: left + window_w] += 1
    yield top, sums / counts


def read_input(file: Path, dataset, channels: int = 3) -> np.ndarray:
    """uint8 (H, W, channels): the data set's own reader for its own format (LiTS .npy slices windowed), else an
    image (read_channels: RGB, grey, RGBA, N-channel TIFF)."""
    reader = dataset if file.suffix.lower() in dataset.image_suffixes else SegmentationDataset
    return reader.read_image(file, channels)


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
