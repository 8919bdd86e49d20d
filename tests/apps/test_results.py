"""What a researcher looks at: the run's figures, --predict on an odd-sized image, the --compare report."""
import json

import cv2
import numpy as np
import pytest

import main
from tests.conftest import FAST

pytestmark = pytest.mark.e2e  # every test here trains runs and reads what they report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_picture(path, min_side=200):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = cv2.imread(str(path))
    assert image is not None and min(image.shape[:2]) >= min_side, path
    assert image.std() > 5, f"{path} is a flat picture"


@pytest.fixture
def trained(tiny_camvid, tmp_path):
    run = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 0
    return run


def test_run_draws_its_figures(trained):
    for name in ("curves.png", "per_class_iou.png", "predictions.png"):
        assert_picture(trained / name)
    heat_maps = list(trained.glob("afma_*.png"))
    assert len(heat_maps) == 1
    assert_picture(heat_maps[0])


def test_run_keeps_each_test_image_confusion_matrix_beside_its_metrics(trained, tiny_camvid):
    from utils.engine.evaluate import read_per_image

    metrics = json.loads((trained / "metrics.json").read_text())
    for split in ("val", "test"):
        mats = read_per_image(trained, split)
        assert mats.dtype == np.int64 and mats.shape == (len(list((tiny_camvid / split).iterdir())), 12, 12)
        assert (mats.sum(0) == np.array(metrics[split]["confusion_matrix"])).all()
        assert (mats.sum((1, 2)) > 0).all()  # every image counted, none empty
    assert "per_image_confusion" not in metrics["test"]


def test_predict_an_odd_sized_image_at_its_own_size(trained, tiny_camvid, tmp_path, capsys):
    source = cv2.imread(str(sorted((tiny_camvid / "test").iterdir())[0]))
    odd = tmp_path / "odd.jpg"
    cv2.imwrite(str(odd), source[:333, :517])
    out = tmp_path / "predicted"
    assert main.main(["--predict", str(odd), "--checkpoint", str(trained / "best.pt"), "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["odd_labels.png", "odd_mask.png", "odd_overlay.png",
                                                     "predict.json"]
    labels = cv2.imread(str(out / "odd_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (333, 517) and labels.max() < 12
    for name in ("odd_mask.png", "odd_overlay.png"):
        assert cv2.imread(str(out / name)).shape == (333, 517, 3)
    # The mask's colours are the palette colours of the predicted labels.
    from utils.data.datasets import CamVid

    mask = cv2.cvtColor(cv2.imread(str(out / "odd_mask.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(mask, np.asarray(CamVid.palette, dtype=np.uint8)[labels])


def test_predict_a_folder(trained, tiny_camvid, tmp_path):
    out = tmp_path / "folder"
    assert main.main(["--predict", str(tiny_camvid / "val"), "--checkpoint", str(trained / "best.pt"),
                      "--output-dir", str(out)]) == 0
    assert len(list(out.glob("*_overlay.png"))) == len(list((tiny_camvid / "val").iterdir()))


def test_compare_writes_the_paired_report(tiny_camvid, tmp_path):
    out = tmp_path / "compare"
    _, runs = run_comparison(out, tiny_camvid, "--compare", "linknet")
    assert runs == {"linknet-baseline", "linknet-afma2"} and (out / "comparison.md").is_file()
    assert_picture(out / "comparison_linknet.png")
    report = (out / "comparison.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model |"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[1:4] == ["sky", "building", "pole"] and "unlabelled" not in columns
    assert {"mIoU", "found small", "small-object IoU"} <= set(columns)
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert {"baseline", "AFMA depth 2", "difference"} <= set(rows)
    base = json.loads((out / "linknet-baseline" / "metrics.json").read_text())["test"]["miou"]
    afma = json.loads((out / "linknet-afma2" / "metrics.json").read_text())["test"]["miou"]
    miou = columns.index("mIoU")

    def cell(row):
        return [c.strip() for c in rows[row].strip("|").split("|")][miou]

    assert cell("baseline") == f"{base:.4f}" and cell("AFMA depth 2") == f"{afma:.4f}"
    # One seed: the difference still comes with its paired bootstrap interval, which brackets it.
    diff, low, high = parse_interval(cell("difference"))
    assert diff == pytest.approx(afma - base, abs=1e-4) and low <= diff <= high
    assert "2000 resamples, numpy seed 0" in report


def run_comparison(out, data_dir, *flags):
    """main.py --compare ... for one epoch into `out`: (its command line, to run it again; its run folders)."""
    argv = [*FAST, "--data-dir", str(data_dir), "--epochs", "1", *flags, "--output-dir", str(out)]
    assert main.main(argv) == 0
    return argv, {p.name for p in out.iterdir() if p.is_dir()}


def parse_interval(text):
    """'+0.0123 [-0.0050, +0.0301] *' -> (0.0123, -0.005, 0.0301)."""
    diff, rest = text.split(" [")
    low, high = rest.split("]")[0].split(", ")
    return float(diff), float(low), float(high)


def test_compare_over_seeds_pairs_the_runs_reports_mean_std_and_intervals_and_goes_on(tiny_camvid, tmp_path, capsys):
    from utils.engine.evaluate import read_per_image
    from utils.reporting import stats

    out = tmp_path / "seeds"
    argv, runs = run_comparison(out, tiny_camvid, "--compare", "linknet", "--seeds", "0,1")
    assert runs == {f"linknet-{v}-seed{s}" for v in ("baseline", "afma2") for s in (0, 1)}
    assert [json.loads((out / f"linknet-baseline-seed{s}" / "config.json").read_text())["seed"] for s in (0, 1)] == [0, 1]
    assert_picture(out / "comparison_linknet.png")
    report = (out / "comparison.md").read_text()
    assert report in capsys.readouterr().out  # the printed table is the report
    header = next(line for line in report.splitlines() if line.startswith("| model |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in report.splitlines() if line.startswith("| ")}
    miou = columns.index("mIoU")
    values = [json.loads((out / f"linknet-baseline-seed{s}" / "metrics.json").read_text())["test"]["miou"] for s in (0, 1)]
    mean, std = stats.mean_std(values)
    assert rows["baseline"][miou] == f"{mean:.4f} ± {std:.4f}"
    # The interval is the module's paired bootstrap over the stored per-image matrices of both seeds.
    want = stats.paired_bootstrap([read_per_image(out / f"linknet-baseline-seed{s}") for s in (0, 1)],
                                  [read_per_image(out / f"linknet-afma2-seed{s}") for s in (0, 1)])["miou"]
    assert parse_interval(rows["difference"][miou]) == pytest.approx((want["diff"], want["low"], want["high"]), abs=1e-4)
    printed = {bound: round(want[bound], 4) for bound in ("low", "high")}  # the star claims what the cell shows
    assert rows["difference"][miou].endswith(" *") == stats.excludes_zero(printed)
    # Interrupted: the same command keeps the three finished runs and trains the fourth.
    (out / "linknet-afma2-seed1" / "metrics.json").unlink()
    assert main.main(argv) == 0
    assert capsys.readouterr().out.count("finished earlier, kept") == 3
    assert (out / "linknet-afma2-seed1" / "metrics.json").is_file()
    # Other seeds in the same folder are another comparison.
    assert main.main([*argv[:-4], "--seeds", "0,2", "--output-dir", str(out)]) == 2
    assert "seeds" in capsys.readouterr().err


def test_the_depth_study_trains_the_baseline_once_and_an_interrupted_comparison_goes_on(tiny_camvid, tmp_path, capsys,
                                                                                         monkeypatch):
    out = tmp_path / "study"
    argv, runs = run_comparison(out, tiny_camvid, "--compare", "fpn", "--att-depth", "1,3")
    assert runs == {"fpn-baseline", "fpn-afma1", "fpn-afma3"}
    report = (out / "comparison.md").read_text()
    models = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")][1:]
    assert models == ["baseline", "AFMA depth 1", "difference", "AFMA depth 3", "difference"]
    assert_picture(out / "comparison_fpn.png")
    # Interrupted after the first runs: the last run lost its results; the same command finishes the job.
    (out / "fpn-afma3" / "metrics.json").unlink()
    (out / "comparison.md").unlink()
    baseline = (out / "fpn-baseline" / "last.pt").stat().st_mtime_ns
    # A stop inside one of its runs says how the whole comparison goes on, not only that run.
    import utils.apps.train as training
    from utils.errors import Interrupted

    def stopped(config, resume=None):
        raise Interrupted(f"interrupted: continue with: python main.py --resume {config.output_dir}", 130)

    with monkeypatch.context() as patch:
        patch.setattr(training, "train", stopped)
        capsys.readouterr()
        assert main.main(argv) == 130
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "the same --compare command" in said[0] and "fpn-afma3" in said[0]
    capsys.readouterr()
    assert main.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, kept") == 2 and (out / "comparison.md").exists()
    assert (out / "fpn-baseline" / "last.pt").stat().st_mtime_ns == baseline
    assert json.loads((out / "fpn-afma3" / "metrics.json").read_text())["run"]["epochs"] == 1
    # Another comparison in the same folder is refused, naming what differs.
    assert main.main([*argv, "--seed", "5"]) == 2
    assert "seed" in capsys.readouterr().err


def test_a_long_run_can_be_watched_curves_each_epoch_and_tensorboard_when_installed(tiny_camvid, tmp_path, monkeypatch):
    import sys
    import types

    import utils.apps.train as training

    scalars, drawn = [], []

    class SummaryWriter:  # stands in for torch.utils.tensorboard's, which needs the tensorboard package
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    original = training.plots.plot_history
    monkeypatch.setattr(training.plots, "plot_history", lambda history, path: drawn.append(len(history)) or original(history, path))
    monkeypatch.setattr(training, "CURVES_EVERY_S", 0)
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "2", "--output-dir", str(tmp_path / "run")]) == 0
    assert drawn[:2] == [1, 2]  # redrawn after each epoch, while the run goes on
    assert ("val_miou", 1) in scalars and ("train_loss", 2) in scalars


@pytest.mark.parametrize("argv,words", [
    (["--seeds", "0,1"], ["--seeds goes with --compare"]),
    (["--compare", "unet", "--seeds", "0,x"], ["--seeds '0,x' is not valid", "distinct integers"]),
    (["--compare", "unet", "--seeds", "1,1"], ["--seeds '1,1' is not valid"]),
])
def test_bad_seeds_are_one_error_line_before_anything_runs(argv, words, tmp_path, capsys):
    assert main.main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words)
    assert not (tmp_path / "out").exists()
