"""Figures for runs and reports: training curves, per-class IoU, predictions, AFMA heat maps.

Every plot function writes one PNG to `path` (parent folders created), closes its figure so long runs do not
leak memory, and returns the Path. Per-class results are shaped as utils.reporting.tables.format_table takes
them: `class_names` lists all C classes and the last (unlabelled/background) one is not plotted.
"""

from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from utils.files import write_atomic  # noqa: E402
from utils.labels import scored_classes  # noqa: E402

ERROR_COLOURS = {"correct": (46, 160, 67), "wrong": (214, 39, 40), "void": (128, 128, 128)}
SMALL_COLOUR = "tab:red"


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, lambda file: fig.savefig(file, format=path.suffix.lstrip(".") or "png", dpi=100,
                                                    bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _ious(result, class_names):
    """per_class_iou (name -> IoU) as a list in class order, NaN where missing or undefined."""
    ious = result.get("per_class_iou", {})
    return [float("nan") if ious.get(name) is None else ious[name] for name in scored_classes(class_names)]


def plot_history(history, path):
    """Losses and validation mIoU per epoch, from main.py's history (one row per epoch, each validated); a value a
    row lacks or holds as None is left out of its curve."""
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        epochs, values = _series(history, key)
        ax_loss.plot(epochs, values, marker=".", label=label)
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="loss")
    ax_loss.legend()
    epochs, values = _series(history, "val_miou")
    ax_miou.plot(epochs, values, marker=".", color="tab:green", label="validation mIoU")
    if values and not np.isnan(values).all():  # a val split without labels has no best to mark
        best = int(np.nanargmax(values))
        ax_miou.scatter([epochs[best]], [values[best]], color="tab:red", zorder=3,
                        label=f"best {values[best]:.4f} (epoch {epochs[best]})")
    ax_miou.set(title="Validation mIoU per epoch", xlabel="epoch", ylabel="mIoU")
    ax_miou.legend()
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _series(history, key):
    rows = [r for r in history if r.get(key) is not None]
    return [r["epoch"] for r in rows], [r[key] for r in rows]


def _grouped_bars(ax, series, class_names, small_classes):
    """One bar group per class, one bar per labelled series; small classes get red labels and a band."""
    names = scored_classes(class_names)
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for i, (label, ious) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, ious, width, label=label)
    _mark_small_classes(ax, x, names, small_classes)
    ax.set(ylabel="IoU", ylim=(0, 1.05), xlim=(-0.6, len(names) - 0.4))
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if set(small_classes or ()):
        handles.append(Patch(color=SMALL_COLOUR, alpha=0.25))
        labels.append("small / thin class")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)


def plot_per_class_iou(results, class_names, path, small_classes=None):
    """Grouped bars of per-class IoU for each split (results as format_table takes them), mIoU in the legend."""
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(class_names)), 5))
    series = {f"{split} (mIoU {r['miou']:.4f})": _ious(r, class_names) for split, r in results.items()}
    _grouped_bars(ax, series, class_names, small_classes)
    ax.set_title("Per-class IoU")
    return _save(fig, path)


def plot_comparison(variants, class_names, path, small_classes=None, differences=None):
    """Per-class IoU of several models side by side, the first one (the baseline) the reference.

    variants: {label: result}, e.g. {"baseline": ..., "AFMA depth 2": ...}; the title states each mIoU change.
    differences: {label: utils.reporting.stats.paired_bootstrap result or None}: a second panel shows each
    AFMA model's per-class difference to the baseline with its bootstrap interval as an error bar.
    """
    shown = {label: d for label, d in (differences or {}).items() if d}
    width = max(8, 0.9 * len(class_names))
    fig, axes = plt.subplots(2 if shown else 1, 1, figsize=(width, 10 if shown else 5), squeeze=False,
                             layout="constrained")  # the rotated class names clear the second title
    ax = axes[0, 0]
    series = {f"{label} (mIoU {r['miou']:.4f})": _ious(r, class_names) for label, r in variants.items()}
    _grouped_bars(ax, series, class_names, small_classes)
    (base_label, base), *others = variants.items()
    changes = ", ".join(f"{label} {r['miou'] - base['miou']:+.4f}" for label, r in others)
    ax.set_title(f"Per-class IoU against the {base_label} (mIoU change: {changes})")
    if shown:
        _difference_bars(axes[1, 0], shown, class_names, small_classes)
    return _save(fig, path)


def _difference_bars(ax, differences, class_names, small_classes):
    """Per class, each model's IoU difference to the baseline and its bootstrap interval (error bars)."""
    names = scored_classes(class_names)
    x = np.arange(len(names))
    width = 0.8 / len(differences)
    for i, (label, d) in enumerate(differences.items()):
        diff, low, high = (np.asarray(d["per_class_iou"][key], dtype=float) for key in ("diff", "low", "high"))
        ax.bar(x + (i - (len(differences) - 1) / 2) * width, diff, width,
               yerr=np.nan_to_num(np.stack([diff - low, high - diff])), capsize=3,
               label=f"{label} (mIoU {d['miou']['diff']:+.4f} [{d['miou']['low']:+.4f}, {d['miou']['high']:+.4f}])")
    ax.axhline(0, color="black", linewidth=0.8)
    _mark_small_classes(ax, x, names, small_classes)
    first = next(iter(differences.values()))
    ax.set(ylabel="IoU difference to the baseline", xlim=(-0.6, len(names) - 0.4),
           title=f"AFMA - baseline per class, {first['level']:.0%} paired bootstrap interval over "
                 f"{first['images']} test images x {first['seeds']} seed(s) ({first['resamples']} resamples)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)


def colorize(mask, palette):
    """(H, W) class indices -> (H, W, 3) uint8 colours; indices outside the palette become black."""
    mask = np.asarray(mask)
    palette = np.asarray(palette, dtype=np.uint8)
    valid = (mask >= 0) & (mask < len(palette))
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    out[valid] = palette[mask[valid]]
    return out


def error_map(target, pred, void_index=None):
    """(H, W, 3) uint8: green where pred == target, red where wrong, grey where target is void."""
    target, pred = np.asarray(target), np.asarray(pred)
    out = np.empty((*target.shape, 3), dtype=np.uint8)
    out[:] = ERROR_COLOURS["wrong"]
    out[pred == target] = ERROR_COLOURS["correct"]
    if void_index is not None:
        out[target == void_index] = ERROR_COLOURS["void"]
    return out


def plot_predictions(images, targets, preds, class_names, palette, path, void_index=None):
    """One row per image: input, ground truth, prediction, error map; class and error legends below."""
    n = len(images)
    h, w = np.asarray(images[0]).shape[:2]
    fig, axes = plt.subplots(n, 4, figsize=(16, n * (4 * h / w + 0.6)), squeeze=False)
    titles = ("input", "ground truth", "prediction", "error map")
    for row, (image, target, pred) in enumerate(zip(images, targets, preds)):
        panels = (image, colorize(target, palette), colorize(pred, palette),
                  error_map(target, pred, void_index))
        for ax, panel, title in zip(axes[row], panels, titles):
            ax.imshow(panel)
            ax.set_title(f"{title} ({row + 1})" if n > 1 else title)
            ax.axis("off")
    fig.tight_layout()
    class_handles = [Patch(color=np.asarray(c) / 255, label=name) for name, c in zip(class_names, palette)]
    error_names = ["correct", "wrong"] + (["void"] if void_index is not None else [])
    error_handles = [Patch(color=np.asarray(ERROR_COLOURS[e]) / 255, label=f"error map: {e}")
                     for e in error_names]
    below_last_row = axes[-1, 0].get_position().y0 - 0.01
    fig.legend(handles=class_handles + error_handles, loc="upper center", bbox_to_anchor=(0.5, below_last_row),
               ncol=min(len(class_handles) + len(error_handles), 7), title="colours")
    return _save(fig, path)


def attention_heatmap(attention, batch_index, class_index, image_size, patch_size):
    """(H, W) float map of the AFMA row sums of one image and class, each patch's value over its pixels.

    attention.row_sum() is (B, C, Li), Li = hi * wi image patches in row-major order starting top-left;
    pixels beyond hi * patch_size rows / wi * patch_size columns (the dropped remainder) get 0.
    """
    hi, wi = attention.grid
    values = attention.row_sum()[batch_index, class_index].detach().float().cpu().numpy()
    block = np.kron(values.reshape(hi, wi), np.ones((patch_size, patch_size), dtype=np.float32))
    out = np.zeros(image_size, dtype=np.float32)
    out[: hi * patch_size, : wi * patch_size] = block
    return out


def plot_attention(image, heatmap, class_name, path):
    """Input beside the input overlaid with the heat map (bilinearly resized to the image), colour bar."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    heat = cv2.resize(np.asarray(heatmap, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    fig, (ax_img, ax_att) = plt.subplots(1, 2, figsize=(12, 3.2 * h / w + 1.5))
    ax_img.imshow(image)
    ax_img.set_title("input")
    ax_att.imshow(image)
    shown = ax_att.imshow(heat, cmap="jet", alpha=0.5)
    ax_att.set_title(f"AFMA for class {class_name}")
    fig.colorbar(shown, ax=ax_att, fraction=0.046, pad=0.02, label="attention (sum over feature patches)")
    for ax in (ax_img, ax_att):
        ax.axis("off")
    return _save(fig, path)


def _mark_small_classes(ax, x, names, small_classes):
    """Class names as x ticks; the small classes' in red and bold, over a light band."""
    small = set(small_classes or ())
    for i, name in enumerate(names):
        if name in small:
            ax.axvspan(i - 0.45, i + 0.45, color=SMALL_COLOUR, alpha=0.08, zorder=0)
    ax.set_xticks(x, names, rotation=35, ha="right")
    for tick, name in zip(ax.get_xticklabels(), names):
        if name in small:
            tick.set_color(SMALL_COLOUR)
            tick.set_fontweight("bold")
