"""torchrun / DistributedDataParallel helpers: one process per device, rank 0 speaks and writes."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from tqdm import tqdm


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a no-op otherwise.

    NCCL on CUDA, gloo on CPU. Returns the device this rank should use (cuda:LOCAL_RANK on GPUs).
    """
    if "RANK" not in os.environ or dist.is_initialized():  # torchrun sets RANK, for one process too
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    # torchrun's store outlives a restart (--max-restarts): each rank's address from the failed group stays in it,
    # and the restarted group would connect to the dead processes (gloo: "connectFullMesh failed ... Connection
    # refused"). The keys of each restart go under their own prefix.
    store, rank_, world = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"restart{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=rank_, world_size=world)
    return device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def launched_rank() -> int:
    """This process's rank as torchrun launched it (RANK), known before the process group starts; 0 otherwise."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def log(message: str) -> None:
    """Print once: on rank 0, or before the process group exists, on the process torchrun launched as rank 0."""
    if (rank() if is_distributed() else launched_rank()) == 0:
        print(message, flush=True)


def progress(iterable, desc: str):
    """A progress bar on process 0 when its stderr is a terminal; none in a log file (a cluster job's), which
    gets the loops' plain lines, one per epoch and per evaluation, instead of a carriage-return frame per step."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None if is_main() else True)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(value):
    """Rank 0's value on every rank (e.g. the run folder, or an error message)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


class ShardSampler(torch.utils.data.Sampler):
    """Every rank takes indices rank, rank + world, ...: no padding and no duplicates, so the sum of the
    ranks' confusion matrices is exactly that of one process over the whole split (DistributedSampler
    pads with repeated samples, which would count some images twice)."""

    def __init__(self, length: int):
        self.indices = list(range(rank(), length, world_size()))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)
