"""AFMA's cost against its arithmetic: measured time ratio beside FLOP ratio, AFMA vs the plain SMP model.

    python -m benchmarks.afma_speed                   # CPU: UNet-ResNet34 depths 1-3 and DeepLabV3 depth 3
    python -m benchmarks.afma_speed --device cuda     # channels_last and TF32 on CUDA, as main.py runs
    python -m benchmarks.afma_speed --device cuda --amp --infer-batch 4 --train-batch 16
    python -m benchmarks.afma_speed --scale 0.1 --repeats 1 --encoder resnet18 --patch-size 4   # seconds

Run it from the repository root. Two kinds of rows, each AFMA model against the plain SMP model of the same
architecture and encoder, all from the same seed on the same input:
  inference: eval mode, no gradient, the forward alone (default batch 1, 640x960);
  train: a training step, forward, the loss main.py uses (AFMALoss; NLL alone for the baseline) and backward
         (default batch 2, 480x640).
All variants of one kind are timed in turns, round after round, so that drift in the machine's speed falls
on every variant alike; a time is the best of --repeats rounds after one warm-up, and the time ratio (the
verdict) is the ratio of the two best times. Beside it, "per round" gives the median and the range of the
ratios taken within each round: on a machine shared with others, its spread shows how far one run can be
trusted. The FLOPs of one step of
each variant are counted with torch.utils.flop_counter.FlopCounterMode in the same run: the FLOP ratio is the
floor a time ratio can reach when AFMA runs at the baseline's own rate. The table goes to stdout, and to
--out when given.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import finish_table, prepare_model, provenance_lines, synchronize
from models import build_model
from utils.engine.device import setup_device
from utils.losses import PAPER_LOSS_WEIGHTS, AFMALoss

# (kind, architecture, depth) -> the largest AFMA / baseline time ratio the project aims for.
TARGETS = {
    ("inference", "unet", 1): 1.2, ("inference", "unet", 2): 1.15, ("inference", "unet", 3): 1.15,
    ("inference", "deeplabv3", 3): 1.15,
    ("train", "unet", 1): 1.2, ("train", "unet", 2): 1.15,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--patch-size", type=int, default=10)
    parser.add_argument("--infer-batch", type=int, default=1)
    parser.add_argument("--infer-size", type=int, nargs=2, default=[640, 960], metavar=("H", "W"))
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--train-size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="scale both sizes (rounded to multiples of 32), e.g. 0.1 for a quick check")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up); best is kept")
    parser.add_argument("--kinds", nargs="+", choices=["inference", "train"], default=["inference", "train"])
    parser.add_argument("--amp", action="store_true", help="CUDA: autocast to float16, as main.py --amp")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                        help="channels_last models and input (default: on for cuda, as main.py)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: TF32 for float32 matrix products and convolutions (default on, as main.py)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if args.channels_last is None:
        args.channels_last = torch.device(args.device).type == "cuda"
    if args.repeats < 1 or args.scale <= 0:
        parser.error("--repeats must be >= 1 and --scale > 0")
    for name in ("infer_size", "train_size"):
        setattr(args, name, [max(32, round(side * args.scale / 32) * 32) for side in getattr(args, name)])
    return args


def round_times(steps, device, repeats):
    """Seconds of each step in each of `repeats` rounds taken in turns (A, B, C, A, B, C, ...): [round][step]."""
    for step in steps:
        step()  # warm-up: allocator, cuDNN autotuning, lazy initialisation
    rounds = []
    for _ in range(repeats):
        times = []
        for step in steps:
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times.append(time.perf_counter() - start)
        rounds.append(times)
    return rounds


def paired_ratios(rounds, afma: int, base: int) -> list[float]:
    """AFMA's time over the baseline's within each round: the two ran seconds apart, so a machine that is slower
    for a while weighs on both, where the best of each may come from different minutes."""
    return sorted(times[afma] / times[base] for times in rounds)


def int_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """2 m k n, as FlopCounterMode counts a float (m, k) @ (k, n) product."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def flops(step) -> int:
    """FLOPs of one step; the non-zero count's int8 products (§4.2) at full weight, as its float ones would be:
    FlopCounterMode itself counts no integer product."""
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten._int_mm: int_mm_flops}) as counter:
        step()
    return counter.get_total_flops()


def make_steps(args, device, kind):
    """{(arch, depth or None): step closure} for one kind; depth None is the plain SMP model."""
    rows = [(arch, depth) for k, arch, depth in TARGETS if k == kind]
    variants = [(arch, None) for arch in dict.fromkeys(arch for arch, _ in rows)] + rows
    batch, (h, w) = (args.infer_batch, args.infer_size) if kind == "inference" else (args.train_batch, args.train_size)
    generator = torch.Generator().manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, h, w, generator=generator).to(device).contiguous(memory_format=memory_format)
    target = torch.randint(0, args.classes, (batch, h, w), generator=generator).to(device)
    criterion = AFMALoss(**PAPER_LOSS_WEIGHTS).to(device)  # the paper's weights: the time does not depend on them
    autocast = dict(device_type=device.type, dtype=torch.float16, enabled=args.amp)

    def inference(model):
        with torch.no_grad(), torch.autocast(**autocast):
            model(x)

    def train(model):
        for p in model.parameters():
            p.grad = None
        with torch.autocast(**autocast):
            loss = criterion(model(x), target)
        loss.backward()

    steps = {}
    for arch, depth in variants:
        torch.manual_seed(0)
        model = build_model(arch, args.encoder, None, args.classes, depth, args.patch_size)
        model = prepare_model(model.train(kind == "train"), device, args.channels_last)
        steps[arch, depth] = functools.partial(inference if kind == "inference" else train, model)
    return steps, batch, (h, w)


def main(argv=None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here; run on a GPU machine or use --device cpu")
    if args.amp and device.type != "cuda":
        sys.exit("error: --amp is for CUDA (float16 autocast); the CPU runs float32")
    device = setup_device(args.device, seed=0, deterministic=False, tf32=args.tf32)
    layout = "channels_last" if args.channels_last else "NCHW"
    precision = "AMP float16" if args.amp else "float32" + (f", TF32 {'on' if args.tf32 else 'off'}" if device.type == "cuda" else "")
    lines = [f"encoder {args.encoder}, {args.classes} classes, patch {args.patch_size}, device {device}, {precision}, "
             f"{layout}, best of {args.repeats} rounds in turns", "", *provenance_lines("benchmarks.afma_speed", argv),
             ""]
    header = ("| kind | arch | depth | batch | size | baseline s | AFMA s | time ratio | per round: median (range) "
              "| FLOP ratio | target | met |")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    print("\n".join(lines), flush=True)
    for kind in args.kinds:
        steps, batch, (h, w) = make_steps(args, device, kind)
        rounds = round_times(list(steps.values()), device, args.repeats)
        column = {key: i for i, key in enumerate(steps)}
        times = {key: min(times[i] for times in rounds) for key, i in column.items()}
        counted = {key: flops(step) for key, step in steps.items()}
        for (row_kind, arch, depth), target in TARGETS.items():
            if row_kind != kind:
                continue
            t_base, t_afma = times[arch, None], times[arch, depth]
            ratio = t_afma / t_base
            paired = paired_ratios(rounds, column[arch, depth], column[arch, None])
            spread = f"{statistics.median(paired):.2f}x ({paired[0]:.2f}-{paired[-1]:.2f})"
            row = (f"| {kind} | {arch} | {depth} | {batch} | {h}x{w} | {t_base:.3f} | {t_afma:.3f} | {ratio:.2f}x | "
                   f"{spread} | "
                   f"{counted[arch, depth] / counted[arch, None]:.2f}x | <= {target}x | "
                   f"{'yes' if ratio <= target else 'no'} |")
            lines.append(row)
            print(row, flush=True)
    return finish_table(lines, args.out)


if __name__ == "__main__":
    main()
