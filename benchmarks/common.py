"""What the benchmarks measure the same way: main.py's training and evaluation steps on a fixed batch, their
timing with device synchronisation, inputs as main.py's loader delivers them, the CPU's peak step memory, and
the provenance every results table starts with (`provenance_lines`: date, machine, commit, command).

The steps are main.py's own, `utils.engine.train.train_step` (what `train_one_epoch` runs per batch) and
`utils.engine.evaluate.eval_step` (what `evaluate` runs per batch), on the engine of `utils.engine.setup.prepare`,
without the loader: each is timed repeated (functools.partial) on a uint8 (B, 3, H, W) image batch and a uint8 (B, H, W)
label batch on the host (pinned on CUDA, as the loader pins them), so that every step pays the host-to-device
copy, the normalisation and `.long()` as main.py's do.
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

MIB = 2**20
ROOT = Path(__file__).resolve().parents[1]  # the repository's top folder


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_batch(batch: int, size: tuple[int, int], classes: int, device: torch.device, seed: int = 0):
    """Random uint8 images and labels 0..classes-1 on the host, as a loader batch (pinned when it feeds CUDA)."""
    generator = torch.Generator().manual_seed(seed)
    h, w = size
    images = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, classes, (batch, h, w), dtype=torch.uint8, generator=generator)
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
    return images, labels


def seconds_per_step(step, device: torch.device, steps: int, warmup: int) -> float:
    """Mean seconds of `steps` consecutive steps after `warmup` untimed ones, the device synchronised before
    and after (not between steps: the host queues the next step while the device runs, as in training)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def median_step_seconds(step, device: torch.device, steps: int, warmup: int) -> float:
    """Median seconds of `steps` steps after `warmup` untimed ones, each synchronised before and after: robust
    to a few slow steps (another job on a shared machine, a garbage collection)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepare_model(model, device: torch.device, channels_last: bool, compile_model: bool = False):
    """The model on the device in the layout asked for (main.py's: channels_last on CUDA, utils.engine.setup);
    optionally torch.compile'd."""
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.compile(model) if compile_model else model


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def command_line(module: str, argv) -> str:
    """The command that reproduces this run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", "-m", module, *map(shlex.quote, map(str, argv))])


def provenance_lines(module: str, argv) -> list[str]:
    """The lines every results table starts with, so that it says itself when, on what machine, from which code
    and by which command it was measured (markdown list items)."""
    return [f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {machine()}",
            f"- commit: {commit()}",
            f"- command: `{command_line(module, argv)}`"]


def machine() -> str:
    """The CPU, its cores and torch's threads, the GPU where CUDA is, and the versions the timings depend on."""
    import segmentation_models_pytorch as smp

    gpus = ""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        gpus = f"; GPU {'' if count == 1 else f'{count} x '}{torch.cuda.get_device_name()}"
    return (f"{cpu_model()}, {cpu_cores()} cores, {torch.get_num_threads()} torch threads{gpus}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, SMP {smp.__version__}")


def commit(root: Path = ROOT) -> str:
    """HEAD's short hash of the checkout whose top folder is `root`, with "+ uncommitted changes" where a tracked
    file differs from it; "not a git checkout" where git, the checkout or its commit is missing (never an error:
    the table is written all the same)."""
    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=60).stdout

    try:
        top, head = git("rev-parse", "--show-toplevel", "--short", "HEAD").split()
        changed = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError, ValueError):
        return "not a git checkout"
    if Path(top).resolve() != Path(root).resolve():  # `root` is a plain folder inside another checkout
        return "not a git checkout"
    return head + (" + uncommitted changes" if changed else "")


def cpu_peak_memory(step) -> int:
    """Bytes live at the peak of one step, counting what the step allocates (the CPU profiler's timeline).

    The CPU allocator keeps no peak statistics; the profiler's memory timeline records every allocation.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        live += size if action == Action.CREATE else -size if action == Action.DESTROY else 0
        peak = max(peak, live)
    return peak


def finish_table(lines, out) -> str:
    """The table's text; also written to `out` (its folder made) when one is given."""
    table = "\n".join(lines) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
    return table
