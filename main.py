"""Train, validate and test a segmentation model with Across Feature Map Attention (Sang et al., TPAMI 2023).

    python main.py                                   # short run on the bundled sample, CPU or GPU
    python main.py --arch fpn --att-depth 3          # another architecture / attention depth
    python main.py --att-depth off                   # the plain SMP baseline
    python main.py --preset paper --data-dir data/CamVid          # the reference CamVid settings
    torchrun --nproc_per_node 4 main.py --preset paper --data-dir data/CamVid --amp
    python main.py --resume runs/RUN                 # continue an interrupted run
    python main.py --predict photo.png --checkpoint runs/RUN/best.pt
    python main.py --checkpoint runs/RUN/best.pt     # evaluate a saved model on val and test
    python main.py --compare unet                    # baseline vs AFMA, same seed and data ("all": 8 archs)

Edit the settings at the top of main.py, or override any of them with its flag.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import platform
import sys
from pathlib import Path

import albumentations
import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from models import WeightsUnavailable, build_model
from utils import distributed
from utils.datasets import DATASETS, DataError, build_dataset
from utils.engine import (
    CheckpointError,
    NonFiniteLoss,
    autocast_dtype,
    check_compatible,
    evaluate,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    seed_augmentations,
    seed_everything,
    seed_worker,
    set_rng_state,
    train_one_epoch,
)
from utils.figures import draw_run_figures
from utils.losses import AFMALoss
from utils.metrics import format_table
from utils.predict import predict
from utils.report import compare
from utils.transforms import build_transforms

# --------------------------------------------------------------------------- settings: edit, or pass flags
DATASET = "camvid"  # camvid, cityscapes, birds, skinlesion, lits
DATA_DIR = "dataset/camvid"  # the bundled synthetic sample; point it at the real data set
ARCH = "unet"  # unet, unet++, fpn, linknet, manet, pan, pspnet, deeplabv3
ENCODER = "resnet34"  # any SMP encoder name (resnet18 ... resnet152, resnext50_32x4d, tu-<timm model>)
ENCODER_WEIGHTS = "none"  # "imagenet" as in the paper (downloaded once); "none" = random initialisation
ALLOW_RANDOM_INIT = False  # if the weights cannot be fetched: True trains from random init, False stops
ATT_DEPTH = "2"  # encoder depth AFMA attends to, 1..5; "off" gives the plain SMP baseline
PATCH_SIZE = 10
EPOCHS = 12
BATCH_SIZE = 2
LR = 1e-3  # the paper uses 1e-4 over 1000 epochs (--preset paper); the short run needs larger steps
MILESTONES = ""  # comma-separated epochs at which the learning rate halves, e.g. "400,500,700,800,900"
SCALE = 0.5  # image scale: 1.0 is the paper's resolution; 0.5 keeps the CPU run short
DEVICE = "auto"  # auto (CUDA when present), cuda, cuda:1, cpu
AMP = False  # mixed precision: bf16 where supported, else fp16 with a gradient scaler
SEED = 0
OUTPUT_DIR = ""  # empty: a new folder under runs/ named after dataset, architecture, encoder, depth, time
WORKERS = 2

PRESETS = {
    "paper": dict(epochs=1000, lr=1e-4, milestones="400,500,700,800,900", batch_size=4, encoder_weights="imagenet",
                  scale=1.0),
}
FIGURE_IMAGES = 3  # test images shown in predictions.png


def parse_args(argv=None) -> argparse.Namespace:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--dataset", default=DATASET, help="camvid, cityscapes, birds, skinlesion, lits")
    p.add_argument("--data-dir", default=DATA_DIR, help="the data set's root folder")
    p.add_argument("--arch", default=ARCH, help="unet, unet++, fpn, linknet, manet, pan, pspnet, deeplabv3")
    p.add_argument("--encoder", default=ENCODER, help="an SMP encoder name")
    p.add_argument("--encoder-weights", default=ENCODER_WEIGHTS, help='"imagenet", another SMP tag, or "none"')
    p.add_argument("--allow-random-init", action=argparse.BooleanOptionalAction, default=ALLOW_RANDOM_INIT,
                   help="fall back to random initialisation when the weights cannot be fetched")
    p.add_argument("--att-depth", default=ATT_DEPTH, help='1..5, or "off" for the plain SMP baseline')
    p.add_argument("--patch-size", type=int, default=PATCH_SIZE, help="AFMA patch size p")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per step (per process)")
    p.add_argument("--lr", type=float, default=LR, help="Adam learning rate")
    p.add_argument("--milestones", default=MILESTONES, help="comma-separated epochs at which the LR halves")
    p.add_argument("--scale", type=float, default=SCALE, help="image scale (1.0 = the paper's resolution)")
    p.add_argument("--device", default=DEVICE, help="auto, cpu, cuda, cuda:N")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=AMP, help="mixed precision")
    p.add_argument("--seed", type=int, default=SEED, help="seeds Python, NumPy, torch, workers, augmentations")
    p.add_argument("--deterministic", action="store_true", help="PyTorch's deterministic algorithms (CUDA)")
    p.add_argument("--output-dir", default=OUTPUT_DIR, help="the run folder (empty: a new one under runs/)")
    p.add_argument("--workers", type=int, default=WORKERS, help="data-loader processes")
    p.add_argument("--preset", choices=sorted(PRESETS), help="reference settings (overrides the flags it sets)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--predict", metavar="PATH", help="segment an image or a folder of images (needs --checkpoint)")
    p.add_argument("--checkpoint", help="best.pt or last.pt of a run: with --predict, the model to use; alone, "
                   "evaluate it on the val and test splits of --dataset (metrics.json into --output-dir if given)")
    p.add_argument("--compare", metavar="ARCH", help='train baseline and AFMA of ARCH (or "all") and report both')
    args = p.parse_args(argv)
    for key, value in PRESETS.get(args.preset, {}).items():
        setattr(args, key, value)
    return args


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class UsageError(ValueError):
    """A setting that cannot work; the message names the option and what to do."""


# ---------------------------------------------------------------------------------- settings -> config
def make_config(args: argparse.Namespace) -> dict:
    """Check every setting and return the run's configuration (JSON-able: it is saved with the run)."""
    if args.dataset not in DATASETS:
        raise UsageError(f"--dataset {args.dataset!r} is not valid: choose one of {', '.join(DATASETS)}")
    for option, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                               ("--patch-size", args.patch_size, 1), ("--workers", args.workers, 0)):
        if value < low:
            raise UsageError(f"{option} {value} is not valid: it must be at least {low}")
    if not args.lr > 0 or not 0 < args.scale <= 4:
        raise UsageError(f"--lr {args.lr} / --scale {args.scale} is not valid: both must be positive, scale at most 4")
    dataset = DATASETS[args.dataset]
    return {
        "dataset": args.dataset, "data_dir": str(args.data_dir), "arch": args.arch, "encoder": args.encoder,
        "encoder_weights": None if args.encoder_weights.lower() in ("none", "") else args.encoder_weights,
        "allow_random_init": args.allow_random_init, "att_depth": parse_depth(args.att_depth),
        "patch_size": args.patch_size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "milestones": parse_milestones(args.milestones), "scale": args.scale, "device": resolve_device(args.device),
        "amp": args.amp, "seed": args.seed, "deterministic": args.deterministic, "workers": args.workers,
        "output_dir": args.output_dir, "preset": args.preset, "classes": list(dataset.classes),
        "class_weights": None if dataset.class_weights is None else list(dataset.class_weights),
    }


def parse_depth(value) -> int | None:
    if str(value).lower() in ("off", "none"):
        return None
    if str(value) not in ("1", "2", "3", "4", "5"):
        raise UsageError(f"--att-depth {value!r} is not valid: choose 1, 2, 3, 4, 5, or off (the plain baseline)")
    return int(value)


def parse_milestones(value) -> list[int]:
    try:
        return sorted(int(m) for m in str(value).replace(" ", "").split(",") if m)
    except ValueError:
        raise UsageError(f"--milestones {value!r} is not valid: give epochs separated by commas, e.g. 400,500") from None


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not valid: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; use --device cpu (or auto)")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    return name


# --------------------------------------------------------------------------------------- model and data
def build_network(config: dict):
    """The model, and the input normalisation its encoder expects."""
    common = dict(arch=config["arch"], encoder_name=config["encoder"], classes=len(config["classes"]),
                  att_depth=config["att_depth"], patch_size=config["patch_size"])
    weights = config["encoder_weights"]
    try:
        model = build_model(encoder_weights=weights, **common)
    except WeightsUnavailable as error:
        if not config["allow_random_init"]:
            raise UsageError(f"{error} (or pass --allow-random-init to fall back to it)") from None
        log(f"warning: {error}; --allow-random-init: training from random initialisation instead")
        weights = config["encoder_weights"] = None
        model = build_model(encoder_weights=None, **common)
    if weights is None:
        log(f"encoder {config['encoder']}: random initialisation (no pretrained weights), ImageNet normalisation")
        return model, IMAGENET_MEAN, IMAGENET_STD
    params = smp.encoders.get_preprocessing_params(config["encoder"], pretrained=weights)
    return model, tuple(params["mean"]), tuple(params["std"])


def load_splits(config: dict, mean, std, names=("train", "val", "test")) -> dict:
    """The splits with their transforms, each checked file by file before any training."""
    dataset = DATASETS[config["dataset"]]
    splits = {}
    for split in names:
        transform = build_transforms(dataset, split, mean, std, config["scale"])
        splits[split] = build_dataset(config["dataset"], config["data_dir"], split, transform)
        splits[split].validate()
    return splits


def check_sizes(model, splits: dict, scale: float) -> None:
    """Every split's network input must suit the model: say so now, not at the first validation."""
    for split, data in splits.items():
        height, width = data[0][0].shape[-2:]
        try:
            model.check_input_size(height, width)
        except ValueError as error:
            raise UsageError(f"the {split} crop of --dataset {data.name} at --scale {scale}: {error}") from None


def make_loader(data, config: dict, train: bool, device: torch.device):
    if distributed.is_distributed():
        sampler = DistributedSampler(data, shuffle=True, seed=config["seed"]) if train else distributed.ShardSampler(len(data))
    else:
        sampler = None
    return DataLoader(
        data, batch_size=config["batch_size"], shuffle=train and sampler is None, sampler=sampler,
        num_workers=config["workers"], pin_memory=device.type == "cuda", generator=torch.Generator(),
        worker_init_fn=seed_worker, persistent_workers=False,
    )


def seed_epoch(loader, seed: int, epoch: int) -> None:
    """Every epoch's shuffling and augmentation follow from (seed, epoch, rank) alone: runs repeat, and a
    resumed run draws what the uninterrupted one would have."""
    epoch_seed = (seed * 1_000_003 + epoch * 7919 + distributed.rank()) % 2**63
    loader.generator.manual_seed(epoch_seed)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if loader.num_workers == 0:
        seed_augmentations(loader.dataset, epoch_seed)


# ------------------------------------------------------------------------------------------- the run
def train(config: dict, resume_dir: Path | None = None) -> dict:
    """Build data and model, train, keep the best checkpoint by val mIoU, then test it. Returns metrics."""
    resume = load_resume_state(resume_dir, config) if resume_dir else None
    device = setup_device(config)

    # Everything that can be wrong with the settings or the data fails here, before a file is written.
    model, mean, std = build_network(config)
    config["normalisation"] = {"mean": list(mean), "std": list(std)}
    splits = load_splits(config, mean, std)
    check_sizes(model, splits, config["scale"])
    run_dir = resume_dir or prepare_run_dir(config)

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(device, config["amp"])
    config["amp_dtype"] = str(amp_dtype).replace("torch.", "") if amp_dtype else None
    criterion = AFMALoss(config["class_weights"], patch_size=config["patch_size"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config["milestones"], gamma=0.5)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    loaders = {split: make_loader(data, config, split == "train", device) for split, data in splits.items()}
    start_epoch, best_miou, history = 1, -1.0, []
    if resume:
        load_model_state(model, resume, run_dir / "last.pt")
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch, best_miou, history = resume["epoch"] + 1, resume["best_miou"], resume["history"]
        set_rng_state(resume["rng"][min(distributed.rank(), len(resume["rng"]) - 1)])
        log(f"resuming {run_dir} after epoch {resume['epoch']} (best val mIoU so far {best_miou:.4f})")
    if distributed.is_main() and not resume:
        write_json(run_dir / "config.json", describe_run(config, device))
    net = wrap_distributed(model, device)

    for epoch in range(start_epoch, config["epochs"] + 1):
        seed_epoch(loaders["train"], config["seed"], epoch)
        started = datetime.datetime.now()
        train_loss = train_one_epoch(net, criterion, optimizer, loaders["train"], device, epoch, amp_dtype, scaler)
        val = evaluate(net, criterion, loaders["val"], device, config["classes"], amp_dtype, desc=f"epoch {epoch} val")
        history.append({"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                        "val_loss": val["loss"], "val_miou": val["miou"], "val_global_iou": val["global_iou"],
                        "val_accuracy": val["accuracy"],
                        "seconds": round((datetime.datetime.now() - started).total_seconds(), 2)})
        scheduler.step()
        improved = val["miou"] > best_miou
        best_miou = max(best_miou, val["miou"])
        log(f"epoch {epoch}/{config['epochs']}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, "
            f"val mIoU {val['miou']:.4f}{' (best)' if improved else ''}")
        state = {"model": model.state_dict(), "config": config, "epoch": epoch, "best_miou": best_miou,
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler else {}, "history": history, "rng": gather_rng_states()}
        if distributed.is_main():
            if improved:
                save_checkpoint({"model": state["model"], "config": config, "epoch": epoch, "val_miou": val["miou"]},
                                run_dir / "best.pt")
            save_checkpoint(state, run_dir / "last.pt")
            write_history(history, run_dir / "history.csv")
        distributed.barrier()

    # The best epoch's weights, on val and test, with the object-size scores.
    best = load_checkpoint(run_dir / "best.pt", map_location=device)
    load_model_state(model, best, run_dir / "best.pt")
    results = {split: evaluate(net, criterion, loaders[split], device, config["classes"], amp_dtype,
                               small_objects=True, desc=f"{split} (best epoch {best['epoch']})")
               for split in ("val", "test")}
    if distributed.is_main():
        write_json(run_dir / "metrics.json", results)
        log(f"\nbest epoch {best['epoch']} ({run_dir}):\n" + format_table(results, config["classes"]))
        draw_run_figures(run_dir, model, splits["test"], history, results, config, device, FIGURE_IMAGES)
    return results


def evaluate_checkpoint(config: dict, path: Path) -> dict:
    """Metrics of a saved model on the data set's val and test splits (all ranks share the work)."""
    state = load_checkpoint(path)
    check_compatible(state, config, path)
    device = setup_device(config)
    config["normalisation"] = state["config"]["normalisation"]
    model = build_model(config["arch"], config["encoder"], None, len(config["classes"]), config["att_depth"],
                        config["patch_size"])
    load_model_state(model, state, path)
    splits = load_splits(config, config["normalisation"]["mean"], config["normalisation"]["std"], ("val", "test"))
    check_sizes(model, splits, config["scale"])
    out_dir = prepare_run_dir(config) if config["output_dir"] else None
    model.to(device)
    criterion = AFMALoss(config["class_weights"], patch_size=config["patch_size"]).to(device)
    amp_dtype = autocast_dtype(device, config["amp"])
    results = {split: evaluate(model, criterion, make_loader(data, config, False, device), device, config["classes"],
                               amp_dtype, small_objects=True, desc=split) for split, data in splits.items()}
    log(f"\n{path} (epoch {state['epoch']}):\n" + format_table(results, config["classes"]))
    if out_dir and distributed.is_main():
        write_json(out_dir / "metrics.json", results)
    return results


def setup_device(config: dict) -> torch.device:
    """Join torchrun's process group if there is one, pick this rank's device, seed, set determinism."""
    device = distributed.init_distributed(torch.device(config["device"]))
    if config["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not config["deterministic"]
    seed_everything(config["seed"] + distributed.rank())
    return device


def load_resume_state(run_dir: Path, config: dict) -> dict:
    state = load_checkpoint(run_dir / "last.pt")
    config.clear()
    config.update(state["config"])  # a resumed run keeps its own settings
    if state["epoch"] >= config["epochs"]:
        raise UsageError(f"{run_dir} already finished its {config['epochs']} epochs: nothing to resume")
    return state


def prepare_run_dir(config: dict) -> Path:
    """The run's folder: --output-dir, or a new one under runs/. An existing run is never overwritten."""
    name = config["output_dir"] or "runs/{}-{}-{}-{}-{}".format(
        config["dataset"], config["arch"], config["encoder"],
        "baseline" if config["att_depth"] is None else f"afma{config['att_depth']}",
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir = Path(distributed.broadcast_object(name))
    problem = None
    if distributed.is_main():
        if run_dir.exists() and any(run_dir.iterdir()):
            problem = f"--output-dir {run_dir} is not empty: choose a new folder, or --resume {run_dir}"
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
    problem = distributed.broadcast_object(problem)  # every rank stops, none waits for the others
    if problem:
        raise UsageError(problem)
    config["output_dir"] = str(run_dir)
    return run_dir


def wrap_distributed(model, device):
    if not distributed.is_distributed():
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gather_rng_states() -> list:
    """Every rank's generator states, so that a resumed multi-process run continues each rank exactly."""
    if not distributed.is_distributed():
        return [rng_state()]
    states = [None] * distributed.world_size()
    torch.distributed.all_gather_object(states, rng_state())
    return states


def describe_run(config: dict, device: torch.device) -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "segmentation_models_pytorch": smp.__version__, "albumentations": albumentations.__version__,
                "numpy": np.__version__}
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {**config, "versions": versions, "device_name": hardware, "world_size": distributed.world_size(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2))


def write_history(history: list, path: Path) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomic(path, text.getvalue())


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def log(message: str) -> None:
    if distributed.is_main():
        print(message, flush=True)


# ------------------------------------------------------------------------------------------- entry point
def run(args: argparse.Namespace) -> int:
    if args.predict:
        if not args.checkpoint:
            raise UsageError("--predict PATH needs --checkpoint RUN_DIR/best.pt")
        written = predict(Path(args.predict), Path(args.checkpoint), args.output_dir or None, resolve_device(args.device))
        print(f"wrote {len(written)} files to {written[0].parent}" if written else "nothing to write")
        return 0
    if args.checkpoint:
        evaluate_checkpoint(make_config(args), Path(args.checkpoint))
        return 0
    if args.compare:
        compare(args, make_config, train)
        return 0
    if args.resume:
        resume_dir = Path(args.resume)
        if not (resume_dir / "last.pt").is_file():
            raise UsageError(f"--resume {resume_dir}: no last.pt there; give the folder of a run started by main.py")
        train({}, resume_dir)
        return 0
    train(make_config(args))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (UsageError, DataError, CheckpointError, NonFiniteLoss, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch's checkpoints are kept; continue with --resume", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    sys.exit(main())
