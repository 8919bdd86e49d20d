"""AFMA's cost in a training step: the project's implementation vs the plain SMP model and vs a literal one.

    python -m benchmarks.afma_speed                 # CPU, CamVid-sized work (batch 2, 12 classes, 480x640)
    python -m benchmarks.afma_speed --device cuda   # channels_last and TF32 on CUDA, as main.py runs
    python -m benchmarks.afma_speed --device cuda --out benchmarks/results/gpu/afma_speed.md

Run it from the repository root. Side by side in one run: a full training step (forward, loss, backward) of
the plain SMP UNet-ResNet34 with its NLL loss, and for each attention depth the same step of UNet-ResNet34
with AFMA and the AFMA loss, and that step computed by the literal per-class transcription of the method
(models/reference.py: literal_afma_forward, literal_loss). The input is what the model sees in main.py: a uint8
batch through utils.data.transforms.Normalizer once (channels_last float on CUDA, NCHW on the CPU); the models
are channels_last on CUDA unless --no-channels-last, with TF32 unless --no-tf32. All steps are timed in turns,
round after round, so that drift in the machine's speed falls on every variant alike.
Columns: (a) AFMA step / baseline step; (b) the literal implementation's extra time over the baseline
divided by the project's; (c) peak memory of the AFMA step / the baseline step's. Times are medians of
steps taken in turns. The table goes to stdout, and to --out when given.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import command_line, cpu_peak_memory, device_name, host_batch, prepare_model, synchronize
from models import build_model
from models.reference import literal_afma_forward, literal_loss
from utils.data.transforms import Normalizer
from utils.engine.device import setup_device
from utils.losses import AFMALoss

TARGETS = {"ratio": {1: 1.5, 2: 1.3, 3: 1.2, 4: 1.2}, "literal_over_ours": {1: 3.0, 2: 3.0}, "memory": 1.3}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--patch-size", type=int, default=10)
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--no-literal", action="store_true", help="skip the slow literal implementation")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                        help="channels_last models and input (default: on for cuda, as main.py)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: TF32 for float32 matrix products and convolutions (default on, as main.py)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory column (slow on the CPU)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if args.channels_last is None:
        args.channels_last = torch.device(args.device).type == "cuda"
    return args


def median_times(steps, device, repeats):
    """Median seconds of each step, measured in turns (A, B, C, A, B, C, ...) so that drift in the machine's
    speed (other load, frequency scaling, allocator warm-up) falls on every variant alike."""
    for step in steps:
        step()  # warm-up: allocator, cuDNN autotuning, lazy initialisation
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, record in zip(steps, times):
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def peak_memory(step, device):
    """Bytes allocated at the step's peak above what was live before it (CUDA stats, or the CPU profiler)."""
    step()
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return cpu_peak_memory(step)


def make_steps(args, device):
    """The training steps to compare, as closures: the baseline once, then AFMA and literal AFMA per depth.

    Every model starts from the same seed; the inputs are shared.
    """
    torch.manual_seed(0)
    images, labels = host_batch(args.batch_size, tuple(args.size), args.classes, device)
    normalizer = Normalizer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), device)
    normalizer.memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x, target = normalizer(images), labels.to(device).long()
    criterion = AFMALoss().to(device)

    def zero(model):
        for p in model.parameters():
            p.grad = None

    def baseline_step(model):
        zero(model)
        logits, _ = model(x)
        F.nll_loss(F.log_softmax(logits, 1), target).backward()

    def afma_step(model):
        zero(model)
        criterion(model(x), target).backward()

    def literal_step(model):
        zero(model)
        features = model.net.encoder(x)
        z = model.net.segmentation_head(model.net.decoder(features))
        corrected, dense, stride = literal_afma_forward(model.afma, x, features[model.att_depth], z, args.patch_size)
        literal_loss(corrected, dense, target, stride, args.patch_size).backward()

    def build(depth):
        torch.manual_seed(0)
        model = build_model("unet", args.encoder, None, args.classes, depth, args.patch_size)
        return prepare_model(model.train(), device, args.channels_last)

    steps = {"baseline": functools.partial(baseline_step, build(None))}
    for depth in args.depths:
        model = build(depth)
        steps[f"afma {depth}"] = functools.partial(afma_step, model)
        if not args.no_literal:
            steps[f"literal {depth}"] = functools.partial(literal_step, model)
    return steps


def main(argv=None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here; run on a GPU machine or use --device cpu")
    device = setup_device(args.device, seed=0, deterministic=False, tf32=args.tf32)
    h, w = args.size
    layout = "channels_last" if args.channels_last else "NCHW"
    tf32 = f", TF32 {'on' if args.tf32 else 'off'}" if device.type == "cuda" else ""
    lines = [f"UNet-{args.encoder}, batch {args.batch_size}, {args.classes} classes, {h}x{w}, patch {args.patch_size}, "
             f"device {device} ({device_name(device)}), float32{tf32}, {layout}, torch {torch.__version__}, "
             f"median of {args.repeats}",
             f"command: `{command_line('benchmarks.afma_speed', argv)}`", ""]
    header = ("| depth | baseline s | AFMA s | literal s | (a) AFMA / baseline | target | (b) literal extra / ours | "
              "target | (c) peak mem AFMA / baseline | target |")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    print("\n".join(lines), flush=True)
    steps = make_steps(args, device)
    times = dict(zip(steps, median_times(list(steps.values()), device, args.repeats)))
    base_memory = None if args.no_memory else peak_memory(steps["baseline"], device)
    for depth in args.depths:
        t_base, t_afma = times["baseline"], times[f"afma {depth}"]
        t_literal = times.get(f"literal {depth}", float("nan"))
        memory = "-" if args.no_memory else f"{peak_memory(steps[f'afma {depth}'], device) / base_memory:.2f}x"
        # With AFMA timed no slower than the baseline (noise at tiny sizes) the ratio means nothing: "-".
        gain = f"{(t_literal - t_base) / (t_afma - t_base):.1f}x" if t_afma > t_base else "-"
        row = (f"| {depth} | {t_base:.3f} | {t_afma:.3f} | {t_literal:.3f} | {t_afma / t_base:.2f}x | "
               f"<= {TARGETS['ratio'].get(depth, 1.2)}x | {gain} | "
               f"{'>= 3.0x' if depth in TARGETS['literal_over_ours'] else '-'} | {memory} | "
               f"<= {TARGETS['memory']}x |")
        lines.append(row)
        print(row, flush=True)
    table = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return table


if __name__ == "__main__":
    main()
