"""--compare: the paired experiment. The plain SMP model and its AFMA version at one or several depths, trained
with the same seed, data and settings, and one report.

    python main.py --compare unet                      # baseline vs AFMA at --att-depth
    python main.py --compare unet --att-depth 1,2,3,4  # the depth study: the baseline once, AFMA at each depth
    python main.py --compare all                       # the eight architectures
    python main.py --compare unet --seeds 0,1,2        # every model once per seed (the same seeds for all)

With --seeds, each model's scores are the mean +- standard deviation over the seeds and each AFMA row's
difference to the baseline comes with a 95 % paired bootstrap interval over the test images, pooled over the
seeds (utils/reporting/stats.py), from the per-image confusion matrices each run keeps. Without --seeds the
one seed of --seed is used, with the interval too.

An interrupted comparison goes on when the same command runs again: finished runs are kept, the unfinished
one resumes from its last.pt (or starts over if it had none), and the report is written at the end.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from models import ARCHITECTURES, build_model, variant_name
from utils.config import RunConfig
from utils.data.datasets import dataset_class
from utils.data.loaders import load_splits
from utils.fingerprint import data_changes, split_record
from utils.engine import distributed
from utils.engine.distributed import log
from utils.engine.evaluate import PER_IMAGE_FILE, read_per_image
from utils.errors import Interrupted, UsageError
from utils.files import write_atomic, write_json
from utils.labels import scored_classes
from utils.metrics import BUCKETS
from utils.network import build_network, check_sizes
from utils.reporting import plots, stats
from utils.run_folder import Resume, Stage, run_status

RECORD = "comparison.json"


def variant_label(depth: int | None) -> str:
    return "baseline" if depth is None else f"AFMA depth {depth}"


def run_name(arch: str, depth: int | None, seed: int | None) -> str:
    """The run's folder: ARCH-VARIANT, and -seedS when the comparison was given --seeds."""
    return f"{arch}-{variant_name(depth)}" + ("" if seed is None else f"-seed{seed}")


def compare(archs: list[str], depths: list[int], out_dir: Path,
            make_run: Callable[[str, int | None, int | None, Path], RunConfig], train: Callable[..., dict],
            settings: dict, seeds: list[int] | None = None, allow_changed: bool = False, overwrite: bool = False) -> Path:
    """Train (or reuse, or resume) every run of the comparison and write comparison.md and one plot per arch.

    `make_run(arch, depth, seed, run_dir)` gives a run's checked config (seed None: the --seed one); `train(config,
    resume=None)` trains a run (utils.apps.train.train, given by main.py: an app imports no other app); `seeds`
    (None: just that one) are the same for every model, so the runs pair seed by seed; `settings` and the data's
    fingerprint identify the comparison: a folder holding another comparison's record is refused, naming the first
    difference; one of other data is trained anew with `overwrite` (--overwrite). `allow_changed`: resume runs on
    changed data or another number of processes (--allow-changed-run). Every check, the data's included, passes
    before anything is written.
    """
    variants = [None, *depths]
    configs = {(arch, depth, seed): make_run(arch, depth, seed, out_dir / run_name(arch, depth, seed))
               for arch in archs for depth in variants for seed in (seeds or [None])}  # all checked before the first
    first = next(iter(configs.values()))
    splits = load_splits(first, ("train", "val", "test"))  # every file read once now, so a bad one is refused here
    for (arch, depth, seed), config in configs.items():
        if seed == (seeds or [None])[0]:  # the seeds share a model
            check_sizes(build_model(**config.model.to_dict()), splits, config)
    if first.encoder_weights:  # fetched now (then cached for every run), or refused before the folder is taken
        build_network(first)
    identity = settings | {"data": {split: split_record(data) for split, data in splits.items()}}
    claim_folder(out_dir, identity, [Path(config.output_dir) for config in configs.values()], overwrite)
    try:
        runs = {key: finish(config, train, allow_changed) for key, config in configs.items()}
    except Interrupted as stop:  # its line names one run; the whole comparison goes on from the same command
        raise Interrupted(f"{stop} (or run the same --compare command again: it keeps the finished runs and "
                          f"continues this one)", stop.exit_code) from None
    report = out_dir / "comparison.md"
    if distributed.is_main():
        dataset = dataset_class(first.dataset, first.model.dataset_params)
        results = {(arch, depth): [runs[arch, depth, seed]["test"] for seed in (seeds or [None])]
                   for arch in archs for depth in variants}
        paired = {(arch, depth): paired_difference([Path(configs[arch, None, seed].output_dir) for seed in (seeds or [None])],
                                                   [Path(configs[arch, depth, seed].output_dir) for seed in (seeds or [None])])
                  for arch in archs for depth in depths}
        for arch in archs:
            plots.plot_comparison({variant_label(d): mean_result(results[arch, d]) for d in variants},
                                  list(first.classes), out_dir / f"comparison_{arch}.png",
                                  small_classes=dataset.small_classes,
                                  differences={variant_label(d): paired[arch, d] for d in depths})
        markdown = comparison_markdown(results, paired, archs, variants, first, seeds or [first.seed])
        write_atomic(report, markdown)
        log("\n" + markdown + f"\n\nwrote {report}")
    return report


def paired_difference(baseline_runs: list[Path], afma_runs: list[Path]) -> dict | None:
    """The paired bootstrap of AFMA - baseline over the runs' test images and seeds; None when a run has no
    per-image confusion matrices (finished before runs kept them)."""
    if not all((run / PER_IMAGE_FILE).is_file() for run in [*baseline_runs, *afma_runs]):
        return None
    return stats.paired_bootstrap([read_per_image(run) for run in baseline_runs],
                                  [read_per_image(run) for run in afma_runs])


def mean_result(results: list[dict]) -> dict:
    """The mean over seeds of mIoU and of each class's IoU, for the plot."""
    names = results[0]["per_class_iou"]
    return {"miou": stats.mean_std([r["miou"] for r in results])[0],
            "per_class_iou": {n: stats.mean_std([r["per_class_iou"][n] for r in results])[0] for n in names}}


def claim_folder(out_dir: Path, identity: dict, run_dirs: list[Path], overwrite: bool = False) -> None:
    """Start the comparison's folder, or take up the same comparison again; refuse anything else. A comparison of
    the same settings on other data is trained anew with `overwrite`: its runs and report are deleted first."""
    record = out_dir / RECORD
    problem = None
    if distributed.is_main():
        if record.is_file():
            problem = other_comparison(out_dir, json.loads(record.read_text()), identity, overwrite)
            if problem is None and overwrite:
                start_again(out_dir, run_dirs)
                write_json(record, identity)
        elif out_dir.exists() and any(out_dir.iterdir()):
            problem = f"--output-dir {out_dir} is not empty and holds no comparison: choose a new folder"
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(record, identity)
    problem = distributed.broadcast_object(problem)
    if problem:
        raise UsageError(problem)


def other_comparison(out_dir: Path, saved: dict, identity: dict, overwrite: bool) -> str | None:
    """Why the comparison recorded in `out_dir` is not this one (None: it is, or --overwrite retrains it here)."""
    changed = [key for key in sorted(set(saved) | set(identity)) if key != "data" and saved.get(key) != identity.get(key)]
    if changed:
        key = changed[0]
        return (f"--output-dir {out_dir} holds another comparison ({key}: {saved.get(key)!r} there, "
                f"{identity.get(key)!r} now): choose a new folder, or repeat that comparison's command")
    changes = data_changes(saved["data"], identity["data"]) if "data" in saved else []  # older records: unknown
    if overwrite:
        log(f"{out_dir}: --overwrite: training every run of the comparison anew"
            + (f" ({changes[0]})" if changes else ""))
        return None
    if changes:
        return (f"--output-dir {out_dir} holds this comparison trained on other data ({changes[0]}): choose a new "
                f"folder, or pass --overwrite to train its runs anew on this data")
    log(f"{out_dir}: taking up the comparison again (finished runs are kept" + (
        ")" if "data" in saved else "; its record predates data fingerprints, so its data is not checked)"))
    return None


def start_again(out_dir: Path, run_dirs: list[Path]) -> None:
    """Delete the comparison's runs and report (nothing else in the folder), so that every run trains anew."""
    for run_dir in run_dirs:
        if run_dir.is_dir():
            shutil.rmtree(run_dir)
    for report in [out_dir / "comparison.md", *out_dir.glob("comparison_*.png")]:
        report.unlink(missing_ok=True)


def finish(config: RunConfig, train: Callable[..., dict], allow_changed: bool = False) -> dict:
    """A finished run's metrics, or the run trained by `train` (resumed where it has a last.pt)."""
    run_dir = Path(config.output_dir)
    status = run_status(run_dir)
    if status.last and status.epoch > config.epochs:  # every model of the table trains the same number of epochs
        raise UsageError(f"{run_dir} has trained {status.epoch} epochs, more than --epochs {config.epochs}: repeat "
                         f"the comparison with --epochs {status.epoch} or more, or choose a new --output-dir")
    stage = status.stage(config.epochs)
    if stage is Stage.FINISHED:
        log(f"{run_dir}: finished earlier, kept")
        return json.loads((run_dir / "metrics.json").read_text())
    if status.last:  # interrupted, or trained on to more epochs
        return train(config, Resume(run_dir, status.last, allow_changed))
    if stage is Stage.FOREIGN:
        raise UsageError(f"{run_dir} is neither a finished run nor one to resume: move it away and run again")
    return train(config)


# The reported scores, in column order: (column, its value in a split of metrics.json, the paired bootstrap's key or
# None where only the difference of the means is reported). The per-class IoUs come first, one column per class.
SCORES = (
    ("mIoU", lambda r: r["miou"], "miou"),
    ("mIoU (void ignored)", lambda r: r.get("void_ignored", {}).get("miou"), "void_ignored_miou"),  # None: older runs
    ("global IoU", lambda r: r["global_iou"], None),
    ("mean accuracy", lambda r: r["accuracy"], None),
    *((f"found {bucket}", lambda r, b=bucket: r["small_objects"]["mean_recall50"][b], None) for bucket in BUCKETS),
    ("small-object IoU", lambda r: r["small_objects"]["mean_small_iou"], None),
)
DIGITS = 4  # the decimals every score and difference is printed with


def comparison_markdown(results: dict, paired: dict, archs, variants, config: RunConfig, seeds: list[int]) -> str:
    """Per architecture, one row per model (baseline first), per-class IoU, the means, the small-object scores,
    each the mean +- standard deviation over the seeds when there are several; below each AFMA row, its
    difference from the baseline: for the class IoUs and both mIoUs the paired bootstrap difference and its
    95 % interval, "*" where the printed interval excludes 0; for the rest the difference of the means. Every
    score is the authors' protocol but the column "mIoU (void ignored)" (the Cityscapes/SegNet protocol,
    utils.metrics.void_ignored_scores)."""
    dataset = dataset_class(config.dataset, config.model.dataset_params)
    names = scored_classes(config.classes)
    columns = list(row_values(None, names))
    depths = ", ".join(str(d) for d in variants if d is not None)
    boot = next((p for p in paired.values() if p), None)
    interval = (f"Differences: AFMA - baseline on the test images pooled over the seeds, with a "
                f"{boot['level']:.0%} paired bootstrap interval over the {boot['images']} test images "
                f"({boot['resamples']} resamples, numpy seed {boot['seed']}; the same resample for both models and "
                f"every seed); \"*\": the interval, as printed, excludes 0. Global IoU, mean accuracy and the "
                f"small-object scores: the difference of the means only." if boot else
                "Differences: of the means (these runs kept no per-image confusion matrices, so no interval).")
    lines = [f"# Baseline vs AFMA on {config.dataset} ({config.data_dir})", "",
             f"Encoder {config.model.encoder_name}, AFMA at depth {depths}, patch {config.model.patch_size}, "
             f"{config.epochs} epochs, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} (the same "
             f"for every model); test split, each model's best epoch by validation mIoU"
             + ("; mean +- standard deviation over the seeds. " if len(seeds) > 1 else ". ")
             + f"Every score but \"mIoU (void ignored)\" follows the authors' protocol (every pixel counts: a void "
             f"pixel predicted as a class is a false positive of it); \"mIoU (void ignored)\" leaves void pixels "
             f"out, as the Cityscapes/SegNet evaluation does (a pixel predicted void is still a miss); \"no labels\": "
             f"a test split without labelled pixels. "
             f"\"found\": objects found (object IoU >= 0.5) by size. Small classes: "
             f"{', '.join(dataset.small_classes) or 'none'}. {interval}", ""]
    for arch in archs:
        lines += [f"## {arch}", "", "| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        base = seed_means(results[arch, None], names)
        for depth in variants:
            runs = results[arch, depth]
            rows = [row_values(result, names) for result in runs]
            if all(result.get("no_labels") for result in runs):
                cells = ["no labels"] * len(columns)
            else:
                cells = [mean_std_cell([row[column] for row in rows]) for column in columns]
            lines.append(f"| {variant_label(depth)} | " + " | ".join(cells) + " |")
            if depth is not None:
                means = seed_means(runs, names)
                diffs = {column: difference(base[column], means[column]) for column in columns}
                if paired[arch, depth]:
                    diffs |= {column: interval_cell(entry) for column, entry in
                              paired_entries(paired[arch, depth], names).items()}
                lines.append("| difference | " + " | ".join(diffs[column] for column in columns) + " |")
        lines += ["", f"![{arch}](comparison_{arch}.png)", ""]
    return "\n".join(lines)


def paired_entries(paired: dict, names) -> dict:
    """The paired bootstrap's {"diff", "low", "high"} of each column that has one, by column name."""
    entries = {name: {key: paired["per_class_iou"][key][i] for key in ("diff", "low", "high")}
               for i, name in enumerate(names)}
    return entries | {column: paired[key] for column, _, key in SCORES if key}


def seed_means(results: list[dict], names) -> dict:
    rows = [row_values(result, names) for result in results]
    return {column: stats.mean_std([row[column] for row in rows])[0] for column in rows[0]}


def mean_std_cell(values) -> str:
    """One value as before; several seeds' values as mean +- std ("-" where undefined)."""
    if len(values) == 1:
        return cell(values[0])
    mean, std = stats.mean_std(values)
    if mean != mean:
        return "-"
    return f"{mean:.{DIGITS}f} ± {std:.{DIGITS}f}" if std == std else f"{mean:.{DIGITS}f}"


def interval_cell(entry: dict) -> str:
    """+0.0123 [-0.0050, +0.0301], with * where the interval excludes 0 as printed: an interval that rounds to
    [-0.0000, -0.0000] claims nothing the reader can see, so it gets no star."""
    if entry["diff"] != entry["diff"]:
        return "-"
    printed = {bound: float(f"{entry[bound]:.{DIGITS}f}") for bound in ("low", "high")}
    mark = " *" if stats.excludes_zero(printed) else ""
    return f"{entry['diff']:+.{DIGITS}f} [{entry['low']:+.{DIGITS}f}, {entry['high']:+.{DIGITS}f}]{mark}"


def row_values(result: dict | None, names) -> dict:
    """One model's row by column: per-class IoU, then the SCORES (the column names alone for `result` None)."""
    if result is None:
        return dict.fromkeys([*names, *(column for column, _, _ in SCORES)])
    return {**{name: result["per_class_iou"][name] for name in names},
            **{column: value(result) for column, value, _ in SCORES}}


def cell(value) -> str:
    return "-" if value is None or value != value else f"{value:.{DIGITS}f}"


def difference(before, after) -> str:
    if before is None or after is None or before != before or after != after:
        return "-"
    return f"{after - before:+.{DIGITS}f}"


def parse_archs(value: str) -> list[str]:
    archs = list(ARCHITECTURES) if value == "all" else [value]
    if any(arch not in ARCHITECTURES for arch in archs):
        raise UsageError(f"--compare {value!r} is not valid: choose one of {', '.join(ARCHITECTURES)}, or all")
    return archs
