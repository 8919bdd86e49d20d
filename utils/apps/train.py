"""Training a run: data -> model -> train and validate -> test the best epoch -> report.

Everything that can be wrong with the settings or the data fails before the run folder is written.
"""
from __future__ import annotations

import datetime
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.nn.parallel import DistributedDataParallel

from utils.config import LR_GAMMA, RunConfig
from utils.data.loaders import close_loaders, load_splits, make_loader
from utils.engine import distributed
from utils.engine.distributed import log
from utils.engine.checkpoint import CheckpointSaver, Progress, load_checkpoint, load_model_state, restore_training, \
    trained_on, training_state
from utils.engine.device import setup_device
from utils.engine.evaluate import evaluate, write_per_image
from utils.engine.seeding import rng_state
from utils.engine.setup import prepare_run
from utils.engine.train import train_one_epoch
from utils.errors import NonFiniteLoss, Terminated, UsageError
from utils.files import remove_partial_writes, write_csv, write_json
from utils.network import build_network, check_sizes
from utils.reporting import plots
from utils.reporting.run_figures import draw_run_figures
from utils.reporting.tables import format_table
from utils.run_folder import Resume, check_same_run, claim_problem, finished_metrics, interrupted, kept_checkpoints, \
    prepare_run_dir

FIGURE_IMAGES = 3  # test images shown in predictions.png
CURVES_EVERY_S = 30  # curves.png is redrawn after an epoch when this long has passed since the last drawing


def train(config: RunConfig, resume: Resume | None = None) -> dict:
    """Train, keep the best checkpoint by val mIoU, then test it. Returns {"val": ..., "test": ...}."""
    device = setup_device(config.device, config.seed, config.deterministic, config.tf32)
    state = resume.state if resume else None
    model, config = build_network(config, pretrained=state is None)  # a resumed run's weights come from last.pt
    splits = load_splits(config, ("train", "val", "test"))
    check_sizes(model, splits, config)
    record = trained_on(splits, distributed.world_size(), config.global_batch_size)
    if state:
        check_same_run(resume, record)
    run_dir = resume.run_dir if resume else prepare_run_dir(config)
    if resume:
        problem = distributed.broadcast_object(claim_problem(run_dir, "--resume") if distributed.is_main() else None)
        if problem:
            raise UsageError(problem)
    config = config.replace(output_dir=str(run_dir))
    try:  # from here a stop, wherever it lands, is said from what the folder holds
        return train_in(run_dir, config, device, model, splits, record, state)
    except (KeyboardInterrupt, Terminated) as stop:
        raise interrupted(run_dir, stop, config.epochs) from None


def train_in(run_dir: Path, config: RunConfig, device, model, splits: dict, record: dict, state: dict | None) -> dict:
    """train() once its folder is claimed: every epoch, the final evaluation, the figures, then metrics.json."""
    engine = prepare_run(model, device, config)
    optimizer, scheduler = optimisation(model, config)
    scaler = engine.scaler  # restored from last.pt and saved with every checkpoint
    loaders = {split: make_loader(data, config.batch_size, config.workers, config.seed, split == "train", device,
                                  persistent=split != "test")  # the test split is read once, at the end
               for split, data in splits.items()}
    progress = Progress(0, -1.0, None, [], [])
    if state:
        progress = restore_training(state, model, optimizer, scheduler, scaler, run_dir / "last.pt")
        progress.earlier += finished_metrics(run_dir, progress.epoch)
        log(f"resuming {run_dir} after epoch {progress.epoch} of {config.epochs} (best val mIoU so far "
            f"{progress.best_miou:.4f})")
    start_epoch, best_miou, best_epoch, history, earlier = (progress.epoch + 1, progress.best_miou, progress.best_epoch,
                                                            progress.history, progress.earlier)
    if distributed.is_main():
        remove_partial_writes(run_dir)  # a killed write's temporary file (a checkpoint's: hundreds of MB)
        write_json(run_dir / "config.json", describe_run(config, device) | {"trained_on": record})
    net = wrap(model, device, config.compile)
    saver = CheckpointSaver(run_dir, config.save_every, enabled=distributed.is_main())
    board = tensorboard_writer(run_dir)
    last_drawing = 0.0

    try:  # a stop anywhere in here goes up to train(), which says what the folder holds
        for epoch in range(start_epoch, config.epochs + 1):
            started = time.perf_counter()
            loaders["train"].sampler.set_epoch(epoch)
            train_loss = train_one_epoch(net, engine, optimizer, loaders["train"], epoch)
            val = evaluate(net, engine, loaders["val"], config.classes, desc=f"epoch {epoch} val")
            history.append({"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
                            "val_loss": val["loss"], "val_miou": val["miou"], "val_global_iou": val["global_iou"],
                            "val_accuracy": val["accuracy"], "seconds": round(time.perf_counter() - started, 2)})
            if not math.isfinite(val["loss"]):
                raise NonFiniteLoss(f"the validation loss became non-finite after epoch {epoch}: stopped before its "
                                    f"checkpoints (try a lower --lr)")
            scheduler.step()
            # A val split without labels (mIoU NaN, warned about) keeps the latest epoch as best.pt.
            improved = val["miou"] > best_miou or (best_miou < 0 and math.isnan(val["miou"]))
            best_miou = max(best_miou, val["miou"]) if not math.isnan(val["miou"]) else best_miou
            best_epoch = epoch if improved else best_epoch
            log(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, "
                f"val mIoU {val['miou']:.4f}{' (best)' if improved else ''}")
            rngs = gather_rng_states()  # every rank takes part, whether or not last.pt is written now
            saver.after_epoch(epoch, epoch == config.epochs, improved, lambda: training_state(
                model, config, epoch, best_miou, best_epoch, optimizer, scheduler, scaler, history, rngs, earlier, record))
            if distributed.is_main():
                write_csv(run_dir / "history.csv", history)
                if board:
                    for key, value in history[-1].items():
                        if key != "epoch":
                            board.add_scalar(key, value, epoch)
                    board.flush()
                if time.monotonic() - last_drawing >= CURVES_EVERY_S or epoch == config.epochs:
                    plots.plot_history(history, run_dir / "curves.png")
                    last_drawing = time.monotonic()
            distributed.barrier()
        # The best epoch's weights, on val and test, with the object-size scores.
        best = load_checkpoint(run_dir / "best.pt", map_location=device)
        load_model_state(model, best, run_dir / "best.pt")
        results = {}
        for split in ("val", "test"):
            started = time.perf_counter()
            results[split] = evaluate(net, engine, loaders[split], config.classes, small_objects=True, per_image=True,
                                      desc=f"{split} (best epoch {best['epoch']})")
            log(f"{split}: mIoU {results[split]['miou']:.4f}, loss {results[split]['loss']:.4f} (epoch "
                f"{best['epoch']}'s weights, {time.perf_counter() - started:.0f} s)")
        per_image = {split: result.pop("per_image_confusion") for split, result in results.items()}
        if distributed.is_main():
            summary = {"epochs": config.epochs, "best_epoch": best["epoch"], "scale": config.model.scale}
            write_per_image(run_dir, per_image)
            log(f"\nbest epoch {best['epoch']} ({run_dir}):\n" + format_table(results, config.classes))
            draw_run_figures(run_dir, model, splits["test"], engine.normalizer, history, results, config, FIGURE_IMAGES)
            # Last: metrics.json marks the run finished. A stop before it leaves a run that --resume tests (again)
            # and draws; after it, nothing is missing.
            write_json(run_dir / "metrics.json", {**results, "run": summary, "earlier": earlier})
    except NonFiniteLoss as error:
        raise NonFiniteLoss(f"{error}; {kept_checkpoints(run_dir)}") from None
    finally:
        close_loaders(loaders.values())
        if board:
            board.close()
    return results


def optimisation(model, config: RunConfig):
    """The authors' optimiser, Adam without weight decay, and the learning rate's steps at config.milestones."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), gamma=LR_GAMMA)


def wrap(model, device, compile_model: bool):
    if distributed.is_distributed():
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if compile_model else model


def gather_rng_states() -> list:
    """Every rank's generator states, so that a resumed multi-process run continues each rank exactly."""
    if not distributed.is_distributed():
        return [rng_state()]
    states = [None] * distributed.world_size()
    torch.distributed.all_gather_object(states, rng_state())
    return states


def tensorboard_writer(run_dir: Path):
    """TensorBoard event files in RUN/tensorboard when the tensorboard package is installed (not a dependency)."""
    if not distributed.is_main():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard needs the tensorboard package
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def describe_run(config: RunConfig, device: torch.device) -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "segmentation_models_pytorch": smp.__version__, "opencv": cv2.__version__,
                "numpy": np.__version__}
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {**config.to_dict(), "versions": versions, "device_name": hardware, "world_size": distributed.world_size(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
