"""The command line: one sub-command per data set; every PrepareError is one `error:` line, exit status 2."""

from __future__ import annotations

import argparse
import sys


from .camvid import prepare_camvid
from .checks import check_command
from .common import EXIT_ERROR, PrepareError
from .download import DOWNLOADS, NO_DOWNLOAD
from .lits import prepare_lits
from .sources import close_archives


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

