"""CUB-200-2011, ISIC 2018 and Cityscapes: check a download, assemble its layout, make Cityscapes train ids."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from utils.data.datasets import SPLITS, Cityscapes, SkinLesion

from .common import FIRST_FEW, PrepareError, progress, refuse_existing, staged_output
from .download import DOWNLOADS, source_folder
from .sources import Entry, archive_offset, collect, read_entry


# Counts of the complete releases; tests patch this table, users pass --allow-partial for subsets.
EXPECTED_COUNTS = {
    "birds": {"images": 11788, "train": 5994, "test": 5794, "classes": 200},
    "skinlesion": {"Training": 2594, "Validation": 100, "Test": 1000},
    "cityscapes": {"train": 2975, "val": 500, "test": 1525},
}


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
        return str(item[1].archive or ""), archive_offset(item[1]), item[0]

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

