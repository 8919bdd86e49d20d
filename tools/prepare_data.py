"""Prepare the AFMA data sets: from the official releases to the folder layouts main.py reads.

    python tools/prepare_data.py camvid --source PATH --out data/CamVid   # convert (PATH: the two zips or folders)
    python tools/prepare_data.py lits --source PATH --out data/LiTS       # slice NIfTI volumes into .npy
    python tools/prepare_data.py birds --source PATH                      # check (and --out: assemble)
    python tools/prepare_data.py skinlesion --source PATH --download --out data/ISIC2018
    python tools/prepare_data.py cityscapes --source PATH                 # check, make train-id labels

camvid: the official full-resolution release labels 32 classes by colour; main.py reads the 11 classes + void
of SegNet and the AFMA paper as index PNGs, in the standard 367/101/233 split (tools/camvid_splits/).
lits: LiTS ships 3-D NIfTI volumes; main.py reads 2-D .npy slices. The volumes are split into train/val/test
BY VOLUME (slices of one patient are nearly identical, so a per-slice split would leak test patients into
training). By default only slices that contain liver are kept. Both are this project's own choices: neither
the AFMA paper nor its released code says which slices were used or how the volumes were split. Slices without
liver are about 2/3 of a volume and nearly all background, so they would fill the training set with empty
masks (--all-slices keeps every slice; split.json records the policy, the seed and the split).
birds, skinlesion, cityscapes: the releases already come in the layout main.py reads, so the tool checks a
download against the expected files and counts, assembles the layout with --out when the files are spread
over archives or folders, and creates the Cityscapes train-id labels.

Every problem stops the run with an `error: ...` line that names the file and says what to do (exit status
2). Output is built in a temporary folder beside --out and renamed at the end, so a failed or interrupted
run leaves nothing half-written, and the output is byte-identical from run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import importlib
import json
import os
import random
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages
# The data sets' constants have one home, the readers main.py uses; the tool writes what they read.
from utils.data.datasets import SPLITS, CamVid, Cityscapes, LiTS, SkinLesion  # noqa: E402

EXIT_ERROR = 2
FIRST_FEW = 5  # offending paths listed per problem; the rest are counted
# Written into every output folder: --force replaces only folders that hold it (never the user's own).
MARKER = ".prepare_data"
MARKER_TEXT = "written by tools/prepare_data.py: its --force may replace this folder\n"

# ---- CamVid -------------------------------------------------------------------------------------------------

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
CAMVID_SPLIT_DIR = Path(__file__).resolve().parent / "camvid_splits"
UNKNOWN_COLOUR = 255  # marks colours outside the table during the lookup
PNG_FLAGS = [cv2.IMWRITE_PNG_COMPRESSION, 6]  # level 9 is 5x slower for 8% smaller labels

# ---- LiTS ---------------------------------------------------------------------------------------------------

HU_WINDOW = LiTS.HU_WINDOW  # the abdominal window of the AFMA LiTS experiments
LITS_FILE = re.compile(r"(volume|segmentation)-(\d+)\.nii(\.gz)?")
SLICE_POLICY = {"liver": "only axial slices whose mask contains liver or tumour (label 1 or 2)",
                "all": "every axial slice"}

# ---- Downloads and checks -----------------------------------------------------------------------------------

# Where each archive comes from:
# - CamVid: the release page http://web4.cs.ucl.ac.uk/staff/g.brostow/MotionSegRecData/ (Brostow et al.);
#   MathWorks' "Semantic Segmentation Using Deep Learning" example downloads the same two files.
# - CUB-200-2011: CaltechDATA records 65de6-vp158 (images and lists) and w9d68-gec53 (segmentation masks,
#   not part of CUB_200_2011.tgz), linked from https://www.vision.caltech.edu/datasets/cub_200_2011/.
# - ISIC 2018 task 1: the challenge's data page https://challenge.isic-archive.com/data/#2018.
# None could be fetched from the machine this was written on (offline), so they are not verified live.
CAMVID_URL = "http://web4.cs.ucl.ac.uk/staff/g.brostow/MotionSegRecData"
ISIC_URL = "https://isic-challenge-data.s3.amazonaws.com/2018"
DOWNLOADS = {
    "camvid": ((f"{CAMVID_URL}/files/701_StillsRaw_full.zip", "701_StillsRaw_full.zip"),
               (f"{CAMVID_URL}/data/LabeledApproved_full.zip", "LabeledApproved_full.zip")),
    "birds": (("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
               "CUB_200_2011.tgz"),
              ("https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz?download=1",
               "segmentations.tgz")),
    "skinlesion": tuple((f"{ISIC_URL}/{name}", name) for name in (
        "ISIC2018_Task1-2_Training_Input.zip", "ISIC2018_Task1_Training_GroundTruth.zip",
        "ISIC2018_Task1-2_Validation_Input.zip", "ISIC2018_Task1_Validation_GroundTruth.zip",
        "ISIC2018_Task1-2_Test_Input.zip", "ISIC2018_Task1_Test_GroundTruth.zip")),
}
NO_DOWNLOAD = {
    "lits": "LiTS cannot be downloaded by this tool: it needs a registration "
            "(https://competitions.codalab.org/competitions/17094); put the volume-N.nii and "
            "segmentation-N.nii files of Training Batch 1 and 2 into {folder} by hand",
    "cityscapes": "Cityscapes cannot be downloaded by this tool: it needs a registration "
                  "(https://www.cityscapes-dataset.com/downloads/); put leftImg8bit_trainvaltest.zip and "
                  "gtFine_trainvaltest.zip (or their extracted folders) into {folder} by hand",
}
USER_AGENT = "afma-prepare-data/1.0 (Python urllib)"
TIMEOUT_S = 60
CHUNK = 1 << 20
# Counts of the complete releases; tests patch this table, users pass --allow-partial for subsets.
EXPECTED_COUNTS = {
    "birds": {"images": 11788, "train": 5994, "test": 5794, "classes": 200},
    "skinlesion": {"Training": 2594, "Validation": 100, "Test": 1000},
    "cityscapes": {"train": 2975, "val": 500, "test": 1525},
}


class PrepareError(Exception):
    """A problem the user must fix; main() prints it as an `error:` line and exits with status 2."""


# ---- Source files: folders and archives ---------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One file of a download: a file on disk, or a member `rel` of a zip/tar archive."""

    rel: str  # '/'-separated path below --source (disk) or inside the archive
    disk: Path | None = None
    archive: Path | None = None

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    def where(self) -> str:
        """The file as messages name it: a path, or archive:member."""
        return str(self.disk) if self.disk else f"{self.archive}:{self.rel}"


_ARCHIVES: dict[Path, zipfile.ZipFile | tarfile.TarFile] = {}
_TAR_MEMBERS: dict[Path, dict[str, tarfile.TarInfo]] = {}


def list_archive(path: Path) -> list[str]:
    """List an archive's files after reading it completely, once per run.

    Reading everything first matters because a truncated download often still opens (a tgz lists its
    members up to the break), and would otherwise fail half-way through the conversion.
    """
    if path in _ARCHIVES:
        archive = _ARCHIVES[path]
        return list(_TAR_MEMBERS[path]) if path in _TAR_MEMBERS else zip_files(archive)
    try:
        if path.name.removesuffix(".part").endswith(".zip"):
            archive = zipfile.ZipFile(path)
            bad = archive.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
            names = zip_files(archive)
        else:
            archive = tarfile.open(path, "r:*")
            _TAR_MEMBERS[path] = read_tar(archive)
            names = list(_TAR_MEMBERS[path])
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as err:
        reason = " ".join(str(err).split())  # tarfile's reasons span lines; errors are one line
        raise PrepareError(f"{path} is truncated or corrupt ({reason}): delete it and download it "
                           f"again") from err
    _ARCHIVES[path] = archive
    return names


def zip_files(archive: zipfile.ZipFile) -> list[str]:
    return [info.filename for info in archive.infolist() if not info.is_dir()]


def read_tar(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Read every member of a tar to its end (a gzip stream is only checked when read)."""
    members = {}
    for member in archive:
        if member.isfile():
            with archive.extractfile(member) as stream:
                while stream.read(CHUNK):
                    pass
            members[member.name] = member
    return members


def close_archives() -> None:
    for archive in _ARCHIVES.values():
        archive.close()
    _ARCHIVES.clear()
    _TAR_MEMBERS.clear()


def read_entry(entry: Entry) -> bytes:
    """The bytes of a disk file or archive member (whose archive list_archive opened)."""
    if entry.disk is not None:
        try:
            return entry.disk.read_bytes()
        except OSError as err:
            raise PrepareError(f"{entry.disk} cannot be read ({err.strerror}): check it is readable")
    archive = _ARCHIVES[entry.archive]
    if isinstance(archive, zipfile.ZipFile):
        return archive.read(entry.rel)
    with archive.extractfile(_TAR_MEMBERS[entry.archive][entry.rel]) as stream:
        return stream.read()


def visible(rel: str) -> bool:
    """False for hidden files and macOS metadata (__MACOSX/, ._NAME), which are no data."""
    return not any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/"))


def list_disk(source: Path, skip: Path | None) -> list[Entry]:
    """Every file below `source` in sorted order, leaving out hidden files and the folder `skip` (--out)."""
    skip = skip.resolve() if skip else None
    entries = []
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX"
                         and (here / d).resolve() != skip)
        entries += [Entry((here / name).relative_to(source).as_posix(), disk=here / name)
                    for name in sorted(files) if not name.startswith(".")]
    return entries


def gather(entries: list[Entry], place: Callable[[str], str | None]) -> dict[str, Entry]:
    """Map entries to their layout paths; an extracted file wins over the same file in an archive."""
    files: dict[str, Entry] = {}
    for entry in entries:
        target = place(entry.rel)
        if target is None:
            continue
        if target in files:
            if files[target].disk is not None and entry.archive is not None:
                continue
            raise PrepareError(f"{target} is found twice, as {files[target].where()} and {entry.where()}: "
                               f"keep only one of them in --source")
        files[target] = entry
    return files


def collect(source: Path, skip: Path | None, archives: tuple[str, ...], place: Callable[[str], str | None],
            complete: Callable[[dict[str, Entry]], bool]) -> dict[str, Entry]:
    """The data set's files in `source`: extracted files first, the known archives only when needed."""
    disk = list_disk(source, skip)
    plain = [entry for entry in disk if entry.name not in archives]
    files = gather(plain, place)
    packed = [entry.disk for entry in disk if entry.name in archives]
    if complete(files) or not packed:
        return files
    members = [Entry(name, archive=path) for path in packed for name in list_archive(path) if visible(name)]
    return gather(plain + members, place)


def source_folder(args: argparse.Namespace) -> Path:
    """--source as a folder, after downloading into it when --download is given."""
    source = Path(args.source)
    if getattr(args, "download", False):
        fetch_all(args.dataset, source)
    if not source.is_dir():
        raise PrepareError(f"--source {source} is not a folder: pass the folder holding the downloaded "
                           f"archives or their extracted folders"
                           + (" (or add --download)" if args.dataset in DOWNLOADS else ""))
    return source


def refuse_existing(out: Path | None, source: Path, force: bool) -> None:
    """Stop before any work if an existing --out may not be replaced.

    --force replaces only a folder this tool wrote (it holds MARKER), and never one that holds --source:
    `--out` equal to `--source`, or a parent of it, would otherwise delete the download itself.
    """
    if out is None or not (out.exists() or out.is_symlink()):
        return
    if source.resolve().is_relative_to(out.resolve()):
        raise PrepareError(f"--out {out} holds --source {source}: replacing it would delete the source; "
                           f"choose an --out outside --source")
    if not force:
        raise PrepareError(f"--out {out} exists: pass --force to replace it, or choose another --out")
    if not (out / MARKER).is_file():
        raise PrepareError(f"--out {out} was not written by this tool (it has no {MARKER} file), so --force "
                           f"does not replace it: remove it yourself, or choose another --out")


@contextlib.contextmanager
def staged_output(out: Path, source: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `out` that becomes `out` only if the block completes.

    Anything else (an error, Ctrl-C) removes it, so `out` is never half-written; an existing `out` is
    replaced only with --force, only if this tool wrote it, and only once the new one is complete.
    """
    refuse_existing(out, source, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(MARKER_TEXT)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output should not be
        if out.exists():
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
            out.rename(old)
            tmp.rename(out)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def progress(items, desc: str, unit: str):
    """A tqdm bar on interactive terminals (disable=None hides it in logs and tests)."""
    return tqdm(items, desc=desc, unit=unit, disable=None)


# ---- Downloads ----------------------------------------------------------------------------------------------

def fetch_all(dataset: str, folder: Path) -> None:
    """Download the data set's public archives into `folder`, skipping complete ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for url, name in DOWNLOADS[dataset]:
        fetch(url, folder / name)


def fetch(url: str, dest: Path) -> None:
    """Download one archive via `dest`.part (resumable), and keep it only if it reads completely."""
    if dest.exists():
        list_archive(dest)
        print(f"{dest} is already downloaded and complete")
        return
    part = dest.with_name(dest.name + ".part")
    transfer(url, part)
    try:
        list_archive(part)
    except PrepareError as err:
        part.unlink(missing_ok=True)
        reason = " ".join(str(err.__cause__).split())
        raise PrepareError(f"{url} gave a truncated or corrupt archive ({reason}); removed {part}: run "
                           f"again to download it afresh") from None
    part.rename(dest)
    _ARCHIVES[dest] = _ARCHIVES.pop(part)  # the open handle follows the renamed file
    if part in _TAR_MEMBERS:
        _TAR_MEMBERS[dest] = _TAR_MEMBERS.pop(part)


def transfer(url: str, part: Path) -> None:
    """Fetch `url` into `part`, resuming from its size with an HTTP Range request.

    A server that answers 200 instead of 206 sends the whole file, so the download starts over; a
    transfer that stops early keeps `part` so that the next run resumes it.
    """
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={start}-"} if start else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing beyond what .part holds: verification decides
            return
        raise download_error(url, part.parent, f"HTTP Error {err.code}: {err.reason}")
    except (urllib.error.URLError, OSError) as err:
        raise download_error(url, part.parent, getattr(err, "reason", err))
    with response:
        range_start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if response.status != 206 or not range_start or int(range_start[1]) != start:
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else None
        try:
            with part.open("ab" if start else "wb") as file, tqdm(
                    total=total, initial=start, unit="B", unit_scale=True, desc=part.name[:-5],
                    disable=None) as bar:
                while chunk := response.read(CHUNK):
                    file.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as err:
            raise stopped_error(url, part, err)
    if total is not None and part.stat().st_size < total:
        raise stopped_error(url, part, f"{total} bytes expected")


def download_error(url: str, folder: Path, reason: object) -> PrepareError:
    return PrepareError(f"cannot download {url}: {reason}; download it by hand into {folder}")


def stopped_error(url: str, part: Path, reason: object) -> PrepareError:
    size = part.stat().st_size if part.exists() else 0
    return PrepareError(f"download of {url} stopped at {size} bytes ({reason}); {part} is kept: run the "
                        f"same command again to resume")


# ---- CamVid -------------------------------------------------------------------------------------------------

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
    if unlabelled := sorted(frames.keys() - labels.keys()):
        raise PrepareError(f"{frames[unlabelled[0]].where()} has no label {unlabelled[0]}_L.png in {source}: "
                           f"add it (from LabeledApproved_full.zip) or remove the frame")
    if orphans := sorted(labels.keys() - frames.keys()):
        raise PrepareError(f"{labels[orphans[0]].where()} has no frame {orphans[0]}.png in {source}: add it "
                           f"(from 701_StillsRaw_full.zip) or remove the label")
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


def prepare_camvid(args: argparse.Namespace) -> int:
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


# ---- LiTS ---------------------------------------------------------------------------------------------------

def find_lits_pairs(source: Path, skip: Path) -> list[tuple[int, Path, Path]]:
    """(id, volume, segmentation) for every volume-N / segmentation-N pair below `source`."""
    found: dict[str, dict[int, Path]] = {"volume": {}, "segmentation": {}}
    for entry in list_disk(source, skip):
        match = LITS_FILE.fullmatch(entry.name)
        if match:
            kind, number = match[1], int(match[2])
            if number in found[kind]:
                raise PrepareError(f"{kind} {number} is found twice, as {found[kind][number]} and "
                                   f"{entry.disk}: keep only one of them")
            found[kind][number] = entry.disk
    volumes, segmentations = found["volume"], found["segmentation"]
    if not volumes and not segmentations:
        raise PrepareError(f"{source} holds no LiTS volume-N.nii / segmentation-N.nii files (or .nii.gz): "
                           f"extract Training Batch 1 and 2 there")
    if alone := sorted(volumes.keys() - segmentations.keys()):
        raise PrepareError(f"{volumes[alone[0]]} has no segmentation-{alone[0]}.nii(.gz) in {source}: add "
                           f"it or remove the volume")
    if alone := sorted(segmentations.keys() - volumes.keys()):
        raise PrepareError(f"{segmentations[alone[0]]} has no volume-{alone[0]}.nii(.gz) in {source}: add "
                           f"it or remove the segmentation")
    return [(number, volumes[number], segmentations[number]) for number in sorted(volumes)]


def split_counts(total: int, fractions: tuple[float, ...]) -> list[int]:
    """Volumes per split: largest remainders, and at least one for every split (all fractions are > 0)."""
    raw = [fraction * total for fraction in fractions]
    counts = [int(value) for value in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    for i, fraction in enumerate(fractions):
        if fraction > 0 and counts[i] == 0:
            counts[max(range(len(counts)), key=counts.__getitem__)] -= 1
            counts[i] += 1
    return counts


def split_volumes(ids: list[int], fractions: tuple[float, ...], seed: int) -> dict[str, list[int]]:
    """Shuffle the volume ids with `seed` and cut them into train/val/test by `fractions`."""
    if len(ids) < len(SPLITS):
        raise PrepareError(f"{len(ids)} LiTS volume(s) cannot fill the {len(SPLITS)} splits: every split needs "
                           f"at least one volume (main.py reads train, val and test), so add volumes")
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    splits, start = {}, 0
    for split, count in zip(SPLITS, split_counts(len(ids), fractions)):
        splits[split] = sorted(shuffled[start:start + count])
        start += count
    return splits


def load_nifti(path: Path):
    """Open a NIfTI image with nibabel, turning unreadable files into PrepareError."""
    import nibabel  # only LiTS needs it; the other data sets run without it

    try:
        image = nibabel.load(path)
    except Exception as err:  # nibabel raises many types for broken files
        raise PrepareError(f"{path} cannot be read as NIfTI ({err}): extract or download it again")
    if len(image.shape) != 3:
        raise PrepareError(f"{path} has shape {image.shape}: LiTS volumes must be 3-D")
    return image


def read_lits_pair(volume_path: Path, seg_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The volume windowed to HU_WINDOW (float32) and the mask (uint8 0/1/2), after checking both."""
    volume, segmentation = load_nifti(volume_path), load_nifti(seg_path)
    if volume.shape != segmentation.shape:
        raise PrepareError(f"{volume_path} has shape {volume.shape} but {seg_path} has "
                           f"{segmentation.shape}: they must match voxel for voxel")
    try:
        mask = np.asanyarray(segmentation.dataobj)
        hu = volume.get_fdata(dtype=np.float32)
    except Exception as err:
        raise PrepareError(f"{volume_path} or {seg_path} cannot be read ({err}): extract them again")
    bad = (mask != 0) & (mask != 1) & (mask != 2)
    if bad.any():
        position = np.unravel_index(np.argmax(bad), bad.shape)
        raise PrepareError(f"{seg_path} has label value {mask[position]} at voxel "
                           f"{tuple(int(p) for p in position)}: LiTS masks must be 0 (background), "
                           f"1 (liver) or 2 (tumour)")
    return np.clip(hu, *HU_WINDOW, out=hu), mask.astype(np.uint8)


def write_lits_slices(out: Path, number: int, volume_path: Path, seg_path: Path, all_slices: bool) -> int:
    """Write the axial slices (last axis) of one volume as .npy files; returns how many."""
    hu, mask = read_lits_pair(volume_path, seg_path)
    keep = range(mask.shape[2]) if all_slices else np.flatnonzero(mask.any(axis=(0, 1)))
    for k in keep:
        name = f"volume-{number}_slice-{k:04d}.npy"
        np.save(out / "images" / name, np.ascontiguousarray(hu[:, :, k]))
        np.save(out / "masks" / name, np.ascontiguousarray(mask[:, :, k]))
    return len(keep)


def prepare_lits(args: argparse.Namespace) -> int:
    refuse_existing(Path(args.out), Path(args.source), args.force)
    source, out = source_folder(args), Path(args.out)
    pairs = find_lits_pairs(source, out)
    volumes = split_volumes([number for number, _, _ in pairs], args.split, args.seed)
    split_of = {number: split for split, numbers in volumes.items() for number in numbers}
    policy = "all" if args.all_slices else "liver"
    counts = dict.fromkeys(SPLITS, 0)
    with staged_output(out, source, args.force) as tmp:
        for split in SPLITS:
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir()
        for number, volume_path, seg_path in progress(pairs, "lits", "volume"):
            split = split_of[number]
            counts[split] += write_lits_slices(tmp / split, number, volume_path, seg_path, args.all_slices)
        record = {"seed": args.seed, "fractions": dict(zip(SPLITS, args.split)), "slices": policy,
                  "slice_policy": SLICE_POLICY[policy], "hu_window": list(HU_WINDOW),
                  "volumes": volumes, "slice_counts": counts}
        (tmp / "split.json").write_text(json.dumps(record, indent=2) + "\n")
    summary = ", ".join(f"{split} {len(volumes[split])} volumes / {counts[split]} slices" for split in SPLITS)
    print(f"wrote LiTS slices ({SLICE_POLICY[policy]}) to {out}: {summary}")
    print(f"ready: use --data-dir {out}")
    return 0


# ---- Checks: birds, skinlesion, cityscapes ------------------------------------------------------------------

@dataclass
class Report:
    """What a check found: counts (found, expected) and problems (lists of offending paths)."""

    counts: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    needs_train_ids: bool = False

    def count(self, what: str, found: int, expected: int) -> None:
        self.counts.append((what, found, expected))

    def offending(self, what: str, paths: list[str]) -> None:
        if paths:
            more = f" ... and {len(paths) - FIRST_FEW} more" if len(paths) > FIRST_FEW else ""
            self.problems.append(f"{what} ({len(paths)}): {', '.join(paths[:FIRST_FEW])}{more}")

    def errors(self, allow_partial: bool) -> list[str]:
        """Problems, then wrong counts (with --allow-partial only empty ones: main.py needs each split)."""
        wrong = [(what, found, expected) for what, found, expected in self.counts
                 if found != expected and (not allow_partial or found == 0)]
        return self.problems + [f"{what}: {found} found, {expected} expected" for what, found, expected in wrong]

    def ok(self, allow_partial: bool = False) -> bool:
        return not self.errors(allow_partial)


def anchored(rel: str, anchors: Callable[[str], bool], depth: int, suffixes: tuple[str, ...]) -> str | None:
    """The tail of `rel` from the last folder that `anchors` accepts, if `depth` parts long."""
    parts = rel.split("/")
    for i in range(len(parts) - depth, -1, -1):
        if anchors(parts[i]):
            return "/".join(parts[i:]) if rel.endswith(suffixes) else None
    return None


CUB_LISTS = ("images.txt", "train_test_split.txt", "classes.txt", "image_class_labels.txt",
             "bounding_boxes.txt")


def birds_place(rel: str) -> str | None:
    name = rel.rsplit("/", 1)[-1]
    if name in CUB_LISTS:
        return name
    if rel.endswith(".jpg"):
        return anchored(rel, lambda part: part == "images", 3, (".jpg",))
    return anchored(rel, lambda part: part == "segmentations", 3, (".png",))


def read_cub_list(entry: Entry) -> dict[str, str]:
    """A CUB "<id> <value>" list file as a dict."""
    rows = {}
    for number, line in enumerate(read_entry(entry).decode("utf-8", "replace").splitlines(), 1):
        if line.strip():
            fields = line.split(maxsplit=1)
            if len(fields) != 2:
                raise PrepareError(f"{entry.where()} line {number} is not '<id> <value>': extract the file "
                                   f"again from CUB_200_2011.tgz")
            rows[fields[0]] = fields[1].strip()
    return rows


def check_birds(files: dict[str, Entry]) -> Report:
    report, expected = Report(), EXPECTED_COUNTS["birds"]
    report.offending("missing list files (they come with CUB_200_2011.tgz)",
                     [name for name in CUB_LISTS[:2] if name not in files])
    if report.problems:
        return report
    images, is_train = read_cub_list(files["images.txt"]), read_cub_list(files["train_test_split.txt"])
    image_paths = {f"images/{rel}" for rel in images.values()}
    mask_paths = {f"segmentations/{rel.rsplit('.', 1)[0]}.png" for rel in images.values()}
    report.offending("ids of images.txt without a train_test_split.txt line",
                     sorted(key for key in images if key not in is_train))
    report.offending("missing images (listed in images.txt)", sorted(image_paths - files.keys()))
    report.offending("missing masks (segmentations.tgz)", sorted(mask_paths - files.keys()))
    report.offending("images not listed in images.txt (misnamed?)",
                     sorted(path for path in files if path.startswith("images/") and path not in image_paths))
    report.offending("masks of no listed image (misnamed?)",
                     sorted(p for p in files if p.startswith("segmentations/") and p not in mask_paths))
    report.count("images listed in images.txt", len(images), expected["images"])
    report.count("train images (train_test_split.txt 1)",
                 sum(is_train.get(key) == "1" for key in images), expected["train"])
    report.count("test images (train_test_split.txt 0)",
                 sum(is_train.get(key) == "0" for key in images), expected["test"])
    report.count("class folders", len({rel.split("/")[0] for rel in images.values()}), expected["classes"])
    return report


ISIC_PHASES = tuple(SkinLesion.PHASES.values())  # Training, Validation, Test
ISIC_FOLDER = re.compile(r"ISIC2018_Task1(-2)?_(Training|Validation|Test)_(Input|GroundTruth)")


def skinlesion_place(rel: str) -> str | None:
    return anchored(rel, ISIC_FOLDER.fullmatch, 2, (".jpg", ".jpeg", ".png"))


def check_skinlesion(files: dict[str, Entry]) -> Report:
    report = Report()
    for phase in ISIC_PHASES:
        inputs, truths = f"ISIC2018_Task1-2_{phase}_Input/", f"ISIC2018_Task1_{phase}_GroundTruth/"
        in_folder = [path for path in files if path.startswith(inputs)]
        images = {path[len(inputs):-4]: path for path in in_folder
                  if re.fullmatch(r"ISIC_\d+\.jpg", path[len(inputs):])}
        in_truth = [path for path in files if path.startswith(truths)]
        masks = {path[len(truths):-17]: path for path in in_truth
                 if re.fullmatch(r"ISIC_\d+_segmentation\.png", path[len(truths):])}
        report.offending(f"misnamed {phase} images (want ISIC_<digits>.jpg)",
                         sorted(set(in_folder) - set(images.values())))
        report.offending(f"misnamed {phase} masks (want ISIC_<digits>_segmentation.png)",
                         sorted(set(in_truth) - set(masks.values())))
        report.offending(f"{phase} images without a mask in {truths}",
                         sorted(images[key] for key in images.keys() - masks.keys()))
        report.offending(f"{phase} masks without an image in {inputs}",
                         sorted(masks[key] for key in masks.keys() - images.keys()))
        report.count(f"{phase} images", len(images), EXPECTED_COUNTS["skinlesion"][phase])
        report.count(f"{phase} masks", len(masks), EXPECTED_COUNTS["skinlesion"][phase])
    return report


CITYSCAPES_IMAGE, CITYSCAPES_LABEL = Cityscapes.IMAGE_SUFFIX, Cityscapes.LABEL_SUFFIX
CITYSCAPES_POLYGONS = "_gtFine_polygons.json"
CITYSCAPES_ARCHIVES = ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip")


def cityscapes_place(rel: str) -> str | None:
    return anchored(rel, lambda part: part in ("leftImg8bit", "gtFine"), 4, (".png", ".json"))


def check_cityscapes(files: dict[str, Entry]) -> Report:
    report = Report(needs_train_ids=not any(path.endswith(CITYSCAPES_LABEL) for path in files))
    for split in SPLITS:
        in_split = [path for path in files if path.startswith(f"leftImg8bit/{split}/") and path.endswith(".png")]
        stems = {path[len("leftImg8bit/"):-len(CITYSCAPES_IMAGE)]: path
                 for path in in_split if path.endswith(CITYSCAPES_IMAGE)}
        report.offending(f"misnamed {split} images (want <city>_<seq>_<frame>{CITYSCAPES_IMAGE})",
                         sorted(set(in_split) - set(stems.values())))
        report.count(f"{split} images", len(stems), EXPECTED_COUNTS["cityscapes"][split])
        needed = CITYSCAPES_POLYGONS if report.needs_train_ids else CITYSCAPES_LABEL
        report.offending(f"{split} images without gtFine/{split}/<city>/*{needed}",
                         sorted(path for stem, path in stems.items() if f"gtFine/{stem}{needed}" not in files))
        if not report.needs_train_ids:
            labels = [path for path in files if path.startswith(f"gtFine/{split}/") and
                      path.endswith(CITYSCAPES_LABEL)]
            report.offending(f"{split} labels without an image",
                             sorted(p for p in labels if p[len("gtFine/"):-len(CITYSCAPES_LABEL)] not in stems))
            report.count(f"{split} labels", len(labels), EXPECTED_COUNTS["cityscapes"][split])
    return report


@dataclass(frozen=True)
class Layout:
    """How to find one data set's files in a download and check them."""

    title: str
    archives: tuple[str, ...]  # archive names used when the extracted files are absent
    place: Callable[[str], str | None]  # path in the download -> path in main.py's layout, or None
    check: Callable[[dict[str, Entry]], Report]


LAYOUTS = {
    "birds": Layout("CUB-200-2011", tuple(name for _, name in DOWNLOADS["birds"]), birds_place, check_birds),
    "skinlesion": Layout("ISIC 2018 task 1", tuple(name for _, name in DOWNLOADS["skinlesion"]),
                         skinlesion_place, check_skinlesion),
    "cityscapes": Layout("Cityscapes (fine)", CITYSCAPES_ARCHIVES, cityscapes_place, check_cityscapes),
}


def in_place_root(files: dict[str, Entry]) -> Path | None:
    """The folder that already holds every file at its layout path, if there is one."""
    roots = set()
    for target, entry in files.items():
        if entry.disk is None or not entry.rel.endswith(target):
            return None
        roots.add(Path(entry.disk.as_posix()[: -len(target)] or "."))
    return roots.pop() if len(roots) == 1 else None


def raise_report(report: Report, title: str, source: Path, allow_partial: bool) -> None:
    errors = report.errors(allow_partial)
    if errors:
        counts_wrong = len(errors) > len(report.problems)
        hint = "\n  (--allow-partial accepts other counts, e.g. for a subset)" if counts_wrong and \
            not allow_partial else ""
        raise PrepareError(f"{source} is not a complete {title} copy in the layout main.py reads:\n  "
                           + "\n  ".join(errors) + hint)
    for what, found, expected in report.counts:
        if found != expected:
            print(f"note: {what}: {found} found, {expected} expected (accepted with --allow-partial)")


def train_id_converter() -> Callable[[], object] | None:
    """cityscapesscripts' createTrainIdLabelImgs.main, or None if the package is not installed."""
    try:
        return importlib.import_module("cityscapesscripts.preparation.createTrainIdLabelImgs").main
    except ImportError:
        return None


def create_train_ids(root: Path) -> None:
    """Make the *_gtFine_labelTrainIds.png files with the official cityscapesscripts conversion."""
    convert = train_id_converter()
    if convert is None:
        raise PrepareError(f"{root / 'gtFine'} has no *{CITYSCAPES_LABEL} files: create them with "
                           f"`pip install cityscapesscripts` then `CITYSCAPES_DATASET={root} "
                           f"csCreateTrainIdLabelImgs`, and run this again")
    print(f"creating *{CITYSCAPES_LABEL} with cityscapesscripts (CITYSCAPES_DATASET={root})")
    previous = os.environ.get("CITYSCAPES_DATASET")
    os.environ["CITYSCAPES_DATASET"] = str(root)
    try:
        convert()
    except (Exception, SystemExit) as err:
        raise PrepareError(f"cityscapesscripts failed on {root} ({err!r}): run `CITYSCAPES_DATASET={root} "
                           f"csCreateTrainIdLabelImgs` to see why")
    finally:
        if previous is None:
            os.environ.pop("CITYSCAPES_DATASET")
        else:
            os.environ["CITYSCAPES_DATASET"] = previous


def materialise(files: dict[str, Entry], out: Path) -> None:
    """Copy or extract every file to its layout path below `out` (tar members in archive order)."""
    def order(item: tuple[str, Entry]) -> tuple[str, int, str]:
        entry = item[1]
        member = _TAR_MEMBERS.get(entry.archive, {}).get(entry.rel)
        return str(entry.archive or ""), member.offset_data if member else 0, item[0]

    for target, entry in progress(sorted(files.items(), key=order), "assembling", "file"):
        path = out / target
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.disk is not None:
            shutil.copyfile(entry.disk, path)
        else:
            path.write_bytes(read_entry(entry))


def check_command(args: argparse.Namespace) -> int:
    """Check a download of birds/skinlesion/cityscapes; assemble it in --out when asked or needed."""
    out = Path(args.out) if args.out else None
    refuse_existing(out, Path(args.source), args.force)
    layout, source = LAYOUTS[args.dataset], source_folder(args)
    files = collect(source, out, layout.archives, layout.place, lambda found: layout.check(found).ok())
    report = layout.check(files)
    raise_report(report, layout.title, source, args.allow_partial)
    root = in_place_root(files)
    if out is None and root is None:
        raise PrepareError(f"{source} holds the complete {layout.title} files, but not in one folder in the "
                           f"layout main.py reads (archives not extracted, or folders side by side): pass "
                           f"--out DIR to assemble the layout there")
    if out is None:
        if report.needs_train_ids:
            create_train_ids(root)
            raise_report(layout.check(collect(source, None, (), layout.place, bool)), layout.title, source,
                         args.allow_partial)
        print(f"ready: use --data-dir {root}")
        return 0
    if report.needs_train_ids and train_id_converter() is None:
        raise PrepareError(f"gtFine has no *{CITYSCAPES_LABEL} files and cityscapesscripts is not "
                           f"installed: `pip install cityscapesscripts`, then run this again")
    with staged_output(out, source, args.force) as tmp:
        materialise(files, tmp)
        if report.needs_train_ids:
            create_train_ids(tmp)
            raise_report(layout.check(collect(tmp, None, (), layout.place, bool)), layout.title, tmp,
                         args.allow_partial)
    print(f"wrote {len(files)} {layout.title} files to {out}")
    print(f"ready: use --data-dir {out}")
    return 0


# ---- Command line -------------------------------------------------------------------------------------------

def fractions(text: str) -> tuple[float, float, float]:
    """Parse --split 'train,val,test' fractions that sum to 1."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0 or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text!r} is not three positive fractions train,val,test that sum "
                                         f"to 1 (e.g. 0.7,0.1,0.2): main.py needs every split, so every split "
                                         f"needs at least one volume")
    return values


def add_common(parser: argparse.ArgumentParser, dataset: str, out_default: str | None, out_help: str,
               partial: bool = True) -> None:
    parser.add_argument("--source", required=True, metavar="PATH",
                        help="folder holding the downloaded archives or their extracted folders "
                             "(searched recursively)")
    parser.add_argument("--out", default=out_default, metavar="DIR", help=out_help)
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out that this tool wrote (never a folder holding --source)")
    if dataset in DOWNLOADS:
        parser.add_argument("--download", action="store_true",
                            help="first download the public archives into --source (resumable)")
    else:  # a registration is needed: say where the files come from instead of offering --download
        parser.epilog = NO_DOWNLOAD[dataset].format(folder="--source")
    if partial:
        parser.add_argument("--allow-partial", action="store_true",
                            help="accept fewer files than the complete release (a subset); every split "
                                 "must still be present")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare_data.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn the official data releases into the folder layouts main.py --data-dir reads.",
        epilog="Errors print one `error:` line naming the file and what to do, with exit status 2; output "
               "is written to a temporary folder beside --out and renamed only when complete.\n"
               "Run `prepare_data.py DATASET --help` for the details of each data set.")
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    camvid = commands.add_parser(
        "camvid", help="convert the full-resolution CamVid release (32 colours -> 11 classes + void)",
        description="Convert the official CamVid release (701_StillsRaw_full.zip and LabeledApproved_full.zip, "
                    "or their extracted folders) into train/ trainannot/ val/ valannot/ test/ testannot/: "
                    "frames copied byte for byte, colour labels turned into index PNGs of the 11 SegNet "
                    "classes + unlabelled (11), split 367/101/233 by tools/camvid_splits/.")
    add_common(camvid, "camvid", "data/CamVid", "output folder (default: data/CamVid)")
    lits = commands.add_parser(
        "lits", help="slice the LiTS volume-N.nii / segmentation-N.nii files into .npy",
        description="Slice LiTS CT volumes (volume-N.nii and segmentation-N.nii, also .nii.gz) into 2-D .npy "
                    "files, windowed to [-250, 250] HU, split train/val/test BY VOLUME with a seeded shuffle "
                    "(recorded in DIR/split.json). By default only slices with liver are kept. The slice "
                    "selection and the split are this project's own choices (neither the AFMA paper nor its "
                    "released code says which slices or which split were used): slices without liver are "
                    "about 2/3 of a volume and nearly all background; --all-slices keeps every slice.")
    add_common(lits, "lits", "data/LiTS", "output folder (default: data/LiTS)", partial=False)
    lits.add_argument("--seed", type=int, default=0, help="seed of the volume shuffle (default: 0)")
    lits.add_argument("--split", type=fractions, default=(0.7, 0.1, 0.2), metavar="TRAIN,VAL,TEST",
                      help="fractions of the volumes per split (default: 0.7,0.1,0.2)")
    lits.add_argument("--all-slices", action="store_true",
                      help="keep every axial slice (default: only slices that contain liver)")
    for name, title, facts in (
            ("birds", "CUB-200-2011", "11,788 images: 5,994 train / 5,794 test, 200 class folders, and the "
                                      "masks of segmentations.tgz"),
            ("skinlesion", "ISIC 2018 task 1", "2,594 training, 100 validation and 1,000 test images, each "
                                               "with its mask"),
            ("cityscapes", "Cityscapes fine", "2,975 train, 500 val and 1,525 test images; the "
                                              "*_gtFine_labelTrainIds.png are created with cityscapesscripts "
                                              "if absent")):
        check = commands.add_parser(
            name, help=f"check (and assemble) {title}",
            description=f"Check a download of {title} ({facts}) against the files and counts main.py "
                        f"expects, naming what is missing or misnamed. If it is already in the layout main.py "
                        f"reads, nothing is written and the tool says which --data-dir to use; otherwise "
                        f"(archives not extracted, folders side by side) --out assembles the layout there.")
        add_common(check, name, None, "assemble the layout here (optional when --source is already in it)")
    return parser


COMMANDS = {"camvid": prepare_camvid, "lits": prepare_lits, "birds": check_command,
            "skinlesion": check_command, "cityscapes": check_command}


def main(argv: list[str] | None = None) -> int:
    """Run the tool; returns the exit status (0 done, 2 error) instead of exiting, for in-process tests."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return COMMANDS[args.dataset](args)
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted: no output was written (a partial download stays as .part, to resume)",
              file=sys.stderr)
        return 130
    finally:
        close_archives()


if __name__ == "__main__":
    sys.exit(main())
