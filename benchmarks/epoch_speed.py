"""How much of an epoch of main.py is the model's compute: wall time per epoch against pure compute.

    python -m benchmarks.epoch_speed --device cuda --scale 1.0 --batch-size 4        # the GPU target below
    python -m benchmarks.epoch_speed --device cpu --scale 0.25 --train 8 --val 4 --test 2 --epochs 3 --encoder resnet18
    python -m benchmarks.epoch_speed --device cuda --scale 1.0 --batch-size 4 --amp --workers 8 --keep

Run it from the repository root. In one run:
1. A CamVid-format data set is written to a temporary folder: --train / --val / --test frames of --frame-size
   (960x720, CamVid's, by default), copies of the bundled synthetic sample's 18 frames (dataset/camvid;
   --source synthetic: a few freshly generated scenes of tools/make_sample.py instead), as PNGs.
2. main.py's real loop runs on it in-process (main.main with --data-dir and --output-dir in that folder, and the
   flags below passed through; any setting not given is main.py's default) for --epochs epochs.
3. On a fresh model of the same spec, batch size and input sizes, on the same device and settings (channels_last
   and TF32 on CUDA, autocast with --amp, torch.compile with --compile), the pure time of one training step
   (utils.engine.train.train_step on a fixed uint8 batch: Normalizer, forward, AFMALoss, backward, Adam) at the
   training crop and of one validation batch (utils.engine.evaluate.eval_step: forward, loss, argmax, confusion
   counts) at the evaluation crop, on the engine main.py sets up (utils.engine.setup.prepare), are measured: the
   median of --steps steps after --warmup, each synchronised before and after (robust to a few slow steps on a
   shared machine).

Per epoch: wall = history.csv's `seconds` (training and validation of that epoch, from the first batch
requested to the validation's last); compute = train images / batch x training step + val images / batch x
validation batch; efficiency = compute / wall, i.e. how busy the loop keeps the model (1 - efficiency is data
loading, host syncs, progress bars, start-up of each loader pass). cycle = from the line main.py prints after the
previous epoch's validation to the one after this epoch's (none for epoch 1), so it adds what happens between
epochs (checkpoint writes, history.csv, curves.png). Epoch 1 also pays for cuDNN autotuning and the
loader workers' start. On the CPU the compute dominates and the efficiency mostly shows per-epoch overhead.

GPU target (CUDA machine with >= 8 cores, default settings, UNet-ResNet34 AFMA, batch 4, --scale 1.0):
efficiency >= 0.85 from epoch 2. The markdown table goes to stdout and to --out (default
benchmarks/results/epoch_speed_<device>.md).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import main as main_py
from benchmarks.common import host_batch, median_step_seconds, provenance_lines
from models import build_model
from tools.make_sample import make_scene
from utils.config import SETTING, RunConfig, resolve_device
from utils.data.datasets import SPLITS
from utils.data.loaders import close_loaders, load_splits, make_loader
from utils.engine.device import autocast_dtype, setup_device
from utils.engine.evaluate import Tally, eval_step
from utils.engine.setup import prepare_run
from utils.engine.train import train_step
from utils.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "dataset" / "camvid"
TARGET = {"efficiency": 0.85, "from_epoch": 2}
SYNTHETIC_FRAMES = 6
# main.py flags passed through when given (default: main.py's own).
PASS_THROUGH = {"--arch": str, "--encoder": str, "--att-depth": str, "--patch-size": int, "--batch-size": int,
                "--scale": float, "--workers": str, "--save-every": float, "--lr": float, "--seed": int}
PASS_THROUGH_SWITCHES = ("--amp", "--tf32", "--compile")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--train", type=int, default=96, help="training frames")
    parser.add_argument("--val", type=int, default=24, help="validation frames")
    parser.add_argument("--test", type=int, default=6, help="test frames")
    parser.add_argument("--frame-size", type=int, nargs=2, default=[960, 720], metavar=("W", "H"),
                        help="the written frames (main.py reads CamVid frames of 960x720, or 480x360 at --scale "
                             "0.5 or less)")
    parser.add_argument("--source", choices=("sample", "synthetic"), default="sample",
                        help="copies of the bundled sample's frames, or generated ones")
    parser.add_argument("--epochs", type=int, default=4)
    through = parser.add_argument_group("main.py settings passed through (default: main.py's)")
    for flag, kind in PASS_THROUGH.items():
        through.add_argument(flag, type=kind)
    for flag in PASS_THROUGH_SWITCHES:
        through.add_argument(flag, action=argparse.BooleanOptionalAction)
    parser.add_argument("--steps", type=int, help="timed steps of each pure-compute measurement (default 10 on "
                        "cuda, 3 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps before them (default 3 on cuda, 1 on cpu; at least 2 "
                        "with --compile)")
    parser.add_argument("--loader-passes", type=int, default=3, help="timed passes of the training loader alone, "
                        "without the model (after one that starts its workers)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for this process (default: torch's)")
    parser.add_argument("--tmp-dir", type=Path, help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the data set and the run folder")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/epoch_speed_<device>.md")
    args = parser.parse_args(argv)
    if min(args.train, args.val, args.test, args.loader_passes) < 1 or args.epochs < 1:
        parser.error("--train, --val, --test, --epochs and --loader-passes must be at least 1")
    try:
        args.device = resolve_device(args.device)
    except UsageError as error:
        sys.exit(str(error))
    cuda = torch.device(args.device).type == "cuda"
    if args.steps is None:
        args.steps = 10 if cuda else 3
    if args.warmup is None:
        args.warmup = 3 if cuda else 1
    if args.compile:
        args.warmup = max(args.warmup, 2)
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / f"epoch_speed_{torch.device(args.device).type}.md"
    return args


# ------------------------------------------------------------------------------------------------ data
def encode_png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    assert ok
    return data.tobytes()


def resized_pngs(image: np.ndarray, label: np.ndarray, width: int, height: int) -> tuple[bytes, bytes]:
    """A BGR frame and its label as PNG bytes at width x height (area-averaged image, nearest label)."""
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return encode_png(image), encode_png(label)


def source_frames(source: str, width: int, height: int, seed: int = 0) -> tuple[list[tuple[bytes, bytes]], str]:
    """The frames the data set is tiled from, as (image PNG, label PNG) bytes, and a description of them."""
    pairs = [(image, SAMPLE / f"{split}annot" / image.name) for split in SPLITS
             for image in sorted((SAMPLE / split).glob("*.png")) if (SAMPLE / f"{split}annot" / image.name).is_file()]
    if source == "sample" and pairs:
        frames = []
        for image_path, label_path in pairs:
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if image.shape[:2] == (height, width):
                frames.append((image_path.read_bytes(), label_path.read_bytes()))
            else:
                frames.append(resized_pngs(image, cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED), width, height))
        return frames, f"copies of the {len(frames)} frames of the bundled sample ({SAMPLE.relative_to(ROOT)})"
    # The street scenes of tools/make_sample.py (the generator of the bundled sample), one seed per frame.
    frames = []
    for i in range(SYNTHETIC_FRAMES):
        image, label = make_scene(np.random.default_rng([seed, i]))
        frames.append(resized_pngs(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), label, width, height))
    missing = "" if source == "synthetic" else " (the bundled sample is missing)"
    return frames, f"copies of {len(frames)} generated street-like frames (tools/make_sample.py){missing}"


def make_dataset(root: Path, counts: dict, frame_size=(960, 720), source: str = "sample") -> str:
    """Write a CamVid-format data set ({split}/ and {split}annot/ PNGs) of counts[split] frames per split."""
    width, height = frame_size
    frames, description = source_frames(source, width, height)
    offset = 0
    for split, count in counts.items():
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = frames[(offset + i) % len(frames)]
            name = f"{split}_{i:05d}.png"
            (root / split / name).write_bytes(image)
            (root / f"{split}annot" / name).write_bytes(label)
        offset += count
    return description


# ------------------------------------------------------------------------------------------------ the run
class EpochClock(io.TextIOBase):
    """main.py's stdout during the run: passes everything through and records when each "epoch k/N: ..." line,
    which main.py prints after epoch k's validation, is written (so the loop itself is neither touched nor
    patched)."""

    LINE = re.compile(r"epoch \d+/\d+: ")

    def __init__(self, out):
        self.out, self.times = out, []

    def write(self, text: str) -> int:
        if self.LINE.match(text):
            self.times.append(time.perf_counter())
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def cycles(self) -> list[float | None]:
        """Per epoch, the seconds since the previous epoch's line (None for the first)."""
        return [None] + [b - a for a, b in zip(self.times, self.times[1:])]


def main_argv(args, data_dir: Path, run_dir: Path) -> list[str]:
    argv = ["--data-dir", str(data_dir), "--epochs", str(args.epochs), "--output-dir", str(run_dir),
            "--device", args.device]
    for flag in PASS_THROUGH:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    for flag in PASS_THROUGH_SWITCHES:
        value = getattr(args, flag[2:])
        if value is not None:
            argv.append(flag if value else "--no-" + flag[2:])
    return argv


def pure_compute(config: RunConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds of one training step at the training crop and of one validation batch at the evaluation crop."""
    device = setup_device(config.device, config.seed, config.deterministic, config.tf32)
    spec = config.model
    classes = len(spec.classes)
    model = build_model(encoder_weights=None, **spec.to_dict())
    engine = prepare_run(model, device, config)
    net = torch.compile(model) if config.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    images, labels = host_batch(config.batch_size, spec.train_size, classes, device)
    train = median_step_seconds(functools.partial(train_step, net, engine, optimizer, images, labels), device, steps,
                                warmup)
    model.eval()
    images, labels = host_batch(config.batch_size, spec.eval_size, classes, device, seed=1)
    tally = Tally(spec.classes, device)  # what evaluate() sums, never read here
    evaluate = median_step_seconds(functools.partial(eval_step, net, engine, images, labels, tally), device, steps,
                                   warmup)
    return train, evaluate


def loader_alone(config: RunConfig, passes: int) -> tuple[float, int]:
    """(images/s, images) of main.py's training loader without the model: `passes` passes over the train split
    (reading, decoding, crop and augmentation, in config.workers workers) after one untimed pass that starts them."""
    data = load_splits(config, ["train"])["train"]
    loader = make_loader(data, config.batch_size, config.workers, config.seed, True, torch.device("cpu"))
    try:
        images = 0
        for epoch in range(passes + 1):
            if epoch == 1:
                images, started = 0, time.perf_counter()
            loader.sampler.set_epoch(epoch)
            images += sum(len(batch[0]) for batch in loader)
        return images / (time.perf_counter() - started), images
    finally:
        close_loaders([loader])


def report(args, argv, config, history, cycles, times, description, generated_s, total_s, loader) -> str:
    t_train, t_eval = times
    b = config.batch_size
    train_batches, val_batches = args.train / b, args.val / b
    compute = train_batches * t_train + val_batches * t_eval
    spec = config.model
    device = torch.device(config.device)
    precision = f"{str(autocast_dtype(device, True)).removeprefix('torch.')} autocast" if config.amp else \
        "float32" + (f" (TF32 {'on' if config.tf32 else 'off'})" if device.type == "cuda" else "")
    th, tw = spec.train_size
    eh, ew = spec.eval_size
    w, h = args.frame_size
    lines = [
        f"# Epoch speed: main.py's loop vs pure compute ({device.type})",
        "",
        *provenance_lines("benchmarks.epoch_speed", argv),
        f"- main.py: {spec.arch}-{spec.encoder_name}, AFMA depth {SETTING['att_depth'].text(spec.att_depth)}, "
        f"patch {spec.patch_size}, batch {b}, scale {spec.scale} (training crop {th}x{tw}, evaluation {eh}x{ew}), "
        f"{precision}, {'channels_last, ' if device.type == 'cuda' else ''}{config.workers} loader workers, "
        f"{'torch.compile, ' if config.compile else ''}save every {config.save_every:g} min",
        f"- data: {args.train} train / {args.val} val / {args.test} test frames of {w}x{h}, {description}, written "
        f"in {generated_s:.1f} s",
        f"- pure compute: training step {1000 * t_train:.1f} ms, validation batch {1000 * t_eval:.1f} ms (batch {b}; "
        f"median of {args.steps} steps after {args.warmup} warm-up, each synchronised); per epoch "
        f"{train_batches:g} training steps + {val_batches:g} validation batches = {compute:.2f} s",
        f"- the whole run (start-up, {args.epochs} epochs, test, figures): {total_s:.1f} s",
        f"- the training loader alone (reading, crop, augmentation; {config.workers} workers, no model): "
        f"{loader[0]:.1f} images/s over {loader[1]} images ({args.loader_passes} passes after a first)",
        "",
        "| epoch | wall s | compute s | efficiency | cycle s | compute / cycle |",
        "|---|---|---|---|---|---|",
    ]
    efficiencies = []
    for row, cycle in zip(history, cycles + [None] * (len(history) - len(cycles))):  # None: not measured
        wall = float(row["seconds"])
        efficiencies.append(compute / wall)
        lines.append(f"| {row['epoch']} | {wall:.2f} | {compute:.2f} | {compute / wall:.2f} | "
                     + (f"{cycle:.2f} | {compute / cycle:.2f} |" if cycle else "- | - |"))
    later = efficiencies[TARGET["from_epoch"] - 1:]
    rule = f"efficiency >= {TARGET['efficiency']} from epoch {TARGET['from_epoch']}"
    if not later:
        verdict = f"not checked (fewer than {TARGET['from_epoch']} epochs)"
    else:
        verdict = ("met" if min(later) >= TARGET["efficiency"] else "MISSED") + f" (lowest {min(later):.2f})"
    if device.type != "cuda":
        verdict += "; the target is for CUDA, shown here for reference only"
    lines += ["", f"Target (CUDA, >= 8 cores, UNet-ResNet34 AFMA, batch 4, --scale 1.0): {rule}: {verdict}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp_root = Path(tempfile.mkdtemp(prefix="epoch_speed_", dir=args.tmp_dir))
    try:
        started = time.perf_counter()
        counts = {"train": args.train, "val": args.val, "test": args.test}
        description = make_dataset(tmp_root / "camvid", counts, tuple(args.frame_size), args.source)
        generated_s = time.perf_counter() - started
        run_dir = tmp_root / "run"
        run_argv = main_argv(args, tmp_root / "camvid", run_dir)
        print(f"python main.py {' '.join(run_argv)}", file=sys.stderr, flush=True)
        clock = EpochClock(sys.stdout)
        with contextlib.redirect_stdout(clock):
            started = time.perf_counter()
            code = main_py.main(run_argv)
            total_s = time.perf_counter() - started
        if code != 0:
            sys.exit(f"main.py {' '.join(run_argv)} stopped with exit status {code}")
        config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        with (run_dir / "history.csv").open() as file:
            history = list(csv.DictReader(file))
        times = pure_compute(config, args.steps, args.warmup)
        loader = loader_alone(config, args.loader_passes)
        table = report(args, argv, config, history, clock.cycles(), times, description, generated_s, total_s, loader)
    finally:
        torch.set_num_threads(threads)
        if args.keep:
            print(f"kept {tmp_root}", file=sys.stderr)
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
