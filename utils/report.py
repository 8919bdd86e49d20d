"""--compare: the paired baseline-vs-AFMA experiment (same seed, data and settings) and its report."""
from __future__ import annotations

import copy
from pathlib import Path

from models import ARCHITECTURES

from . import distributed, plots
from .datasets import DATASETS


def compare(args, make_config, train) -> Path:
    """Train the plain SMP model and its AFMA version for one architecture (or "all") and write the report."""
    archs = list(ARCHITECTURES) if args.compare == "all" else [args.compare]
    if any(arch not in ARCHITECTURES for arch in archs):
        raise ValueError(f"--compare {args.compare!r} is not valid: choose one of {', '.join(ARCHITECTURES)} or all")
    if str(args.att_depth).lower() in ("off", "none"):
        raise ValueError("--compare needs an attention depth for the AFMA side: --att-depth 1..5, not off")
    out_dir = Path(args.output_dir or f"runs/compare-{args.dataset}-{args.encoder}-afma{args.att_depth}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"--output-dir {out_dir} is not empty: choose a new folder for the comparison")
    configs = {}
    for arch in archs:  # check every setting of every run before the first one starts
        for variant, depth in (("baseline", "off"), ("afma", args.att_depth)):
            run_args = copy.copy(args)
            run_args.arch, run_args.att_depth, run_args.output_dir = arch, depth, str(out_dir / f"{arch}-{variant}")
            configs[arch, variant] = make_config(run_args)
    results = {key: train(config) for key, config in configs.items()}
    report = out_dir / "comparison.md"
    if not distributed.is_main():
        return report
    dataset = DATASETS[args.dataset]
    for arch in archs:
        plots.plot_comparison(results[arch, "baseline"]["test"], results[arch, "afma"]["test"], list(dataset.classes),
                              out_dir / f"comparison_{arch}.png", small_classes=dataset.small_classes)
    report.write_text(comparison_markdown(results, archs, dataset, args))
    print(f"\nwrote {report}")
    return report


def comparison_markdown(results: dict, archs, dataset, args) -> str:
    names = list(dataset.classes)[:-1]
    lines = [f"# Baseline vs AFMA on {args.dataset} ({args.data_dir})", "",
             f"Encoder {args.encoder}, AFMA at depth {args.att_depth}, patch {args.patch_size}, {args.epochs} epochs, "
             f"seed {args.seed}; test split, best epoch by validation mIoU. Small classes: "
             f"{', '.join(dataset.small_classes) or 'none'}.", ""]
    for arch in archs:
        base, afma = results[arch, "baseline"]["test"], results[arch, "afma"]["test"]
        lines += [f"## {arch}", "", "| | baseline | AFMA | difference |", "|---|---|---|---|"]
        rows = [(name, base["per_class_iou"][name], afma["per_class_iou"][name]) for name in names]
        rows += [("**mIoU**", base["miou"], afma["miou"]), ("global IoU", base["global_iou"], afma["global_iou"]),
                 ("mean accuracy", base["accuracy"], afma["accuracy"])]
        small_b, small_a = base["small_objects"], afma["small_objects"]
        rows += [(f"objects found (IoU >= 0.5), {bucket}", small_b["mean_recall50"][bucket],
                  small_a["mean_recall50"][bucket]) for bucket in ("small", "medium", "large")]
        rows += [("IoU over small objects' pixels", small_b["mean_small_iou"], small_a["mean_small_iou"])]
        lines += [f"| {label} | {cell(b)} | {cell(a)} | {difference(b, a)} |" for label, b, a in rows]
        lines += ["", f"![{arch}](comparison_{arch}.png)", ""]
    return "\n".join(lines)


def cell(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def difference(before, after) -> str:
    if before is None or after is None or before != before or after != after:
        return "-"
    return f"{after - before:+.4f}"
