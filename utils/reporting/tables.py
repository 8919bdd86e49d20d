"""Text tables: the printed results of a run, and the markdown of the comparison reports."""
from __future__ import annotations

import math

from utils.labels import scored_classes

NO_LABELS = "no labels"
SUMMARY_ROWS = (("miou", "mIoU"), ("global_iou", "global IoU"), ("accuracy", "mean accuracy"),
                ("loss", "loss"))
VOID_IGNORED_ROWS = (("miou", "mIoU (void ignored)"), ("global_iou", "global IoU (void ignored)"),
                     ("accuracy", "mean accuracy (void ignored)"))
LEGEND = ("Scores: authors' protocol: every pixel counts, a void pixel predicted as a class is a false positive of it;\n"
          "Scores: void ignored: void pixels not counted, a pixel predicted void is a miss (Cityscapes/SegNet evaluation).")


def format_table(results, class_names):
    """Plain-text table, one column per split, for logs and reports, then a one-line legend.

    results: {split: {"per_class_iou": {name: iou}, "miou", "global_iou", "accuracy", optional "loss",
    optional "void_ignored": {"miou", "global_iou", "accuracy", ...}, optional "no_labels"}}, as
    ConfusionMatrix.scores (plus the loss) gives them or metrics.json holds them. class_names: all C names; the
    last one gets no row. Rows: per-class IoU, then the authors'-protocol means and the loss, then the
    void-ignored means (when any split has them). NaN, None or missing values print as "-"; a split with
    no_labels prints "no labels" in place of every score (its loss, when there is one, still prints).
    """
    splits = list(results)
    class_rows = [(name, [_per_class(results[s]).get(name) for s in splits], True)
                  for name in scored_classes(class_names)]
    summary_rows = [(label, [results[s].get(key) for s in splits], key != "loss") for key, label in SUMMARY_ROWS
                    if any(key in results[s] for s in splits)]
    if any("void_ignored" in results[s] for s in splits):
        summary_rows += [(label, [results[s].get("void_ignored", {}).get(key) for s in splits], True)
                         for key, label in VOID_IGNORED_ROWS]
    first = max(len(label) for label, *_ in [("class", None)] + class_rows + summary_rows)
    unlabelled = [bool(results[s].get("no_labels")) for s in splits]

    def cells(values, is_score):
        return [NO_LABELS if is_score and none else _fmt(v) for v, none in zip(values, unlabelled)]

    body, summary = ([(label, cells(values, is_score)) for label, values, is_score in rows]
                     for rows in (class_rows, summary_rows))
    # Each column as wide as its widest cell and two spaces ("no labels" and a loss of 2457885.7500 included).
    widths = [max(10, len(split) + 2, *(len(row[i]) + 2 for _, row in body + summary)) for i, split in enumerate(splits)]

    def line(label, row):
        return label.ljust(first) + "".join(cell.rjust(w) for cell, w in zip(row, widths))

    header = line("class", splits)
    rule = "-" * len(header)
    return "\n".join([header, rule, *(line(*r) for r in body), rule, *(line(*r) for r in summary), rule, LEGEND])


def _per_class(result):
    return result.get("per_class_iou") or {}


def _fmt(value):
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"
