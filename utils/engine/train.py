"""One epoch of training."""
from __future__ import annotations

import torch

from utils.engine import distributed
from utils.engine.setup import Engine
from utils.errors import NonFiniteLoss

# Steps between the loss checks that need the host (progress bar, non-finite loss): each is a device sync.
CHECK_EVERY = 10


def train_one_epoch(model, engine: Engine, optimizer, loader, epoch) -> float:
    """Train one epoch and return the mean loss over all ranks' batches.

    Losses stay on the device; every CHECK_EVERY steps (and at the end) they are read once, for the progress
    bar and to stop at the first non-finite one, before it can reach a checkpoint.
    """
    model.train()
    pending, total, count = [], 0.0, 0
    bar = distributed.progress(loader, f"epoch {epoch} train")
    for step, (images, targets) in enumerate(bar, start=1):
        pending.append(train_step(model, engine, optimizer, images, targets))
        if step % CHECK_EVERY == 0 or step == len(loader):
            values = torch.stack(pending)
            _stop_if_not_finite(values, epoch, step - len(pending) + 1)
            total, count = total + values.sum().item(), count + len(values)
            pending = []
            bar.set_postfix(loss=f"{values[-1].item():.4f}")
    totals = distributed.all_reduce_sum(torch.tensor([total, count], dtype=torch.float64, device=engine.device))
    return (totals[0] / totals[1]).item()


def train_step(model, engine: Engine, optimizer, images, targets) -> torch.Tensor:
    """One optimisation step on a loader batch (uint8 images, class-index targets); the loss stays on the device."""
    _, loss, _ = engine.forward(model, images, targets)
    optimizer.zero_grad(set_to_none=True)
    if engine.scaler is not None:
        engine.scaler.scale(loss).backward()
        engine.scaler.step(optimizer)
        engine.scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def _stop_if_not_finite(values: torch.Tensor, epoch: int, first_step: int) -> None:
    """Raise on every rank at once if any rank saw a non-finite loss, so that no rank waits for the others."""
    bad = (~torch.isfinite(values)).nonzero().flatten()
    flag = distributed.all_reduce_sum(torch.tensor([len(bad)], device=values.device))
    if flag.item() > 0:
        step = f"step {first_step + bad[0].item()}" if len(bad) else "a step of another rank"
        raise NonFiniteLoss(
            f"the training loss became non-finite at epoch {epoch}, {step}: stopped (try a lower --lr, or train "
            f"without --amp)"  # utils.run_folder.kept_checkpoints says which are kept
        )
