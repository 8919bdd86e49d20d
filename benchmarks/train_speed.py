"""Training step time, throughput and peak memory, AFMA vs the plain SMP baseline, for the eight architectures.

    python -m benchmarks.train_speed                                   # CPU: batch 2, 480x640, ResNet34, depth 3
    python -m benchmarks.train_speed --device cuda --compare-amp       # GPU: batch 4 and 16, fp32 and AMP
    python -m benchmarks.train_speed --device cuda --compare-amp --archs unet --depths 1
    python -m benchmarks.train_speed --device cuda --amp --archs unet fpn --compile
    python -m benchmarks.train_speed --size 64 96 --archs unet --steps 1 --patch-size 4 --no-memory  # smoke run

Run it from the repository root. One step is main.py's training step (utils.engine.train.train_step, what
train_one_epoch runs for each batch, without the loader): a uint8 image batch and uint8 labels on the host
(pinned on CUDA) go through utils.engine.normalizer.Normalizer (copy to the device, / 255, mean / std,
channels_last on CUDA) and .long(); forward under autocast (--amp), AFMALoss (the NLL alone for the baseline),
zero_grad, backward (scaled by a GradScaler when AMP runs in fp16) and an Adam step, on the engine main.py sets up
(utils.engine.setup.prepare): channels_last on CUDA (--no-channels-last to compare), TF32 for float32 on CUDA unless
--no-tf32, cudnn.benchmark on (utils.engine.device.setup_device), torch.compile with --compile. The baseline and
AFMA of one architecture start from the same weights and see the same batch.

ms/step = time of --steps consecutive steps after --warmup untimed ones, synchronised before and after, / steps;
images/s = batch / (ms/step). Peak memory: torch.cuda.max_memory_allocated over the timed steps on CUDA
(weights and optimizer state included); on CPU, the profiler's peak of the memory allocated during one fp32
step (--no-memory skips it). The markdown table goes to --out (default
benchmarks/results/train_speed_<device>.md) and to stdout.

GPU targets (480x640, channels_last, all 8 architectures, batch 4 and 16, fp32 and AMP):
  AFMA / baseline step time <= 1.2x at depth 3 and <= 1.35x at depth 1;
  AMP images/s >= fp32's at batch 4 (never slower), and >= 1.4x fp32's at batch 16 for UNet.
"""
from __future__ import annotations

import argparse
import functools
import gc
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import MIB, cpu_peak_memory, host_batch, provenance_lines, seconds_per_step, synchronize
from models import ARCHITECTURES, build_model
from models.architectures import PAPER_ARCHITECTURES
from utils.engine.device import autocast_dtype, setup_device
from utils.engine.setup import prepare
from utils.engine.train import train_step
from utils.losses import PAPER_LOSS_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
# AFMA / baseline step time, per attention depth.
RATIO_TARGETS = {3: 1.2, 1: 1.35}
# AMP images/s / fp32 images/s, per batch size: (minimum, the architectures it applies to; None: all).
AMP_TARGETS = {4: (1.0, None), 16: (1.4, ("unet",))}


@dataclass
class Result:
    step_ms: float
    peak_mib: float | None

    def images_per_s(self, batch: int) -> float:
        return 1000 * batch / self.step_ms


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", help="time with autocast only: bf16 where supported, else "
                        "fp16 + GradScaler")
    parser.add_argument("--compare-amp", action="store_true", help="time float32 and AMP in one run")
    parser.add_argument("--archs", nargs="+", default=list(PAPER_ARCHITECTURES),
                        choices=list(ARCHITECTURES))
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--depths", "--depth", dest="depths", type=int, nargs="+", default=[3],
                        help="AFMA attention depths (the baseline is timed once for all)")
    parser.add_argument("--patch-size", type=int, default=10)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--batch-sizes", "--batch-size", dest="batch_sizes", type=int, nargs="+",
                        help="default 4 16 on cuda, 2 on cpu")
    parser.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--steps", type=int, help="timed steps (default 10 on cuda, 2 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3 on cuda, 1 on cpu; at least 2 "
                        "with --compile)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                        help="channels_last model and input (default: on for cuda, as main.py)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: TF32 for float32 matrix products and convolutions (default on, as main.py)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compiled during warm-up)")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) CPU peak-memory measurement")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/train_speed_<device>.md")
    args = parser.parse_args(argv)
    cuda = torch.device(args.device).type == "cuda"
    defaults = {"batch_sizes": ([4, 16], [2]), "steps": (10, 2), "warmup": (3, 1), "channels_last": (True, False)}
    for name, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, on_cuda if cuda else on_cpu)
    if args.compile:
        args.warmup = max(args.warmup, 2)
    if args.steps < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        parser.error("--steps and --batch-sizes must be at least 1, --warmup at least 0")
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / f"train_speed_{torch.device(args.device).type}.md"
    return args


def precisions(args, device) -> list[torch.dtype | None]:
    """None stands for float32 (TF32 on CUDA when --tf32)."""
    amp = autocast_dtype(device, True)
    if args.compare_amp:
        return [None, amp]
    return [amp] if args.amp else [None]


def precision_name(dtype) -> str:
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def measure(args, arch, depth, init, batch, device, dtype, cpu_memory=True) -> Result:
    """Time one variant (depth None: the baseline; dtype None: fp32) from the shared initial weights `init`."""
    torch.manual_seed(0)
    model = build_model(arch, args.encoder, None, args.classes, depth, args.patch_size)
    model.net.load_state_dict(init)
    model.train()
    # dtype: precisions(); the loss of the paper's weights (the time does not depend on them)
    engine = prepare(model, device, amp=dtype is not None, channels_last=args.channels_last, **PAPER_LOSS_WEIGHTS)
    net = torch.compile(model) if args.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, labels = host_batch(batch, tuple(args.size), args.classes, device)
    step = functools.partial(train_step, net, engine, optimizer, images, labels)
    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = seconds_per_step(step, device, args.steps, warmup=0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / MIB
    else:
        peak = cpu_peak_memory(step) / MIB if cpu_memory and not args.no_memory else None
    return Result(1000 * seconds, peak)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_sizes(args) -> None:
    """Fail fast, before any timing, when an architecture cannot take --size (built on the meta device: free)."""
    for arch in args.archs:
        for depth in args.depths:
            try:
                with torch.device("meta"):
                    model = build_model(arch, args.encoder, None, args.classes, depth, args.patch_size)
                model.check_input_size(*args.size)
            except ValueError as error:
                h, w = args.size
                sys.exit(f"--size {h} {w} with {arch} (depth {depth}, patch {args.patch_size}): {error}")


def ratio_verdict(depth, ratio) -> tuple[str, bool | None]:
    target = RATIO_TARGETS.get(depth)
    if target is None:
        return "-", None
    ok = ratio <= target
    return f"<= {target}x: {'met' if ok else 'MISSED'}", ok


def amp_verdict(arch, batch, speedup) -> tuple[str, bool | None]:
    minimum, archs = AMP_TARGETS.get(batch, (None, None))
    if minimum is None or (archs is not None and arch not in archs):
        return "-", None
    ok = speedup >= minimum
    return f">= {minimum}x: {'met' if ok else 'MISSED'}", ok


def report(args, device, rows, argv) -> str:
    """rows: {(arch, batch, dtype): {None: baseline Result, depth: AFMA Result, ...}}."""
    h, w = args.size
    kinds = sorted({precision_name(dtype) for _, _, dtype in rows}, key=["fp32", "bf16", "fp16"].index)
    layout = "channels_last" if args.channels_last else "contiguous (NCHW)"
    tf32 = f" (TF32 {'on' if args.tf32 else 'off'})" if device.type == "cuda" else ""
    lines = [
        "# Training speed: AFMA vs baseline",
        "",
        *provenance_lines("benchmarks.train_speed", argv),
        f"- device {device}; precision {', '.join(kinds)}{tf32 if 'fp32' in kinds else ''}; {layout}"
        f"{'; torch.compile' if args.compile else ''}",
        f"- input {h}x{w}, uint8 -> Normalizer as in main.py; batch {', '.join(map(str, args.batch_sizes))}; "
        f"encoder {args.encoder}; AFMA depth {', '.join(map(str, args.depths))}; patch {args.patch_size}; "
        f"{args.classes} classes; {args.steps} timed steps after {args.warmup} warm-up",
        "",
        "## Step time",
        "",
    ]
    header = ["arch", "depth", "batch", "precision", "baseline ms/step", "AFMA ms/step", "AFMA / baseline",
              "target", "baseline img/s", "AFMA img/s", "baseline peak MiB", "AFMA peak MiB"]
    lines += table_head(header)
    mib = lambda value: "-" if value is None else f"{value:.0f}"  # noqa: E731
    ratio_checks = []
    for (arch, batch, dtype), results in rows.items():
        base = results[None]
        for depth in args.depths:
            afma = results[depth]
            ratio = afma.step_ms / base.step_ms
            verdict, ok = ratio_verdict(depth, ratio)
            if ok is not None:
                ratio_checks.append((ok, f"{arch} depth {depth} batch {batch} {precision_name(dtype)} ({ratio:.2f}x)"))
            lines.append(table_row([arch, depth, batch, precision_name(dtype), f"{base.step_ms:.1f}",
                                    f"{afma.step_ms:.1f}", f"{ratio:.2f}x", verdict,
                                    f"{base.images_per_s(batch):.2f}", f"{afma.images_per_s(batch):.2f}",
                                    mib(base.peak_mib), mib(afma.peak_mib)]))
    amp_checks = []
    if args.compare_amp:
        amp = autocast_dtype(device, True)
        lines += ["", f"## AMP ({precision_name(amp)} autocast) vs fp32: images/s ratio", ""]
        lines += table_head(["arch", "depth", "batch", "baseline AMP / fp32", "AFMA AMP / fp32", "target (AFMA)"])
        for (arch, batch, dtype), results in rows.items():
            if dtype is not None:
                continue
            low = rows[(arch, batch, amp)]
            base_speedup = results[None].step_ms / low[None].step_ms
            for depth in args.depths:
                speedup = results[depth].step_ms / low[depth].step_ms
                verdict, ok = amp_verdict(arch, batch, speedup)
                if ok is not None:
                    amp_checks.append((ok, f"{arch} depth {depth} batch {batch} ({speedup:.2f}x)"))
                lines.append(table_row([arch, depth, batch, f"{base_speedup:.2f}x", f"{speedup:.2f}x", verdict]))
    lines += ["", "## Targets", ""]
    if device.type != "cuda":
        lines.append("(The targets are for CUDA at 480x640; on the CPU they are shown for reference only.)")
        lines.append("")
    ratio_rule = " and ".join(f"<= {t}x at depth {d}" for d, t in RATIO_TARGETS.items())
    lines.append(f"- AFMA / baseline step time {ratio_rule}: " + summary(ratio_checks, "no row at those depths"))
    amp_rule = ("AMP images/s >= fp32's at batch 4 (every architecture), >= 1.4x at batch 16 (UNet), AFMA model: ")
    lines.append("- " + amp_rule + (summary(amp_checks, "no row at batch 4 or 16") if args.compare_amp
                                     else "not checked (run with --compare-amp)"))
    return "\n".join(lines) + "\n"


def summary(checks, none) -> str:
    if not checks:
        return none
    missed = [name for ok, name in checks if not ok]
    met = f"met in {len(checks) - len(missed)} of {len(checks)}"
    return met + (f"; missed by {', '.join(missed)}" if missed else "")


def table_head(header) -> list[str]:
    return [table_row(header), "|" + "---|" * len(header)]


def table_row(cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def main(argv=None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here; run on a GPU machine or use --device cpu")
    check_sizes(args)
    device = setup_device(args.device, seed=0, deterministic=False, tf32=args.tf32)
    rows = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for done, arch in enumerate(args.archs, start=1):
        torch.manual_seed(0)
        init = build_model(arch, args.encoder, None, args.classes, None).net.state_dict()
        for batch in args.batch_sizes:
            for dtype in precisions(args, device):
                results = {depth: None for depth in [None, *args.depths]}
                for depth in results:
                    results[depth] = measure(args, arch, depth, init, batch, device, dtype, cpu_memory=dtype is None)
                    free_memory(device)
                rows[(arch, batch, dtype)] = results
                afma = ", ".join(f"AFMA depth {d} {results[d].step_ms:.1f}" for d in args.depths)
                print(f"{arch} batch {batch} {precision_name(dtype)}: ms/step baseline {results[None].step_ms:.1f}, "
                      f"{afma}", file=sys.stderr, flush=True)
        del init
        table = report(args, device, rows, argv)
        if done < len(args.archs):  # what is done so far survives an interrupted run
            args.out.write_text(f"(partial: {done} of {len(args.archs)} architectures)\n\n" + table)
    args.out.write_text(table)
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
