"""Fetching the public archives over HTTP (resumable) into --source."""

from __future__ import annotations

import argparse
import http.client
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm


from .common import PrepareError
from .sources import CHUNK, list_archive, rename_archive


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


def fetch_all(dataset: str, folder: Path) -> None:
    """Download the data set's public archives into `folder`, skipping complete ones. A folder this call made is
    removed again if nothing came into it (offline: no empty --source left behind; a .part to resume stays)."""
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for url, name in DOWNLOADS[dataset]:
            fetch(url, folder / name)
    except BaseException:
        if made and not any(folder.iterdir()):
            folder.rmdir()
        raise


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
    rename_archive(part, dest)


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

