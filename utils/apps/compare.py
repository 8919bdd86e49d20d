"""--compare: the paired experiment. The plain SMP model and its AFMA version at one or several depths, trained
with the same seed, data and settings, and one report.

    python main.py --compare unet                      # baseline vs AFMA at --att-depth
    python main.py --compare unet --att-depth 1,2,3,4  # the depth study: the baseline once, AFMA at each depth
    python main.py --compare all                       # the eight architectures

An interrupted comparison goes on when the same command runs again: finished runs are kept, the unfinished
one resumes from its last.pt (or starts over if it had none), and the report is written at the end.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from models import ARCHITECTURES
from utils.apps.train import Resume, check_model_fits, log, stopped_before_first_checkpoint, train
from utils.config import RunConfig
from utils.data.datasets import DATASETS
from utils.engine import distributed
from utils.engine.checkpoint import load_checkpoint
from utils.errors import UsageError
from utils.files import write_atomic, write_json
from utils.labels import scored_classes
from utils.reporting import plots

RECORD = "comparison.json"


def variant_name(depth: int | None) -> str:
    return "baseline" if depth is None else f"afma{depth}"


def variant_label(depth: int | None) -> str:
    return "baseline" if depth is None else f"AFMA depth {depth}"


def compare(archs: list[str], depths: list[int], out_dir: Path, make_run: Callable[[str, int | None, Path], RunConfig],
            settings: dict) -> Path:
    """Train (or reuse, or resume) every run of the comparison and write comparison.md and one plot per arch.

    `make_run(arch, depth, run_dir)` gives a run's checked config; `settings` identify the comparison: a
    folder holding another comparison's record is refused, naming the first difference.
    """
    variants = [None, *depths]
    configs = {(arch, depth): make_run(arch, depth, out_dir / f"{arch}-{variant_name(depth)}")
               for arch in archs for depth in variants}  # every setting of every run checked before the first one
    for config in configs.values():
        check_model_fits(config)
    claim_folder(out_dir, settings)
    results = {key: finish(config) for key, config in configs.items()}
    report = out_dir / "comparison.md"
    if distributed.is_main():
        first = next(iter(configs.values()))
        dataset = DATASETS[first.dataset]
        for arch in archs:
            plots.plot_comparison({variant_label(d): results[arch, d]["test"] for d in variants}, list(first.classes),
                                  out_dir / f"comparison_{arch}.png", small_classes=dataset.small_classes)
        write_atomic(report, comparison_markdown(results, archs, variants, first, settings))
        log(f"\nwrote {report}")
    return report


def claim_folder(out_dir: Path, settings: dict) -> None:
    """Start the comparison's folder, or take up the same comparison again; refuse anything else."""
    record = out_dir / RECORD
    problem = None
    if distributed.is_main():
        if record.is_file():
            saved = json.loads(record.read_text())
            changed = [key for key in sorted(set(saved) | set(settings)) if saved.get(key) != settings.get(key)]
            if changed:
                key = changed[0]
                problem = (f"--output-dir {out_dir} holds another comparison ({key}: {saved.get(key)!r} there, "
                           f"{settings.get(key)!r} now): choose a new folder, or repeat that comparison's command")
            else:
                log(f"{out_dir}: taking up the comparison again (finished runs are kept)")
        elif out_dir.exists() and any(out_dir.iterdir()):
            problem = f"--output-dir {out_dir} is not empty and holds no comparison: choose a new folder"
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(record, settings)
    problem = distributed.broadcast_object(problem)
    if problem:
        raise UsageError(problem)


def finish(config: RunConfig) -> dict:
    """A finished run's metrics, or the run trained (resumed where it has a last.pt)."""
    run_dir = Path(config.output_dir)
    metrics, last = run_dir / "metrics.json", run_dir / "last.pt"
    state = load_checkpoint(last) if last.is_file() else None
    if state and state["epoch"] > config.epochs:  # every model of the table trains the same number of epochs
        raise UsageError(f"{run_dir} has trained {state['epoch']} epochs, more than --epochs {config.epochs}: repeat "
                         f"the comparison with --epochs {state['epoch']} or more, or choose a new --output-dir")
    if state and state["epoch"] == config.epochs and metrics.is_file():
        log(f"{run_dir}: finished earlier, kept")
        return json.loads(metrics.read_text())
    if state:  # interrupted, or trained on to more epochs
        return train(config, Resume(run_dir, state))
    if run_dir.exists() and not stopped_before_first_checkpoint(run_dir) and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir} is neither a finished run nor one to resume: move it away and run again")
    return train(config)


def comparison_markdown(results: dict, archs, variants, config: RunConfig, settings: dict) -> str:
    """Per architecture, one row per model (baseline first), per-class IoU, the means, the small-object scores;
    below each AFMA row, its difference from the baseline. Every score is the authors' protocol but the column
    "mIoU (void ignored)" (the Cityscapes/SegNet protocol, utils.metrics.void_ignored_scores)."""
    dataset = DATASETS[config.dataset]
    names = scored_classes(config.classes)
    columns = [*names, "mIoU", "mIoU (void ignored)", "global IoU", "mean accuracy", "found small", "found medium",
               "found large", "small-object IoU"]
    depths = ", ".join(str(d) for d in variants if d is not None)
    lines = [f"# Baseline vs AFMA on {config.dataset} ({config.data_dir})", "",
             f"Encoder {config.model.encoder_name}, AFMA at depth {depths}, patch {config.model.patch_size}, "
             f"{config.epochs} epochs, seed {config.seed}; test split, each model's best epoch by validation mIoU. "
             f"Every score but \"mIoU (void ignored)\" follows the authors' protocol (every pixel counts: a void "
             f"pixel predicted as a class is a false positive of it); \"mIoU (void ignored)\" leaves void pixels "
             f"out, as the Cityscapes/SegNet evaluation does (a pixel predicted void is still a miss); \"no labels\": "
             f"a test split without labelled pixels. "
             f"\"found\": objects found (object IoU >= 0.5) by size. Small classes: "
             f"{', '.join(dataset.small_classes) or 'none'}.", ""]
    for arch in archs:
        lines += [f"## {arch}", "", "| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        base = row_values(results[arch, None]["test"], names)
        for depth in variants:
            result = results[arch, depth]["test"]
            values = row_values(result, names)
            cells = ["no labels"] * len(values) if result.get("no_labels") else [cell(v) for v in values]
            lines.append(f"| {variant_label(depth)} | " + " | ".join(cells) + " |")
            if depth is not None:
                lines.append("| difference | " + " | ".join(difference(b, v) for b, v in zip(base, values)) + " |")
        lines += ["", f"![{arch}](comparison_{arch}.png)", ""]
    return "\n".join(lines)


def row_values(result: dict, names) -> list:
    """One model's row: per-class IoU, mIoU, void-ignored mIoU (None in a metrics.json from before it existed),
    global IoU, mean accuracy, then the small-object scores."""
    small = result["small_objects"]
    return [*(result["per_class_iou"][name] for name in names), result["miou"],
            result.get("void_ignored", {}).get("miou"), result["global_iou"], result["accuracy"],
            *(small["mean_recall50"][b] for b in ("small", "medium", "large")), small["mean_small_iou"]]


def cell(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def difference(before, after) -> str:
    if before is None or after is None or before != before or after != after:
        return "-"
    return f"{after - before:+.4f}"


def parse_archs(value: str) -> list[str]:
    archs = list(ARCHITECTURES) if value == "all" else [value]
    if any(arch not in ARCHITECTURES for arch in archs):
        raise UsageError(f"--compare {value!r} is not valid: choose one of {', '.join(ARCHITECTURES)}, or all")
    return archs
