"""Text tables: the printed results of a run, and the markdown of the comparison reports."""
from __future__ import annotations

import math

from utils.labels import scored_classes


def format_table(results, class_names):
    """Plain-text table, one column per split, for logs and reports.

    results: {split: {"per_class_iou": {name: iou} (or a list in class order), "miou", "global_iou",
    "accuracy", optional "loss"}}. class_names: all C names; the last one gets no row. NaN or missing
    values print as "-".
    """
    splits = list(results)
    class_rows = [(name, [_per_class(results[s], class_names).get(name) for s in splits])
                  for name in scored_classes(class_names)]
    summary_rows = [(label, [results[s].get(key) for s in splits]) for key, label in SUMMARY_ROWS
                    if any(key in results[s] for s in splits)]
    first = max(len(label) for label, _ in [("class", None)] + class_rows + summary_rows)
    widths = [max(10, len(s) + 2) for s in splits]

    def line(label, cells):
        return label.ljust(first) + "".join(cell.rjust(w) for cell, w in zip(cells, widths))

    header = line("class", splits)
    rule = "-" * len(header)
    body = [line(label, [_fmt(v) for v in values]) for label, values in class_rows]
    summary = [line(label, [_fmt(v) for v in values]) for label, values in summary_rows]
    return "\n".join([header, rule, *body, rule, *summary])


SUMMARY_ROWS = (("miou", "mIoU"), ("global_iou", "global IoU"), ("accuracy", "mean accuracy"),
                ("loss", "loss"))


def _per_class(result, class_names):
    return result.get("per_class_iou", {})


def _fmt(value):
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


