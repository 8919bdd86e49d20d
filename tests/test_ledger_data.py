"""The data part of the reproduction ledger (docs/METHOD.md §5) against the code: every "this project" cell of
a pipeline row is the serialised transform (albumentations' to_dict) it names, in pipeline order, and every
setting row is the dataset attribute it names, so the ledger cannot go stale."""
import re
from pathlib import Path

import pytest

from utils.data.datasets import DATASETS
from utils.data.transforms import build_transforms

METHOD = Path(__file__).resolve().parents[1] / "docs" / "METHOD.md"
# The parameters a ledger cell shows, per transform: those the released code set or relied on by default.
SHOWN = {
    "HorizontalFlip": ["p"],
    "Affine": ["scale", "translate_percent", "rotate", "keep_ratio", "fill", "fill_mask", "p"],
    "PadIfNeeded": ["min_height", "min_width", "border_mode", "fill", "fill_mask"],
    "RandomCrop": ["height", "width"], "CenterCrop": ["height", "width"], "Resize": ["height", "width"],
    "RandomSizedCrop": ["min_max_height", "size", "w2h_ratio"],
    "GaussNoise": ["std_range", "per_channel", "p"],
    "Perspective": ["scale", "keep_size", "fill_mask", "p"],
    "CLAHE": ["clip_limit"], "RandomGamma": ["gamma_limit"],
    "RandomBrightnessContrast": ["brightness_limit", "contrast_limit"],
    "Sharpen": ["alpha", "lightness"], "Blur": ["blur_limit"], "MotionBlur": ["blur_limit"],
    "HueSaturationValue": ["hue_shift_limit", "sat_shift_limit", "val_shift_limit"],
}


def value(v):
    if isinstance(v, dict) and "x" in v and v["x"] == v["y"]:
        v = v["x"]  # the same range on both axes
    if isinstance(v, (list, tuple)):
        return "..".join(value(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe(t):
    """One transform's to_dict() as a ledger cell: `Name(key value, ...)`, one-of groups with their members."""
    name = t["__class_fullname__"].rsplit(".", 1)[-1]
    if name == "OneOf":
        return f"OneOf(p {value(t['p'])}: " + " / ".join(describe(c) for c in t["transforms"]) + ")"
    return f"{name}(" + ", ".join(f"{k} {value(t[k])}" for k in SHOWN[name]) + ")"


def pipeline_cells(dataset_cls, split):
    steps = build_transforms(dataset_cls, split).to_dict()["transform"]["transforms"]
    return [describe(t) for t in steps if t["__class_fullname__"] != "ToTensorV2"]


SETTINGS = ("train_size", "eval_size", "pad_size", "eval_pad", "pre_resize", "frame_size", "VAL_FROM")


def setting_cells(dataset_cls):
    return {f"{dataset_cls.__name__}.{k}": str(getattr(dataset_cls, k)) for k in SETTINGS if hasattr(dataset_cls, k)}


def ledger_rows(name):
    """(setting, this-project cell) of the rows of data set `name`'s table, in order."""
    text = METHOD.read_text()
    match = re.search(rf"^#### Data: {name}\b.*?\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert match, f"docs/METHOD.md has no '#### Data: {name}' ledger table"
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("setting", "---") and not set(cells[0]) <= set("-"):
            rows.append((cells[0], cells[2].strip("`")))
    return rows


@pytest.mark.parametrize("name", list(DATASETS))
def test_ledger_pipelines_are_the_code_s(name):
    dataset_cls, rows = DATASETS[name], ledger_rows(name)
    for split, prefix in (("train", "train"), ("val", "eval")):
        ledger = [cell.split("`")[0].strip() for setting, cell in rows if setting.startswith(prefix + " ")]
        assert ledger == pipeline_cells(dataset_cls, split), f"{name} {split}: ledger rows differ from the code"


@pytest.mark.parametrize("name", list(DATASETS))
def test_ledger_settings_are_the_code_s(name):
    dataset_cls = DATASETS[name]
    ledger = {s.strip("`"): c.split("`")[0].strip() for s, c in ledger_rows(name) if "." in s and " " not in s.strip("`")}
    code = setting_cells(dataset_cls)
    assert {k: ledger.get(k) for k in code} == code
