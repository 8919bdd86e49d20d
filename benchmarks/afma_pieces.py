"""AFMA's §4.2 and §4.7-§4.9 pieces against their plain PyTorch forms, each on the same input, with the results compared.

    python -m benchmarks.afma_pieces                  # CPU, 640x960, 12 classes, patch 10 (about a minute)
    python -m benchmarks.afma_pieces --scale 0.25 --repeats 3

Rows (no gradient, batch 1): the depth-1 non-zero count of random factors with float32 products / in the type
`support_dtype` picks for this CPU; the one-hot's argmax (`logits.argmax(1)` / `class_argmax`); the merged 9x9
convolution with its border correction from an NCHW / NHWC input; the depth-1 feature branch (64 channels at
half resolution: the 1x1 convolution then the scale / `pointwise_conv`); at depth 3, the image side and the
correction (fresh maps / `recycle`). Each time is the best of --repeats calls
after one warm-up, the two forms taken in turns; "equal" says whether their results agree bit for bit (the
layouts and the 1x1 product reorder float32 sums, so there the largest difference is shown instead).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import finish_table, provenance_lines
from models.afma import AFMA
from models.afma_kernels import (class_argmax, count_row_nonzeros, factored_attention, merged_conv_pair, modify_output,
                                 pointwise_conv, support_dtype)


def best_of(steps, repeats):
    for step in steps:
        step()
    times = [float("inf")] * len(steps)
    for _ in range(repeats):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            times[i] = min(times[i], time.perf_counter() - start)
    return times


def pieces(h, w, classes, patch_size):
    """(name, plain step, §4 step): each step returns the tensor the two forms must agree on."""
    torch.manual_seed(0)
    logits = torch.randn(1, classes, h, w)
    x = torch.randn(1, 3, h, w)
    afma1, afma3 = AFMA(64, classes, 1, patch_size), AFMA(128, classes, 3, patch_size)
    feature1, feature3 = torch.randn(1, 64, h // 2, w // 2), torch.randn(1, 128, h // 8, w // 8)
    image_maps = merged_conv_pair(x, *afma3.image_branch)
    area, grid = patch_size * patch_size, (h // patch_size) * (w // patch_size)
    image1 = torch.randn(1, classes, grid, area).relu_()  # the depth-1 factors: T ends in a ReLU
    feature1_t = torch.randn(1, classes, (h // 2 // patch_size) * (w // 2 // patch_size), area).relu_()
    fastest = str(support_dtype(x.device)).removeprefix("torch.")
    feature_maps = pointwise_conv(feature3, afma3.feature_branch, afma3.feature_scale)

    def image_side(recycle):
        maps = image_maps.clone(memory_format=torch.channels_last)  # recycle overwrites its maps
        attention = factored_attention(maps, feature_maps, afma3.transform, patch_size, recycle)
        return modify_output(logits, attention, attention.stride, patch_size)

    return [
        ("one-hot argmax (§4.7)", lambda: logits.argmax(1), lambda: class_argmax(logits)),
        ("merged 9x9 convolution, NCHW / NHWC input", lambda: merged_conv_pair(x, *afma3.image_branch),
         lambda: merged_conv_pair(x.contiguous(memory_format=torch.channels_last), *afma3.image_branch)),
        ("feature branch at depth 1, conv / product (§4.8)",
         lambda: afma1.feature_branch(feature1) * afma1.feature_scale,
         lambda: pointwise_conv(feature1, afma1.feature_branch, afma1.feature_scale)),
        (f"non-zero count at depth 1, float32 / {fastest} supports (§4.2)",
         lambda: count_row_nonzeros(image1, feature1_t, dtype=torch.float32),
         lambda: count_row_nonzeros(image1, feature1_t)),
        ("image side and correction, depth 3, fresh maps / recycled (§4.9)",
         lambda: image_side(False), lambda: image_side(True)),
    ]


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="scale 640x960 (rounded to multiples of 32)")
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--patch-size", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    h, w = (max(32, round(side * args.scale / 32) * 32) for side in (640, 960))
    lines = [f"{h}x{w}, {args.classes} classes, patch {args.patch_size}, cpu, no gradient, best of {args.repeats} "
             f"calls in turns", "", *provenance_lines("benchmarks.afma_pieces", argv), "",
             "| piece | plain ms | §4 ms | speed-up | equal |", "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with torch.no_grad():
        for name, plain, ours in pieces(h, w, args.classes, args.patch_size):
            t_plain, t_ours = best_of([plain, ours], args.repeats)
            a, b = plain().double(), ours().double()
            same = "yes" if torch.equal(a, b) else f"max diff {(a - b).abs().max().item():.1e}"
            lines.append(f"| {name} | {t_plain * 1e3:.1f} | {t_ours * 1e3:.1f} | {t_plain / t_ours:.2f}x | {same} |")
            print(lines[-1], flush=True)
    return finish_table(lines, args.out)


if __name__ == "__main__":
    main()
