import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.reporting.plots import attention_heatmap, colorize, error_map, plot_attention, plot_comparison, \
    plot_history, plot_per_class_iou, plot_predictions

NAMES = ["sky", "pole", "car", "unlabelled"]
PALETTE = [(128, 128, 128), (192, 192, 128), (64, 0, 128), (0, 0, 0)]
ROOT = Path(__file__).resolve().parents[2]


def assert_valid_png(path):
    path = Path(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image.reshape(-1, 3).std(axis=0).max() > 5  # not a single flat colour


def result(miou, ious):
    return {"miou": miou, "global_iou": 0.8, "accuracy": 0.9, "per_class_iou": dict(zip(NAMES[:-1], ious))}


def scene(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    target = np.zeros((60, 80), dtype=np.int64)
    target[30:] = 2
    target[10:50, 40:44] = 1
    target[:5, :5] = 3
    pred = target.copy()
    pred[10:20, 40:50] = 0
    return image, target, pred


@pytest.mark.e2e
def test_plots_render_with_agg_whatever_backend_the_environment_asks_for(tmp_path):
    """A training node may have an interactive backend in its matplotlibrc or MPLBACKEND, and no display: the
    plots choose Agg themselves. A fresh interpreter, since this one imported the module long ago."""
    probe = ("import matplotlib, utils.reporting.plots as plots; "
             f"plots.plot_history([{{'epoch': 0, 'train_loss': 1.0}}], {str(tmp_path / 'h.png')!r}); "
             "print(matplotlib.get_backend())")
    env = {**os.environ, "MPLBACKEND": "pdf"}  # non-interactive too, so the probe runs anywhere
    env.pop("DISPLAY", None)
    backend = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    assert backend.lower() == "agg"
    assert_valid_png(tmp_path / "h.png")


def test_plot_history_writes_png_in_new_folder(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1) if e % 2 == 0 else None,
                "val_miou": 0.1 * e if e % 2 == 0 else None, "lr": 1e-4} for e in range(8)]
    path = plot_history(history, tmp_path / "new" / "history.png")
    assert path == tmp_path / "new" / "history.png"
    assert_valid_png(path)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save, in order, to inspect what they draw (they are still written)."""
    import utils.reporting.plots as plots

    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    return figures


def legend_labels(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def bar_heights(ax):
    return [bar.get_height() for bars in ax.containers for bar in bars]  # the bars, not the small classes' bands


def test_plot_history_marks_the_best_val_miou_and_none_without_labels(tmp_path, drawn):
    """The best epoch is marked with its score; every val mIoU NaN (a split without labelled pixels): the curves
    are drawn, no best epoch is marked."""
    rows = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_miou": m, "lr": 1e-4}
            for e, m in ((1, 0.2), (2, 0.5), (3, 0.4))]
    assert_valid_png(plot_history(rows, tmp_path / "curves.png"))
    assert legend_labels(drawn[-1].axes[1]) == ["validation mIoU", "best 0.5000 (epoch 2)"]
    unlabelled = [row | {"val_miou": float("nan")} for row in rows]
    assert_valid_png(plot_history(unlabelled, tmp_path / "nan.png"))
    loss, miou = drawn[-1].axes
    assert legend_labels(miou) == ["validation mIoU"] and len(miou.collections) == 0  # no best marker
    assert [list(line.get_xdata()) for line in loss.lines] == [[1, 2, 3], [1, 2, 3]]


def test_plot_per_class_iou_draws_each_split_and_marks_the_small_classes(tmp_path, drawn):
    results = {"val": result(0.6, [0.9, 0.3, 0.6]), "test": result(0.55, [0.85, 0.25, float("nan")])}
    assert_valid_png(plot_per_class_iou(results, NAMES, tmp_path / "iou.png", small_classes=["pole"]))
    ax = drawn[-1].axes[0]
    np.testing.assert_equal(bar_heights(ax), [0.9, 0.3, 0.6, 0.85, 0.25, np.nan])  # unlabelled is not plotted
    ticks = {tick.get_text(): tick.get_color() for tick in ax.get_xticklabels()}
    assert list(ticks) == NAMES[:-1]
    assert [name for name, colour in ticks.items() if colour == "tab:red"] == ["pole"]
    assert legend_labels(ax) == ["val (mIoU 0.6000)", "test (mIoU 0.5500)", "small / thin class"]


def test_plot_comparison_states_each_miou_change_against_the_baseline(tmp_path, drawn):
    base, afma = result(0.5, [0.9, 0.2, 0.4]), result(0.6, [0.9, 0.4, 0.5])
    assert_valid_png(plot_comparison({"baseline": base, "AFMA depth 2": afma}, NAMES, tmp_path / "cmp.png",
                                     small_classes=["pole"]))
    deeper = result(0.55, [0.8, 0.5, 0.5])
    study = {"baseline": base, "AFMA depth 1": afma, "AFMA depth 2": deeper}
    assert_valid_png(plot_comparison(study, NAMES, tmp_path / "study.png"))
    ax = drawn[-1].axes[0]
    assert ax.get_title() == "Per-class IoU against the baseline (mIoU change: AFMA depth 1 +0.1000, AFMA depth 2 " \
                             "+0.0500)"
    assert bar_heights(ax) == [0.9, 0.2, 0.4, 0.9, 0.4, 0.5, 0.8, 0.5, 0.5]
    assert "small / thin class" not in legend_labels(ax)


def test_plot_comparison_adds_a_panel_of_differences_with_their_intervals(tmp_path):
    from utils.reporting.stats import paired_bootstrap

    rng = np.random.default_rng(0)
    mats = rng.integers(0, 30, size=(2, 5, 4, 4))
    better = mats + 20 * np.eye(4, dtype=np.int64)
    base, afma = result(0.5, [0.9, 0.2, 0.4]), result(0.6, [0.9, 0.4, 0.5])
    plain = plot_comparison({"baseline": base, "AFMA depth 2": afma}, NAMES, tmp_path / "plain.png")
    both = plot_comparison({"baseline": base, "AFMA depth 2": afma}, NAMES, tmp_path / "both.png", small_classes=["pole"],
                           differences={"AFMA depth 2": paired_bootstrap(mats, better, resamples=50)})
    assert_valid_png(both)
    assert cv2.imread(str(both)).shape[0] > 1.5 * cv2.imread(str(plain)).shape[0]  # the second panel is there


@pytest.mark.parametrize("n", [1, 2])
def test_plot_predictions(tmp_path, n):
    images, targets, preds = zip(*(scene(i) for i in range(n)))
    path = plot_predictions(list(images), list(targets), list(preds), NAMES, PALETTE, tmp_path / "pred.png",
                            void_index=3)
    assert_valid_png(path)


def test_colorize_maps_palette_and_blackens_unknown_indices():
    mask = np.array([[0, 1], [2, 255]])
    out = colorize(mask, PALETTE)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == list(PALETTE[0])
    assert out[0, 1].tolist() == list(PALETTE[1])
    assert out[1, 0].tolist() == list(PALETTE[2])
    assert out[1, 1].tolist() == [0, 0, 0]


def test_error_map_marks_correct_wrong_and_void():
    target = np.array([[0, 1, 3]])
    pred = np.array([[0, 2, 0]])
    out = error_map(target, pred, void_index=3)
    assert out[0, 0].tolist() == [46, 160, 67]  # correct
    assert out[0, 1].tolist() == [214, 39, 40]  # wrong
    assert out[0, 2].tolist() == [128, 128, 128]  # void


class FakeAttention:
    """The two members attention_heatmap uses: row_sum() (B, C, Li) and grid (hi, wi)."""

    def __init__(self, row_sums, grid):
        self._row_sums = row_sums
        self.grid = grid

    def row_sum(self):
        return self._row_sums


def test_attention_heatmap_places_patch_values():
    sums = torch.zeros(2, 3, 6)
    sums[1, 2] = torch.arange(1.0, 7.0)  # patches row-major on a 2 x 3 grid
    heat = attention_heatmap(FakeAttention(sums, (2, 3)), 1, 2, (10, 13), 4)
    assert heat.shape == (10, 13) and heat.dtype == np.float32
    expected = np.zeros((10, 13), dtype=np.float32)
    for k, value in enumerate(range(1, 7)):
        row, col = divmod(k, 3)
        expected[row * 4:(row + 1) * 4, col * 4:(col + 1) * 4] = value
    np.testing.assert_array_equal(heat, expected)
    assert heat[8:].sum() == 0 and heat[:, 12:].sum() == 0  # remainder outside whole patches
    assert not attention_heatmap(FakeAttention(sums, (2, 3)), 0, 2, (10, 13), 4).any()


def test_plot_attention_upsamples_low_resolution_heatmap(tmp_path):
    image, _, _ = scene(0)
    heat = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert_valid_png(plot_attention(image, heat, "pole", tmp_path / "att.png"))


def test_method_diagram_script_draws_legible_size(tmp_path):
    spec = importlib.util.spec_from_file_location("make_method_diagram", ROOT / "figures/make_method_diagram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.OUT = tmp_path / "afma_method.png"
    module.main()
    assert_valid_png(module.OUT)
    assert cv2.imread(str(module.OUT)).shape[:2] == (900, 1600)
