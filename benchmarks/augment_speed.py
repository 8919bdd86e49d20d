"""Milliseconds per sample of each data set's training augmentation (utils/data/transforms.py), on the CPU.

One synthetic frame (960x720 unless --frame-size; seeded noise image, seeded class mask) goes through `build_transforms(cls, "train",
scale)` for N seeded samples (`set_random_seed(i)`, i = 0..N-1, as the loader seeds each sample), each timed
alone; the table gives the mean and the median per data set and scale. The same seeds draw the same
augmentations, so two versions of the code are timed on the same work.

`--baseline REV` times the augmentations of an earlier commit too (its utils/data/augment.py and warps.py, read
with `git show`, loaded beside the current ones; the pipelines are this commit's, each step given the
baseline's class of the same name), sample by sample alternately with the current code (each going first in turn), so
that a shared machine's load falls on both alike; each sample's outputs are compared and the run stops at the first that
differs.

`--albumentations REV` (where albumentations 2.x is importable: the project no longer needs it) times the
albumentations 2.x pipelines of REV's utils/data/transforms.py as well, alternately too (the project's pipelines
before it went to OpenCV with 1.0's laws: the same steps, other draws, so only the times compare).

    python -m benchmarks.augment_speed --samples 100 --baseline edb5381 --albumentations 1c23b9f \
        --out benchmarks/results/augment_speed_cpu.md
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import finish_table, provenance_lines
from utils.data.datasets import LiTS, Birds, CamVid, Cityscapes, SkinLesion
from utils.data.transforms import build_transforms

DATASETS = {"camvid": CamVid, "cityscapes": Cityscapes, "birds": Birds, "skinlesion": SkinLesion, "lits": LiTS}


def frame(size=(720, 960), classes=3, seed=0):
    """A seeded uint8 RGB frame with some structure (blurred noise) and a class mask of blobs."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (5, 5), 0)
    mask = (cv2.GaussianBlur(rng.random(size, dtype=np.float32), (31, 31), 0) * 1000).astype(np.int64) % classes
    return image, mask.astype(np.uint8)


def frame_size(text):
    """--frame-size HxW -> (h, w)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 1024x2048") from None
    if min(h, w) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive")
    return h, w


def baseline_module(rev):
    """utils/data/augment.py of commit `rev`, with its warps.py, as a module of its own."""
    def load(name, path, replace=()):
        source = subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout
        for old, new in replace:
            source = source.replace(old, new)
        module = types.ModuleType(name)
        module.__file__ = f"{rev}:{path}"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module

    load("_baseline_warps", "utils/data/warps.py")
    return load("_baseline_augment", "utils/data/augment.py",
                [("from utils.data.warps import", "from _baseline_warps import")])


def albumentations_transforms(rev):
    """REV's utils/data/transforms.py (albumentations 2.x pipelines) as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:utils/data/transforms.py"], check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType("_albumentations_transforms")
    module.__file__ = f"{rev}:utils/data/transforms.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def run_albumentations(pipeline, image, mask, seed):
    pipeline.set_random_seed(seed)
    start = time.perf_counter()
    pipeline(image=image, mask=mask)
    return time.perf_counter() - start


def as_baseline(step, module):
    """The same step (its settings) as an instance of `module`'s class of the same name."""
    twin = object.__new__(getattr(module, type(step).__name__))
    twin.__dict__.update(step.__dict__)
    if hasattr(step, "transforms"):
        twin.transforms = [as_baseline(t, module) for t in step.transforms]
    return twin


def run_pipeline(pipeline, image, mask, seed):
    """Seconds of one seeded sample, and its outputs."""
    pipeline.set_random_seed(seed)
    start = time.perf_counter()
    out = pipeline(image, mask)
    return time.perf_counter() - start, out


def time_pipeline(pipeline, image, mask, samples):
    """Seconds of each of `samples` seeded samples."""
    times = []
    for seed in range(samples):
        pipeline.set_random_seed(seed)
        start = time.perf_counter()
        pipeline(image, mask)
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100, help="seeded samples per data set and scale")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--frame-size", type=frame_size, default=(720, 960), metavar="HxW",
                        help="the input frame, height x width (Cityscapes' own: 1024x2048; default 720x960, CamVid's)")
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (a loader worker's: 1)")
    parser.add_argument("--label", default="", help="a name for the code measured, in the heading")
    parser.add_argument("--baseline", help="a commit whose augmentations are timed too, alternately")
    parser.add_argument("--albumentations", help="a commit whose albumentations 2.x pipelines are timed too")
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    image, mask = frame(args.frame_size)
    baseline = baseline_module(args.baseline) if args.baseline else None
    albu = albumentations_transforms(args.albumentations) if args.albumentations else None
    lines = [f"## {args.label or 'The training augmentations'}", "",
             *provenance_lines("benchmarks.augment_speed", argv),
             f"- cv2 {cv2.__version__} with {args.threads} thread(s), numpy {np.__version__}", "",
             f"ms per sample of a {args.frame_size[0]}x{args.frame_size[1]} (height x width) frame through `build_transforms(cls, \"train\", scale)`, "
             f"{args.samples} seeded samples"
             + (f", each also through {args.baseline}'s augmentations" if baseline else "") + ".", "",
             "| data set | scale | mean ms | median ms |" + (" baseline mean ms | baseline median ms | mean ratio |"
                                                              if baseline else ""),
             "|---|---|---|---|" + ("---|---|---|" if baseline else "")
             + ("---|---|---|" if albu else "")]
    if albu:
        import albumentations
        lines[-2] += f" albumentations {albumentations.__version__} mean ms | median ms | mean ratio |"
    for name in args.datasets:
        for scale in args.scales:
            pipeline = build_transforms(DATASETS[name], "train", scale)
            old = as_baseline(pipeline, baseline) if baseline else None
            albu_pipeline = albu.build_transforms(DATASETS[name], "train", scale) if albu else None
            time_pipeline(pipeline, image, mask, 3)  # warm-up
            times, old_times, albu_times = [], [], []
            for seed in range(args.samples):
                # the pipelines take turns at going first (the first finds the frame colder in the caches)
                order = ("new", "old", "albu") if seed % 2 == 0 else ("albu", "old", "new")
                for which in order:
                    if which == "new":
                        seconds, out = run_pipeline(pipeline, image, mask, seed)
                        times.append(seconds)
                    elif which == "old" and old is not None:
                        seconds, old_out = run_pipeline(old, image, mask, seed)
                        old_times.append(seconds)
                    elif which == "albu" and albu_pipeline is not None:
                        albu_times.append(run_albumentations(albu_pipeline, image, mask, seed))
                if old is not None:
                    for key in ("image", "mask"):
                        if not (out[key].shape == old_out[key].shape and bool((out[key] == old_out[key]).all())):
                            raise SystemExit(f"{name} scale {scale:g} seed {seed}: the {key} differs from "
                                             f"{args.baseline}'s")
            row = f"| {name} | {scale:g} | {1e3 * statistics.mean(times):.2f} | {1e3 * statistics.median(times):.2f} |"
            if old is not None:
                row += (f" {1e3 * statistics.mean(old_times):.2f} | {1e3 * statistics.median(old_times):.2f} | "
                        f"{statistics.mean(times) / statistics.mean(old_times):.2f} |")
            if albu_pipeline is not None:
                row += (f" {1e3 * statistics.mean(albu_times):.2f} | {1e3 * statistics.median(albu_times):.2f} | "
                        f"{statistics.mean(times) / statistics.mean(albu_times):.2f} |")
            lines.append(row)
            print(lines[-1], flush=True)
    if baseline:
        lines += ["", f"Every sample's image and mask equal to {args.baseline}'s (compared in the run); mean ratio: "
                      "this code's mean over the baseline's."]
    if albu:
        lines += ["", f"albumentations: {args.albumentations}'s albumentations pipelines (other draws of the same "
                      "steps); its mean ratio: this code's mean over its."]
    print(finish_table(lines, args.out))


if __name__ == "__main__":
    main()
