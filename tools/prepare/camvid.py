"""CamVid: the full-resolution release's 32 colours to the 11 SegNet classes + void, in the standard split."""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from utils.data.datasets import SPLITS, CamVid
from utils.errors import DataError

from .common import PrepareError, progress, refuse_existing, require_pairs, staged_output
from .download import source_folder
from .sources import Entry, collect, read_entry


CAMVID_CLASSES = CamVid.classes  # the label index of each class is its position here
# The 32 colours of the release's label_colors.txt (Brostow et al., "Semantic object classes in video",
# 2009) and the class of SegNet / the AFMA paper each joins. The grouping is the one of MathWorks'
# camvidPixelLabelIDs (Computer Vision Toolbox example "Semantic Segmentation Using Deep Learning"), which
# groups the 32 classes into 11 "following the original SegNet training methodology"; the SegNet authors
# published their 11-class labels but not the table. Disputed choices, kept as in that table: the lane
# markings (LaneMkgsDriv, LaneMkgsNonDriv) join road (SegNet's 12-class release had a separate road-marking
# class that is merged into road for the 11-class benchmark); Child, CartLuggagePram and Animal join
# pedestrian (not void); TrafficCone joins pole; Misc_Text and TrafficLight join signsymbol; RoadShoulder
# and ParkingBlock join pavement; Train and OtherMoving join car; MotorcycleScooter joins bicyclist.
CAMVID_COLOURS = (
    ((64, 128, 64), "Animal", "pedestrian"),
    ((192, 0, 128), "Archway", "building"),
    ((0, 128, 192), "Bicyclist", "bicyclist"),
    ((0, 128, 64), "Bridge", "building"),
    ((128, 0, 0), "Building", "building"),
    ((64, 0, 128), "Car", "car"),
    ((64, 0, 192), "CartLuggagePram", "pedestrian"),
    ((192, 128, 64), "Child", "pedestrian"),
    ((192, 192, 128), "Column_Pole", "pole"),
    ((64, 64, 128), "Fence", "fence"),
    ((128, 0, 192), "LaneMkgsDriv", "road"),
    ((192, 0, 64), "LaneMkgsNonDriv", "road"),
    ((128, 128, 64), "Misc_Text", "signsymbol"),
    ((192, 0, 192), "MotorcycleScooter", "bicyclist"),
    ((128, 64, 64), "OtherMoving", "car"),
    ((64, 192, 128), "ParkingBlock", "pavement"),
    ((64, 64, 0), "Pedestrian", "pedestrian"),
    ((128, 64, 128), "Road", "road"),
    ((128, 128, 192), "RoadShoulder", "pavement"),
    ((0, 0, 192), "Sidewalk", "pavement"),
    ((192, 128, 128), "SignSymbol", "signsymbol"),
    ((128, 128, 128), "Sky", "sky"),
    ((64, 128, 192), "SUVPickupTruck", "car"),
    ((0, 0, 64), "TrafficCone", "pole"),
    ((0, 64, 64), "TrafficLight", "signsymbol"),
    ((192, 64, 128), "Train", "car"),
    ((128, 128, 0), "Tree", "tree"),
    ((192, 128, 192), "Truck_Bus", "car"),
    ((64, 0, 64), "Tunnel", "building"),
    ((192, 192, 0), "VegetationMisc", "tree"),
    ((0, 0, 0), "Void", "unlabelled"),
    ((64, 192, 0), "Wall", "building"),
)
CAMVID_SIZE = (960, 720)  # (width, height) of every frame and label of the full-resolution release
CAMVID_ARCHIVES = ("701_StillsRaw_full.zip", "LabeledApproved_full.zip")
CAMVID_SPLIT_DIR = Path(__file__).resolve().parents[1] / "camvid_splits"
UNKNOWN_COLOUR = 255  # marks colours outside the table during the lookup
PNG_FLAGS = [cv2.IMWRITE_PNG_COMPRESSION, 6]  # level 9 is 5x slower for 8% smaller labels


@functools.cache
def colour_table() -> np.ndarray:
    """Class index of every packed colour 0xRRGGBB (UNKNOWN_COLOUR for the 2^24 - 32 others).

    A 16 MB table turns a whole label into indices with one fancy-indexing step, several times faster
    than sorting or searching the label's colours.
    """
    table = np.full(1 << 24, UNKNOWN_COLOUR, np.uint8)
    for (r, g, b), _, cls in CAMVID_COLOURS:
        table[r << 16 | g << 8 | b] = CAMVID_CLASSES.index(cls)
    return table


def colours_to_indices(rgb: np.ndarray, where: str) -> np.ndarray:
    """Map an (H, W, 3) RGB colour label to (H, W) uint8 class indices, all pixels at once."""
    packed = rgb[..., 0].astype(np.int32) << 16 | rgb[..., 1].astype(np.int32) << 8 | rgb[..., 2]
    index = colour_table()[packed]
    unknown = index == UNKNOWN_COLOUR
    if unknown.any():
        y, x = np.unravel_index(np.argmax(unknown), unknown.shape)
        raise PrepareError(f"{where} has colour {tuple(int(c) for c in rgb[y, x])} at pixel (x={x}, y={y}), "
                           f"which is none of the 32 CamVid colours (label_colors.txt): fix the label, or "
                           f"add the colour to CAMVID_COLOURS in {Path(__file__).name}")
    return index


def read_split_lists() -> dict[str, list[str]]:
    """The standard 367/101/233 frame names (SegNet, AFMA) from tools/camvid_splits/."""
    splits = {}
    for split in SPLITS:
        path = CAMVID_SPLIT_DIR / f"{split}.txt"
        try:
            splits[split] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as err:
            raise PrepareError(f"{path} cannot be read ({err.strerror}): restore it from the repository")
    return splits


def camvid_place(rel: str) -> str | None:
    """frame/NAME for NAME.png, label/NAME for NAME_L.png; other files are not CamVid's."""
    name = rel.rsplit("/", 1)[-1]
    if name.endswith("_L.png"):
        return f"label/{name[:-6]}"
    return f"frame/{name[:-4]}" if name.endswith(".png") else None


def plan_camvid(files: dict[str, Entry], splits: dict[str, list[str]], source: Path,
                allow_partial: bool) -> list[tuple[str, str, Entry, Entry]]:
    """Pair frames with labels and place them in the splits, or raise naming the first bad file."""
    frames = {key[6:]: entry for key, entry in files.items() if key.startswith("frame/")}
    labels = {key[6:]: entry for key, entry in files.items() if key.startswith("label/")}
    if not frames and not labels:
        raise PrepareError(f"{source} holds no CamVid frames (NAME.png) or labels (NAME_L.png): pass the "
                           f"folder holding {' and '.join(CAMVID_ARCHIVES)} or their extracted folders, "
                           f"or add --download")
    require_pairs(frames, labels,
                  lambda name: f"{frames[name].where()} has no label {name}_L.png in {source}: add it (from "
                               f"LabeledApproved_full.zip) or remove the frame",
                  lambda name: f"{labels[name].where()} has no frame {name}.png in {source}: add it (from "
                               f"701_StillsRaw_full.zip) or remove the label")
    listed = {name for names in splits.values() for name in names}
    if strays := sorted(frames.keys() - listed):
        raise PrepareError(f"{frames[strays[0]].where()} is in no split list ({CAMVID_SPLIT_DIR}/"
                           f"{{train,val,test}}.txt): CamVid has exactly these 701 frames, so remove "
                           f"other PNGs from --source")
    missing = [(split, name) for split in SPLITS for name in splits[split] if name not in frames]
    if missing and not allow_partial:
        split, name = missing[0]
        raise PrepareError(f"{name}.png (in {CAMVID_SPLIT_DIR / split}.txt) is missing from {source}, and "
                           f"{len(missing) - 1} more of the 701 frames: add them, or pass "
                           f"--allow-partial for a subset")
    plan = [(split, name, frames[name], labels[name])
            for split in SPLITS for name in sorted(splits[split]) if name in frames]
    for split in SPLITS:
        if not any(step[0] == split for step in plan):
            raise PrepareError(f"no frame of the {split} split ({CAMVID_SPLIT_DIR / split}.txt) is in "
                               f"{source}: main.py needs every split")
    return plan


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log (e.g. "PNG input buffer is incomplete") while decoding: a corrupt file
    is reported once, by the `error:` line that names it."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def decode_png(entry: Entry, data: bytes) -> np.ndarray:
    """Decode a CamVid PNG as RGB and check it has the release's 960x720 size."""
    with quiet_opencv():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PrepareError(f"{entry.where()} cannot be decoded as an image: the file is corrupt or "
                           f"truncated (extract or download it again)")
    height, width = image.shape[:2]
    if (width, height) != CAMVID_SIZE:
        raise PrepareError(f"{entry.where()} is {width}x{height}, not {CAMVID_SIZE[0]}x{CAMVID_SIZE[1]}: "
                           f"use the full-resolution release ({' and '.join(CAMVID_ARCHIVES)})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_camvid_pair(out: Path, split: str, name: str, frame: Entry, label: Entry) -> None:
    """Copy the frame's PNG bytes unchanged and write the label as a single-channel index PNG."""
    frame_bytes = read_entry(frame)
    decode_png(frame, frame_bytes)
    index = colours_to_indices(decode_png(label, read_entry(label)), label.where())
    ok, encoded = cv2.imencode(".png", index, PNG_FLAGS)
    if not ok:
        raise PrepareError(f"cannot encode the label of {label.where()} as PNG")
    (out / split / f"{name}.png").write_bytes(frame_bytes)
    (out / f"{split}annot" / f"{name}.png").write_bytes(encoded.tobytes())


def is_segnet_layout(source: Path) -> bool:
    """The folders main.py reads (the SegNet tutorial's 480x360 copy has them too), rather than the release."""
    return any((source / f"{split}annot").is_dir() for split in SPLITS)


def check_segnet_layout(source: Path, splits: dict[str, list[str]], allow_partial: bool) -> str:
    """Check a folder already in main.py's layout as main.py will read it (pairs, sizes, labels 0..11), and
    against the standard split lists; returns what main.py will read, or raises naming the first problem."""
    dataset = CamVid.configured(CamVid.describe(source))
    counts = []
    for split in SPLITS:
        try:
            data = dataset(source, split)
            data.validate()
        except DataError as err:
            raise PrepareError(str(err)) from None
        names = {image.stem for image, _ in data.pairs}
        listed = CAMVID_SPLIT_DIR / f"{split}.txt"
        if strays := sorted(names - set(splits[split])):
            raise PrepareError(f"{source / split / strays[0]}.png is not in {listed} ({len(strays)} frames of "
                               f"{split}/ are not): the standard split puts each CamVid frame in one list; move or "
                               f"remove it")
        if missing := sorted(set(splits[split]) - names):
            if not allow_partial:
                raise PrepareError(f"{source / split / missing[0]}.png is missing ({len(missing)} of the "
                                   f"{len(splits[split])} frames of {listed} are): add them, or pass "
                                   f"--allow-partial for a subset")
        counts.append(f"{len(names)} {split}")
    h, w = dataset.frame_size
    size = (f"{w}x{h} frames: the data set at half size, for --scale 0.5 (main.py's default) or less"
            if dataset.frame_scale != 1 else f"{w}x{h} frames: the full-resolution data set")
    return f"{', '.join(counts)}, {size}"


def prepare_camvid(args: argparse.Namespace) -> int:
    if is_segnet_layout(Path(args.source)):
        found = check_segnet_layout(Path(args.source), read_split_lists(), args.allow_partial)
        print(f"{args.source} is already the layout main.py reads, checked ({found}; labels 0..11, the split "
              f"lists of {CAMVID_SPLIT_DIR}): nothing to convert, nothing written")
        print(f"ready: use --data-dir {args.source}")
        return 0
    refuse_existing(Path(args.out), Path(args.source), args.force)
    source, out, splits = source_folder(args), Path(args.out), read_split_lists()
    wanted = [name for names in splits.values() for name in names]
    files = collect(source, out, CAMVID_ARCHIVES, camvid_place,
                    lambda found: all(f"frame/{n}" in found and f"label/{n}" in found for n in wanted))
    plan = plan_camvid(files, splits, source, args.allow_partial)
    with staged_output(out, source, args.force) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir()
            (tmp / f"{split}annot").mkdir()
        for split, name, frame, label in progress(plan, "camvid", "frame"):
            write_camvid_pair(tmp, split, name, frame, label)
    counts = ", ".join(f"{sum(step[0] == split for step in plan)} {split}" for split in SPLITS)
    print(f"wrote {len(plan)} CamVid frames and labels ({counts}) to {out}")
    print(f"ready: use --data-dir {out}")
    return 0

