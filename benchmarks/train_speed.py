"""Training throughput and peak memory, AFMA vs the plain SMP baseline, for the eight architectures.

    python benchmarks/train_speed.py                                  # CPU: batch 2, 480x640, ResNet34, depth 3
    python benchmarks/train_speed.py --device cuda --compare-amp      # GPU: fp32 and AMP in one run
    python benchmarks/train_speed.py --device cuda --amp --archs unet fpn
    python benchmarks/train_speed.py --size 64 96 --archs unet --steps 1 --patch-size 4 --no-memory  # smoke run

One step is a full training step: zero_grad, forward (under autocast with --amp), AFMALoss (the NLL alone for
the baseline), backward (scaled when AMP runs in fp16) and an Adam step. The baseline and AFMA of one
architecture start from the same weights and see the same batch. images/s = batch * steps / time of the timed
steps (after --warmup untimed ones). Peak memory: torch.cuda.max_memory_allocated over the timed steps on CUDA
(weights and optimizer state included); on CPU, the profiler's peak of the memory allocated during one step.
The markdown table goes to --out (default benchmarks/results/train_speed_<device>.md) and to stdout.
GPU targets: AMP >= 1.8x the fp32 images/s; AFMA step time <= 1.2x the baseline's at depth 3.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import ARCHITECTURES, build_model  # noqa: E402
from benchmarks.common import cpu_peak_memory, synchronize  # noqa: E402
from utils.engine import autocast_dtype  # noqa: E402
from utils.losses import AFMALoss  # noqa: E402

TARGETS = {"amp_speedup": 1.8, "afma_ratio": 1.2, "depth": 3}
MIB = 2**20


@dataclass
class Result:
    images_per_s: float
    step_ms: float
    peak_mib: float | None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast: bf16 where supported, else fp16 + GradScaler")
    parser.add_argument("--compare-amp", action="store_true", help="time AFMA in fp32 and with AMP in one run")
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--depth", type=int, default=3, help="AFMA attention depth")
    parser.add_argument("--patch-size", type=int, default=10)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--batch-size", type=int, help="default 4 on cuda, 2 on cpu")
    parser.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--steps", type=int, help="timed steps (default 5 on cuda, 2 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2 on cuda, 1 on cpu)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="default on for cuda")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) CPU peak-memory measurement")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/train_speed_<device>.md")
    args = parser.parse_args(argv)
    cuda = torch.device(args.device).type == "cuda"
    defaults = {"batch_size": (4, 2), "steps": (5, 2), "warmup": (2, 1), "channels_last": (True, False)}
    for name, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, on_cuda if cuda else on_cpu)
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / f"train_speed_{torch.device(args.device).type}.md"
    return args


def measure(args, arch, depth, init, x, target, dtype, cpu_memory=True) -> Result:
    """Time one variant (depth None: the baseline; dtype None: fp32) from the shared initial weights `init`."""
    device = x.device
    torch.manual_seed(0)
    model = build_model(arch, args.encoder, None, args.classes, depth, args.patch_size)
    model.net.load_state_dict(init)
    model.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format).train()
    criterion = AFMALoss().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = criterion(model(x), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / MIB
    else:
        peak = cpu_peak_memory(step) / MIB if cpu_memory and not args.no_memory else None
    return Result(args.batch_size * args.steps / elapsed, 1000 * elapsed / args.steps, peak)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_sizes(args) -> None:
    """Fail fast, before any timing, when an architecture cannot take --size (built on the meta device: free)."""
    for arch in args.archs:
        with torch.device("meta"):
            model = build_model(arch, args.encoder, None, args.classes, args.depth, args.patch_size)
        try:
            model.check_input_size(*args.size)
        except ValueError as error:
            h, w = args.size
            sys.exit(f"--size {h} {w} with {arch} (depth {args.depth}, patch {args.patch_size}): {error}")


def report(args, device, rows) -> str:
    h, w = args.size
    compare = args.compare_amp
    amp = str(autocast_dtype(device, True)).removeprefix("torch.")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    dtype = ("float32; AMP column: " if compare else "") + (f"{amp} autocast" if compare or args.amp else "float32")
    lines = [
        "# Training speed: AFMA vs baseline",
        "",
        f"- device: {name}",
        f"- torch {torch.__version__}, dtype {dtype}{', channels_last' if args.channels_last else ''}",
        f"- size {h}x{w}, batch {args.batch_size}, encoder {args.encoder}, AFMA depth {args.depth}, "
        f"patch {args.patch_size}, {args.classes} classes, {args.steps} timed steps after {args.warmup} warm-up",
        f"- date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
    ]
    header = ["arch", "baseline img/s", "baseline ms/step", "AFMA img/s", "AFMA ms/step", "AFMA / baseline step time",
              "baseline peak MiB", "AFMA peak MiB"] + (["AFMA AMP img/s", "AMP speed-up"] if compare else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    mib = lambda value: "-" if value is None else f"{value:.0f}"  # noqa: E731
    for arch, (base, afma, afma_amp) in rows.items():
        cells = [arch, f"{base.images_per_s:.2f}", f"{base.step_ms:.1f}", f"{afma.images_per_s:.2f}",
                 f"{afma.step_ms:.1f}", f"{afma.step_ms / base.step_ms:.2f}x", mib(base.peak_mib), mib(afma.peak_mib)]
        if compare:
            cells += [f"{afma_amp.images_per_s:.2f}", f"{afma_amp.images_per_s / afma.images_per_s:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    if device.type == "cuda":
        lines += ["", targets_line(args, rows)]
    return "\n".join(lines) + "\n"


def targets_line(args, rows) -> str:
    def verdict(ok):
        met = [arch for arch in rows if ok(*rows[arch])]
        missed = [arch for arch in rows if arch not in met]
        return f"met by {', '.join(met) or 'none'}" + (f"; missed by {', '.join(missed)}" if missed else "")

    ratio = f"AFMA / baseline step time <= {TARGETS['afma_ratio']}x at depth {TARGETS['depth']}: "
    if args.depth == TARGETS["depth"]:
        ratio += verdict(lambda base, afma, _: afma.step_ms <= TARGETS["afma_ratio"] * base.step_ms)
    else:
        ratio += f"not checked (measured at depth {args.depth})"
    speedup = f"AMP >= {TARGETS['amp_speedup']}x fp32 img/s: "
    if args.compare_amp:
        speedup += verdict(lambda _, afma, amp: amp.images_per_s >= TARGETS["amp_speedup"] * afma.images_per_s)
    else:
        speedup += "not checked (run with --compare-amp)"
    return f"GPU targets: {ratio}. {speedup}."


def main(argv=None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here; run on a GPU machine or use --device cpu")
    check_sizes(args)
    main_dtype = autocast_dtype(device, True) if args.amp and not args.compare_amp else None
    torch.manual_seed(0)
    h, w = args.size
    x = torch.randn(args.batch_size, 3, h, w, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, args.classes, (args.batch_size, h, w), device=device)
    rows = {}
    for arch in args.archs:
        torch.manual_seed(0)
        init = build_model(arch, args.encoder, None, args.classes, None).net.state_dict()
        base = measure(args, arch, None, init, x, target, main_dtype)
        free_memory(device)
        afma = measure(args, arch, args.depth, init, x, target, main_dtype)
        free_memory(device)
        afma_amp = None
        if args.compare_amp:
            afma_amp = measure(args, arch, args.depth, init, x, target, autocast_dtype(device, True), cpu_memory=False)
            free_memory(device)
        rows[arch] = (base, afma, afma_amp)
        print(f"{arch}: baseline {base.images_per_s:.2f} img/s, AFMA {afma.images_per_s:.2f} img/s",
              file=sys.stderr, flush=True)
        del init
    table = report(args, device, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
