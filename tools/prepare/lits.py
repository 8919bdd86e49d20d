"""LiTS: 3-D NIfTI volumes to windowed 2-D .npy slices, split by volume."""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from utils.data.datasets import SPLITS, LiTS

from .common import PrepareError, progress, refuse_existing, require_pairs, staged_output
from .download import source_folder
from .sources import list_disk


HU_WINDOW = LiTS.HU_WINDOW  # the abdominal window of the AFMA LiTS experiments
LITS_FILE = re.compile(r"(volume|segmentation)-(\d+)\.nii(\.gz)?")
SLICE_POLICY = {"liver": "only axial slices whose mask contains liver or tumour (label 1 or 2)",
                "all": "every axial slice"}


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
    require_pairs(volumes, segmentations,
                  lambda n: f"{volumes[n]} has no segmentation-{n}.nii(.gz) in {source}: add it or remove the volume",
                  lambda n: f"{segmentations[n]} has no volume-{n}.nii(.gz) in {source}: add it or remove the "
                            f"segmentation")
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

