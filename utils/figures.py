"""The figures of one finished run: training curves, per-class IoU, test predictions and an AFMA heat map."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import plots
from .datasets import DATASETS
from .transforms import denormalize


def draw_run_figures(run_dir: Path, model, test_data, history, results, config, device, count: int) -> list[Path]:
    dataset = DATASETS[config["dataset"]]
    classes, small = config["classes"], dataset.small_classes
    written = [
        plots.plot_history(history, run_dir / "curves.png"),
        plots.plot_per_class_iou(results, classes, run_dir / "per_class_iou.png", small_classes=small),
    ]
    mean, std = config["normalisation"]["mean"], config["normalisation"]["std"]
    samples = [test_data[i] for i in range(min(count, len(test_data)))]
    images = torch.stack([image for image, _ in samples]).to(device)
    model.eval()
    with torch.inference_mode():
        logits, attention = model(images)
    raw = [denormalize(image, mean, std) for image, _ in samples]
    targets = [mask.numpy() for _, mask in samples]
    predictions = list(logits.argmax(1).cpu().numpy())
    written.append(plots.plot_predictions(raw, targets, predictions, classes, dataset.palette,
                                          run_dir / "predictions.png", void_index=len(classes) - 1))
    if attention is not None:
        index = attention_class(targets[0], classes, small)
        heat = plots.attention_heatmap(attention, 0, index, targets[0].shape, config["patch_size"])
        written.append(plots.plot_attention(raw[0], heat, classes[index], run_dir / f"afma_{classes[index]}.png"))
    return written


def attention_class(target: np.ndarray, classes, small_classes) -> int:
    """The small class covering most of the image (the paper shows AFMA for those), else the largest."""
    areas = np.bincount(target.ravel(), minlength=len(classes))[: len(classes) - 1]
    small = [classes.index(name) for name in small_classes if name in classes and areas[classes.index(name)] > 0]
    return max(small, key=lambda c: areas[c]) if small else int(areas.argmax())
