"""What training, evaluation and the benchmarks set up alike around a model: where and in which layout it runs,
the autocast dtype of --amp, the loss, the GradScaler that fp16 needs and the input normaliser."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.engine.device import autocast_dtype
from utils.engine.normalizer import Normalizer
from utils.losses import PAPER_LOSS_WEIGHTS, AFMALoss


@dataclass(frozen=True)
class Engine:
    """What the training and evaluation steps (utils.engine.train, utils.engine.evaluate) need beside the model."""
    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32
    criterion: AFMALoss
    normalizer: Normalizer
    scaler: torch.amp.GradScaler | None  # fp16 autocast only: bf16 and float32 need no loss scaling

    def forward(self, model, images, targets):
        """A loader batch (uint8 images, class-index targets) through the normaliser, `model` and the loss, under
        autocast: (the model's output, the loss, the targets on the device as int64)."""
        images, targets = self.normalizer(images), targets.to(self.device, non_blocking=True).long()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            output = model(images)
            loss = self.criterion(output, targets)  # the loss itself leaves autocast and works in float32
        return output, loss, targets


def prepare(model, device: torch.device, amp: bool = False, class_weights=None,
            ce_weight: float = PAPER_LOSS_WEIGHTS["ce_weight"], mse_weight: float = PAPER_LOSS_WEIGHTS["mse_weight"],
            channels_last: bool | None = None) -> Engine:
    """Move `model` to `device` and build its steps' engine: autocast with `amp`, the loss with `class_weights`
    and its two terms' weights (AFMALoss; the paper's unless given: a run's are its settings', `prepare_run`), and
    the normaliser of the model's own spec (the mean and std its encoder expects).

    The model takes the normaliser's layout, channels_last on CUDA (Normalizer); `channels_last` overrides it
    (the benchmarks compare both).
    """
    normalizer = Normalizer(model.spec.mean, model.spec.std, device)
    if channels_last is not None:
        normalizer.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=normalizer.memory_format)
    amp_dtype = autocast_dtype(device, amp)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    return Engine(device, amp_dtype, AFMALoss(class_weights, ce_weight, mse_weight).to(device), normalizer, scaler)


def prepare_run(model, device: torch.device, config) -> Engine:
    """`prepare` with a run's settings (a RunConfig): its --amp, class weights and loss weights."""
    return prepare(model, device, config.amp, config.class_weights, config.ce_weight, config.mse_weight)
