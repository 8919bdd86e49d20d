"""Peak memory of --predict's segmentation on a large image: whole-image limit and sliding windows.

    python -m benchmarks.predict_memory                       # a 4000x3000 image at --scale 1.0: auto, --tile 512
    python -m benchmarks.predict_memory --size 4000x3000 --tiles 0 512 1024 --out predict_memory.md

Each measurement runs in a fresh process (peak RSS, `ru_maxrss`, only ever grows): a UNet/ResNet-18 AFMA model of
CamVid's 12 classes, random weights, on a random RGB image, through `utils.apps.predict.segment_image` (what
--predict runs per input). "before" is the process's peak after the imports, the model and the image; "peak" its
peak after segmenting. `--tiles 0` is --predict's default: whole up to 2048x2048 network pixels, 1024 windows above.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MIB = 2**20


def measure(size: tuple[int, int], tile: int, overlap: int) -> dict:
    import numpy as np
    import torch

    from models import build_model
    from utils.apps.predict import segment_image

    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=12, att_depth=2, dataset="camvid", scale=1.0)
    image = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    labels = segment_image(model, image, tile=tile, tile_overlap=overlap)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert labels.shape == image.shape[:2]
    return dict(tile=tile, before=before, peak=peak, seconds=seconds)


def main(argv=None) -> str | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="4000x3000", help="image WxH")
    parser.add_argument("--tiles", type=int, nargs="+", default=[0, 512], help="--tile values (0: --predict's default)")
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = tuple(int(n) for n in args.size.lower().split("x"))
    if args.child is not None:
        print(json.dumps(measure(size, args.child, args.overlap)))
        return
    from benchmarks.common import ROOT, finish_table, provenance_lines

    lines = [f"{args.size} RGB image at --scale 1.0, UNet/ResNet-18 AFMA (depth 2), 12 classes, CPU, overlap "
             f"{args.overlap}", "", *provenance_lines("benchmarks.predict_memory", argv), "",
             "| --tile | peak RSS before (MiB) | peak RSS after (MiB) | seconds |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for tile in args.tiles:
        out = subprocess.run([sys.executable, "-m", "benchmarks.predict_memory", "--size", args.size, "--overlap",
                              str(args.overlap), "--child", str(tile)], capture_output=True, text=True, check=True,
                             cwd=ROOT)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        lines.append(f"| {tile or 'auto (1024)'} | {row['before'] / MIB:.0f} | {row['peak'] / MIB:.0f} | "
                     f"{row['seconds']:.1f} |")
        print(lines[-1], flush=True)
    return finish_table(lines, args.out)


if __name__ == "__main__":
    main()
