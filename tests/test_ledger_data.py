"""The data part of the reproduction ledger (docs/METHOD.md §5) against both its sources: every "this project"
cell of a pipeline row is the description (`describe()`) of the transform it names, in pipeline order, every
setting row is the data set attribute it names, and every "released code" cell is the released value recorded,
with its file and line, in tests/ledger_released.py. A stale cell in either column fails."""
import re
from pathlib import Path

import pytest

from tests.ledger_released import DATA, cell
from utils.data.datasets import DATASETS
from utils.data.transforms import build_transforms

METHOD = Path(__file__).resolve().parents[1] / "docs" / "METHOD.md"
SETTINGS = ("train_size", "eval_size", "pad_size", "eval_pad", "pre_resize", "frame_size", "border_label",
            "void_value", "VAL_FROM")


def pipeline_cells(dataset_cls, split):
    return [t.describe() for t in build_transforms(dataset_cls, split).transforms]


def setting_cells(dataset_cls):
    return {f"{dataset_cls.__name__}.{k}": str(getattr(dataset_cls, k)) for k in SETTINGS if hasattr(dataset_cls, k)}


def ledger_rows(name):
    """(setting, released code, this project) of the rows of data set `name`'s table, in order."""
    text = METHOD.read_text()
    match = re.search(rf"^#### Data: {name}\b.*?\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert match, f"docs/METHOD.md has no '#### Data: {name}' ledger table"
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("setting", "---") and not set(cells[0]) <= set("-"):
            rows.append((cells[0].strip("`"), cells[1], cells[2].strip("`")))
    return rows


@pytest.mark.parametrize("name", list(DATASETS))
def test_ledger_pipelines_are_the_code_s(name):
    dataset_cls, rows = DATASETS[name], ledger_rows(name)
    for split, prefix in (("train", "train"), ("val", "eval")):
        ledger = [project for setting, _, project in rows if setting.startswith(prefix + " ")]
        assert ledger == pipeline_cells(dataset_cls, split), f"{name} {split}: ledger rows differ from the code"


@pytest.mark.parametrize("name", list(DATASETS))
def test_ledger_settings_are_the_code_s(name):
    dataset_cls = DATASETS[name]
    ledger = {setting: project for setting, _, project in ledger_rows(name) if "." in setting and " " not in setting}
    code = setting_cells(dataset_cls)
    assert {k: ledger.get(k) for k in code} == code


@pytest.mark.parametrize("name", list(DATASETS))
def test_ledger_released_column_is_the_recorded_released_code(name):
    """Row for row: no released value missing from the ledger, none the record does not hold, none changed."""
    ledger = {setting: released for setting, released, _ in ledger_rows(name)}
    assert ledger == {setting: cell(entry) for setting, entry in DATA[name].items()}
