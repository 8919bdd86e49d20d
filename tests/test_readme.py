"""The README's example output: tools/check_readme.py finds it, compares it with a run's, and its format is today's.

The comparison with a real default run (about a minute) is run by .ci/run after the suite, not here.
"""
from __future__ import annotations

import pytest

from tools import check_readme
from utils.data.datasets import CamVid
from utils.reporting.tables import SUMMARY_ROWS, VOID_IGNORED_ROWS, format_table
from utils.labels import scored_classes

README_TABLE = check_readme.extract_table(check_readme.README.read_text(), after=check_readme.ANCHOR)


def parsed(table: list[str]) -> dict:
    """The README's table read back into the results format_table takes (val and test columns)."""
    values = {}
    for line in table:
        words = line.split()
        try:
            values[" ".join(words[:-2])] = (float(words[-2]), float(words[-1]))
        except (IndexError, ValueError):  # the header, the rules and the legend
            continue
    results = {}
    for column, split in enumerate(("val", "test")):
        results[split] = {
            "per_class_iou": {name: values[name][column] for name in scored_classes(CamVid.classes)},
            **{key: values[label][column] for key, label in SUMMARY_ROWS},
            "void_ignored": {key: values[label][column] for key, label in VOID_IGNORED_ROWS}}
    return results


def test_readme_has_the_table():
    assert README_TABLE is not None and README_TABLE[0].split() == ["class", "val", "test"]


def test_readme_table_is_in_the_format_a_run_prints_today():
    # Every row, label, width and the legend as format_table writes them now, from the README's own numbers.
    assert format_table(parsed(README_TABLE), CamVid.classes).splitlines() == README_TABLE


def log_with(table: list[str]) -> str:
    return "epoch 12/12: train loss 4.1\n\nbest epoch 11 (runs/x):\n" + "\n".join(table) + "\nwrote figures\n"


def changed(table: list[str], row: str, old: str, new: str) -> list[str]:
    return [line.replace(old, new) if line.startswith(row) else line for line in table]


@pytest.fixture
def recording_machine(monkeypatch):
    """This machine as the one the README's table was recorded on: the scores are compared exactly."""
    recorded = check_readme.RECORDED.search(check_readme.README.read_text())
    assert recorded is not None, "the README names the machine its example output was recorded on"
    monkeypatch.setattr(check_readme, "environment", lambda: recorded.group(1))


@pytest.fixture
def other_machine(monkeypatch):
    monkeypatch.setattr(check_readme, "environment", lambda: "another CPU, 2 threads, torch 0")


def test_equal_log_passes(tmp_path, capsys, recording_machine):
    (tmp_path / "run.txt").write_text(log_with(README_TABLE))
    assert check_readme.main(["--log", str(tmp_path / "run.txt")]) == 0


@pytest.mark.parametrize("tolerance, expected", [(0.0, 1), (0.00005, 1), (0.0002, 0)])
def test_a_changed_score_is_found_unless_within_tolerance(tmp_path, capsys, tolerance, expected, recording_machine):
    miou_row = next(line for line in README_TABLE if line.startswith("mIoU "))
    value = miou_row.split()[1]
    bumped = f"{float(value) + 0.0001:.4f}"
    (tmp_path / "run.txt").write_text(log_with(changed(README_TABLE, "mIoU ", value, bumped)))
    assert check_readme.main(["--log", str(tmp_path / "run.txt"), "--tolerance", str(tolerance)]) == expected
    if expected:
        assert "run: mIoU" in capsys.readouterr().err


def test_a_changed_row_name_is_never_within_tolerance():
    renamed = changed(README_TABLE, "pole", "pole", "post")
    assert check_readme.differences(README_TABLE, renamed, tolerance=1.0)


def test_a_missing_row_is_found():
    assert check_readme.differences(README_TABLE, README_TABLE[:-3] + README_TABLE[-2:], tolerance=1.0)


def test_a_log_without_a_table_is_one_error(tmp_path, capsys):
    (tmp_path / "run.txt").write_text("error: something failed\n")
    assert check_readme.main(["--log", str(tmp_path / "run.txt")]) == 2
    assert capsys.readouterr().err.startswith("error: the run printed no results table")


def test_on_another_machine_scores_may_differ_but_not_rows(tmp_path, capsys, other_machine):
    miou_row = next(line for line in README_TABLE if line.startswith("mIoU "))
    value = miou_row.split()[1]
    (tmp_path / "run.txt").write_text(log_with(changed(README_TABLE, "mIoU ", value, f"{float(value) + 0.05:.4f}")))
    assert check_readme.main(["--log", str(tmp_path / "run.txt")]) == 0
    assert "only the rows and layout are compared" in capsys.readouterr().out
    (tmp_path / "run.txt").write_text(log_with(changed(README_TABLE, "pole", "pole", "post")))
    assert check_readme.main(["--log", str(tmp_path / "run.txt")]) == 1


def test_the_environment_names_cpu_threads_and_torch():
    import torch

    here = check_readme.environment()
    assert f"{torch.get_num_threads()} threads" in here and torch.__version__ in here
