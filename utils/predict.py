"""Segment images of any size with a trained checkpoint: colour masks, overlays and label maps."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models import build_model

from .datasets import DATASETS, DataError, decode
from .engine import load_checkpoint, load_model_state
from .plots import colorize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def predict(path: Path, checkpoint: Path, output_dir: str | None, device: str = "cpu") -> list[Path]:
    """Write <name>_mask.png (colours), <name>_overlay.png and <name>_labels.png (class indices) per image.

    The checkpoint's own config gives the architecture, classes, normalisation and scale; each image is
    resized by that scale, padded to the nearest size the model takes, and its prediction cropped and resized
    back to the original size.
    """
    files = image_files(path)
    for file in files:  # every image readable before the first file is written
        decode(file, cv2.IMREAD_COLOR)
    state = load_checkpoint(checkpoint)
    config = state["config"]
    model = build_model(config["arch"], config["encoder"], None, len(config["classes"]), config["att_depth"],
                        config["patch_size"])
    load_model_state(model, state, checkpoint)
    model.to(device).eval()
    palette = DATASETS[config["dataset"]].palette
    out_dir = Path(output_dir) if output_dir else Path(checkpoint).parent / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        image = cv2.cvtColor(decode(file, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        labels = segment(model, image, config, device)
        colours = colorize(labels, palette)
        overlay = cv2.addWeighted(image, 0.5, colours, 0.5, 0)
        for suffix, picture in (("mask", colours), ("overlay", overlay)):
            written.append(out_dir / f"{file.stem}_{suffix}.png")
            cv2.imwrite(str(written[-1]), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        written.append(out_dir / f"{file.stem}_labels.png")
        cv2.imwrite(str(written[-1]), labels.astype(np.uint8))
    return written


@torch.inference_mode()
def segment(model, image: np.ndarray, config: dict, device: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) class indices at the image's own size."""
    height, width = image.shape[:2]
    scale = config["scale"]
    scaled = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                        interpolation=cv2.INTER_AREA) if scale != 1 else image
    mean, std = (np.asarray(config["normalisation"][k], dtype=np.float32) for k in ("mean", "std"))
    x = torch.from_numpy(((scaled.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)).unsqueeze(0)
    h, w = x.shape[-2:]
    valid_h, valid_w = model.valid_size(h, w)
    x = F.pad(x, (0, valid_w - w, 0, valid_h - h), mode="constant", value=0.0)
    logits, _ = model(x.to(device))
    labels = logits[0, :, :h, :w].argmax(0).cpu().numpy().astype(np.uint8)
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST) if scale != 1 else labels


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"--predict {path} does not exist: give an image file or a folder of images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"--predict {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files
