import math

import pytest
import torch

from models.spec import ModelSpec
from utils.apps.compare import comparison_markdown, row_values
from utils.metrics import ConfusionMatrix
from utils.reporting.tables import format_table

NAMES = ["sky", "car", "unlabelled"]
NAN = float("nan")


def rows_of(table):
    """label -> cells of every table row (the rules and the legend left out); labels may hold spaces."""
    lines = table.splitlines()
    splits = lines[0].split()[1:]
    rows = {}
    for line in lines[2:]:
        if line.startswith("-") or line.startswith("Scores:"):
            continue
        cells = [line[len(line) - 10 * (len(splits) - i): len(line) - 10 * (len(splits) - i - 1)].strip()
                 for i in range(len(splits))]
        rows[line[: len(line) - 10 * len(splits)].strip()] = cells
    return rows


def result(miou, void_miou, no_labels=False, loss=None):
    r = {"per_class_iou": {"sky": 0.9, "car": NAN}, "miou": miou, "global_iou": 0.8, "accuracy": 0.95,
         "void_ignored": {"per_class_iou": {"sky": 0.95, "car": NAN}, "miou": void_miou, "global_iou": 0.85,
                          "accuracy": 0.97},
         "labelled_pixels": 0 if no_labels else 100, "no_labels": no_labels}
    if loss is not None:
        r["loss"] = loss
    return r


def test_format_table_has_split_columns_class_rows_and_summary():
    results = {
        "val": {"per_class_iou": {"sky": 0.9, "car": 0.5}, "miou": 0.7, "global_iou": 0.8,
                "accuracy": 0.95, "loss": 0.25},
        "test": {"per_class_iou": {"sky": 0.85, "car": float("nan")}, "miou": 0.85,
                 "global_iou": 0.75, "accuracy": 0.9},
    }
    table = format_table(results, NAMES)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "val", "test"]
    rows = rows_of(table)
    assert rows["sky"] == ["0.9000", "0.8500"]
    assert rows["car"] == ["0.5000", "-"]
    assert rows["mIoU"] == ["0.7000", "0.8500"]
    assert rows["global IoU"] == ["0.8000", "0.7500"]
    assert rows["mean accuracy"] == ["0.9500", "0.9000"]
    assert rows["loss"] == ["0.2500", "-"]
    assert "unlabelled" not in rows
    assert "mIoU (void ignored)" not in rows  # results without the block (an older metrics.json)


def test_format_table_prints_void_ignored_rows_after_the_summary_with_4_decimals():
    table = format_table({"val": result(0.123456, 0.654321, loss=0.5), "test": result(0.7, 0.75)}, NAMES)
    rows = rows_of(table)
    assert rows["mIoU"] == ["0.1235", "0.7000"]
    assert rows["mIoU (void ignored)"] == ["0.6543", "0.7500"]
    assert rows["global IoU (void ignored)"] == ["0.8500", "0.8500"]
    assert rows["mean accuracy (void ignored)"] == ["0.9700", "0.9700"]
    labels = list(rows)
    assert labels.index("mIoU (void ignored)") > labels.index("loss") > labels.index("mean accuracy")
    assert labels[-3:] == ["mIoU (void ignored)", "global IoU (void ignored)", "mean accuracy (void ignored)"]


def test_format_table_legend_names_both_protocols():
    authors, ignored = format_table({"val": result(0.7, 0.75)}, NAMES).splitlines()[-2:]
    assert "authors' protocol" in authors and "false positive" in authors
    assert "void ignored" in ignored and "Cityscapes/SegNet" in ignored


def test_format_table_prints_no_labels_for_a_split_without_labels():
    results = {"val": result(0.7, 0.75, loss=0.5),
               "test": {**result(NAN, NAN, no_labels=True, loss=1.25),
                        "per_class_iou": {"sky": NAN, "car": NAN}, "global_iou": NAN, "accuracy": NAN}}
    table = format_table(results, NAMES)
    rows = rows_of(table)
    for label in ("sky", "car", "mIoU", "global IoU", "mean accuracy", "mIoU (void ignored)",
                  "global IoU (void ignored)", "mean accuracy (void ignored)"):
        assert rows[label][1] == "no labels", label
    assert rows["mIoU"][0] == "0.7000" and rows["sky"][0] == "0.9000"  # the labelled split keeps its numbers
    assert rows["loss"] == ["0.5000", "1.2500"]  # the loss is still defined
    assert "0.0000" not in table


def test_format_table_accepts_scores_output_and_json_nulls():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[[0, 1, 2]]]), torch.tensor([[[0, 1, 2]]]))
    rows = rows_of(format_table({"val": cm.scores(NAMES[:-1])}, NAMES))
    assert rows["car"] == ["1.0000"] and rows["mIoU (void ignored)"] == ["1.0000"] and "loss" not in rows
    loaded = {**result(0.7, None), "per_class_iou": {"sky": None, "car": 0.5}}  # NaN came back from JSON as null
    rows = rows_of(format_table({"val": loaded}, NAMES))
    assert rows["sky"] == ["-"] and rows["car"] == ["0.5000"] and rows["mIoU (void ignored)"] == ["-"]


# ---------------------------------------------------------------- comparison report

def fake_config():
    """A run's config (main.py's defaults and these flags) with a model of NAMES' classes."""
    import main

    spec = ModelSpec(arch="unet", encoder_name="resnet18", classes=tuple(NAMES), att_depth=None, patch_size=4,
                     dataset="camvid")
    argv = ["--encoder", "resnet18", "--epochs", "3", "--seed", "7", "--scale", "0.25"]
    config = main.new_run(*main.parse_args(argv))
    return config.replace(model=spec, data_dir="data/camvid")


def run_result(miou, void_miou, no_labels=False):
    small = {"mean_recall50": {"small": 0.25, "medium": 0.5, "large": None}, "mean_small_iou": 0.125}
    return {"test": {**result(miou, void_miou, no_labels), "small_objects": small}}


def table_of(markdown, arch):
    lines = markdown.splitlines()
    start = lines.index(f"## {arch}") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2:] if line.startswith("| ")]
    return header, rows


def per_seed(results):
    """compare's runs, one seed: (arch, depth) -> [test result]."""
    return {key: [value["test"]] for key, value in results.items()}


def test_comparison_markdown_has_the_void_ignored_miou_column_after_miou():
    results = {("unet", None): run_result(0.5, 0.6), ("unet", 2): run_result(0.55, 0.675)}
    markdown = comparison_markdown(per_seed(results), {("unet", 2): None}, ["unet"], [None, 2], fake_config(), [0])
    header, rows = table_of(markdown, "unet")
    assert header[:6] == ["model", "sky", "car", "mIoU", "mIoU (void ignored)", "global IoU"]
    column = header.index("mIoU (void ignored)")
    baseline, afma, difference = rows
    assert baseline[0] == "baseline" and baseline[column - 1] == "0.5000" and baseline[column] == "0.6000"
    assert afma[0] == "AFMA depth 2" and afma[column] == "0.6750"
    assert difference[0] == "difference" and difference[column] == "+0.0750"
    assert len(baseline) == len(header) == len(difference)


def test_comparison_markdown_header_names_the_protocols():
    results = {("unet", None): run_result(0.5, 0.6), ("unet", 1): run_result(0.55, 0.65)}
    markdown = comparison_markdown(per_seed(results), {("unet", 1): None}, ["unet"], [None, 1], fake_config(), [0])
    paragraph = markdown.split("## unet")[0]
    assert "authors' protocol" in paragraph and "mIoU (void ignored)" in paragraph
    assert "Cityscapes/SegNet" in paragraph


def test_comparison_rows_of_older_results_and_unlabelled_splits():
    older = run_result(0.5, None)["test"]
    del older["void_ignored"]  # a metrics.json written before the void-ignored block existed
    assert row_values(older, NAMES[:-1])["mIoU (void ignored)"] is None
    results = {("unet", None): {"test": {**older, "no_labels": True}}, ("unet", 1): run_result(0.55, 0.65)}
    header, rows = table_of(comparison_markdown(per_seed(results), {("unet", 1): None}, ["unet"], [None, 1],
                                                   fake_config(), [0]), "unet")
    assert rows[0][1:] == ["no labels"] * (len(header) - 1)
    assert rows[2][header.index("mIoU (void ignored)")] == "-"  # no difference from a baseline without a score
    assert not math.isnan(row_values(run_result(0.55, 0.65)["test"], NAMES[:-1])["mIoU (void ignored)"])


def paired_result(names, miou, void_ignored):
    """A paired bootstrap's result: the class IoUs' entries all 0 +- 0.1, the two mIoUs' as given."""
    per_class = {"diff": [0.0] * len(names), "low": [-0.1] * len(names), "high": [0.1] * len(names)}
    return {"per_class_iou": per_class, "miou": miou, "void_ignored_miou": void_ignored,
            "level": 0.95, "images": 2, "resamples": 10, "seed": 0}


def test_each_difference_lands_in_the_column_of_its_score_by_name():
    results = {("unet", None): run_result(0.5, 0.6), ("unet", 1): run_result(0.55, 0.7)}
    paired = paired_result(NAMES[:-1], {"diff": 0.05, "low": 0.01, "high": 0.09},
                           {"diff": 0.1, "low": 0.02, "high": 0.2})
    header, rows = table_of(comparison_markdown(per_seed(results), {("unet", 1): paired}, ["unet"], [None, 1],
                                                fake_config(), [0]), "unet")
    difference = dict(zip(header, rows[2]))
    assert difference["mIoU"] == "+0.0500 [+0.0100, +0.0900] *"
    assert difference["mIoU (void ignored)"] == "+0.1000 [+0.0200, +0.2000] *"
    assert difference["sky"] == "+0.0000 [-0.1000, +0.1000]"
    assert difference["global IoU"] == difference["mean accuracy"] == "+0.0000"  # the means' difference only


@pytest.mark.parametrize("low, high, star", [(-4e-5, -1e-6, False), (1e-6, 4.9e-5, False), (-0.2, -6e-5, True),
                                             (6e-5, 0.2, True), (-0.1, 0.1, False)])
def test_a_star_only_where_the_printed_interval_excludes_zero(low, high, star):
    results = {("unet", None): run_result(0.5, 0.6), ("unet", 1): run_result(0.5, 0.6)}
    paired = paired_result(NAMES[:-1], {"diff": (low + high) / 2, "low": low, "high": high},
                           {"diff": 0.0, "low": -0.1, "high": 0.1})
    header, rows = table_of(comparison_markdown(per_seed(results), {("unet", 1): paired}, ["unet"], [None, 1],
                                                fake_config(), [0]), "unet")
    cell = dict(zip(header, rows[2]))["mIoU"]
    assert cell.endswith(" *") == star, cell


def test_large_values_stay_apart_in_their_columns():
    results = {split: {**result(0.5, 0.6), "loss": loss} for split, loss in (("val", 2457885.75), ("test", 2558616.25))}
    loss_row = next(line for line in format_table(results, NAMES).splitlines() if line.startswith("loss"))
    assert loss_row.split() == ["loss", "2457885.7500", "2558616.2500"]
