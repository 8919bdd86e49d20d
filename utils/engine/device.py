"""The device of this process and its precision: TF32 on CUDA, and the autocast dtype of --amp (under which
utils.engine.setup.Engine.forward runs every training and evaluation step)."""
from __future__ import annotations

import torch

from utils.engine import distributed
from utils.engine.seeding import seed_everything


def setup_device(name: str, seed: int, deterministic: bool = False, tf32: bool = True) -> torch.device:
    """Join torchrun's process group if there is one, pick this rank's device, seed it, set the precision.

    TF32 (10-bit mantissa products, float32 sums) for float32 matrix products and convolutions on CUDA:
    tensor cores instead of plain FMA units, several times the throughput; `tf32=False` for exact float32.
    """
    device = distributed.init_distributed(torch.device(name))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    seed_everything(seed + distributed.rank())
    return device


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 where the device has it (CPU, Ampere and later), else fp16 (which then needs a GradScaler)."""
    if not amp:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16
