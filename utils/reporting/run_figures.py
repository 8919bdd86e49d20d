"""The figures of one finished run: training curves, per-class IoU, test predictions and an AFMA heat map."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from utils.data.datasets import dataset_class, display_rgb
from utils.labels import scored_classes, void_index
from utils.reporting import plots


def draw_run_figures(run_dir: Path, model, test_data, normalizer, history, results, config, count: int) -> list[Path]:
    dataset = dataset_class(config.dataset, config.model.dataset_params)
    classes, small = list(config.classes), dataset.small_classes
    written = [
        plots.plot_history(history, run_dir / "curves.png"),
        plots.plot_per_class_iou(results, classes, run_dir / "per_class_iou.png", small_classes=small),
    ]
    samples = [test_data[i] for i in range(min(count, len(test_data)))]
    images = torch.stack([image for image, _ in samples])
    model.eval()
    with torch.inference_mode():
        logits, attention = model(normalizer(images))
    raw = [display_rgb(image.permute(1, 2, 0).numpy()) for image, _ in samples]  # grey, RGBA: shown as RGB
    targets = [mask.numpy().astype(np.int64) for _, mask in samples]
    predictions = list(logits.argmax(1).cpu().numpy())
    written.append(plots.plot_predictions(raw, targets, predictions, classes, dataset.palette,
                                          run_dir / "predictions.png", void_index=void_index(classes)))
    if attention is not None:
        index = attention_class(targets[0], classes, small)
        heat = plots.attention_heatmap(attention, 0, index, targets[0].shape, config.model.patch_size)
        written.append(plots.plot_attention(raw[0], heat, classes[index], run_dir / f"afma_{classes[index]}.png"))
    return written


def attention_class(target: np.ndarray, classes, small_classes) -> int:
    """The small class covering most of the image (the paper shows AFMA for those), else the largest."""
    scored = scored_classes(classes)
    areas = np.bincount(target.ravel(), minlength=len(classes))[: len(scored)]
    small = [scored.index(name) for name in small_classes if name in scored and areas[scored.index(name)] > 0]
    return max(small, key=lambda c: areas[c]) if small else int(areas.argmax())
