"""DataLoaders whose shuffling and augmentation are a pure function of (seed, epoch, rank, sample).

`EpochSampler` yields (index, sample_seed) pairs from the main process; the dataset seeds its augmentation
with sample_seed for that one sample. So worker processes can live for the whole run (persistent workers, no
start-up cost per epoch), the number of workers changes nothing, and a resumed run draws exactly what the
uninterrupted one would have.

`load_splits` reads a run's splits with their transforms, every file checked, before anything is trained.
"""
from __future__ import annotations

import atexit
import multiprocessing.util  # its exit handler is registered first, so the one below runs before it
import os
import signal
import weakref

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from utils.data.datasets import dataset_class
from utils.data.transforms import build_transforms
from utils.engine import distributed
from utils.signals import deferred_stops


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + distributed.rank()) % 2**63


class EpochSampler(Sampler):
    """Wraps an index sampler; `set_epoch(e)` fixes its order and the augmentation seeds of epoch e."""

    def __init__(self, sampler: Sampler, seed: int):
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)
        elif isinstance(self.sampler, RandomSampler):
            self.sampler.generator.manual_seed(epoch_seed(self.seed, epoch))

    def __iter__(self):
        base = epoch_seed(self.seed, self.epoch)
        for index in self.sampler:
            yield index, (base + 104_729 * index) % 2**32

    def __len__(self):
        return len(self.sampler)


def default_workers(device: torch.device) -> int:
    """Loader processes when --workers is not given: the cores this process may use, shared by the ranks on
    this node and less one for the training loop itself, on CUDA (at most 16); 2 on the CPU, where the
    workers take cores from the computation itself."""
    if device.type != "cuda":
        return 2
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(16, cores // local_ranks - 1))


def make_loader(data, batch_size: int, workers: int, seed: int, train: bool, device: torch.device,
                persistent: bool = True) -> DataLoader:
    """Training: shuffled (DistributedSampler under torchrun), augmentation seeded per sample. Evaluation:
    in order, an unpadded shard per rank (so summed confusion matrices equal one process's exactly).
    `persistent`: keep the workers between passes (for loaders used every epoch, not for one pass)."""
    if train:
        if distributed.is_distributed():
            indices = DistributedSampler(data, shuffle=True, seed=seed)
        else:
            indices = RandomSampler(data, generator=torch.Generator())
        sampler = EpochSampler(indices, seed)
    else:
        sampler = distributed.ShardSampler(len(data)) if distributed.is_distributed() else SequentialSampler(data)
    loader = StopSafeLoader(
        data, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=persistent and workers > 0, prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=ignore_stop_signals,
        # A last training batch of one image breaks batch norm over 1x1 maps (DeepLabV3's image pooling).
        drop_last=train and len(sampler) > batch_size,
    )
    if loader.persistent_workers:
        _open_loaders.add(loader)
    return loader


class StopSafeLoader(DataLoader):
    """A DataLoader whose every pass starts with Ctrl-C and SIGTERM held (utils/signals.py): forking its workers
    runs at-fork handlers (logging's), where Python drops a stop's exception and may leave logging's lock taken; a
    stop that came meanwhile is raised once the workers are started, as the pass begins."""

    def __iter__(self):
        with deferred_stops():
            return super().__iter__()


def ignore_stop_signals(worker_id: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the main process, which stops the run and shuts them down: a
    scheduler signals the whole process group, and a worker dying first would turn a clean stop into a
    'DataLoader worker killed' traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


_open_loaders = weakref.WeakSet()  # the persistent loaders alive, whose workers outlive a pass


@atexit.register
def _close_open_loaders() -> None:
    """At exit, multiprocessing's handler (which runs after this one) SIGTERMs the workers still alive and waits
    for them; these ignore SIGTERM (`ignore_stop_signals`), so a loader its caller left open would hang the exit.
    Their shutdown here ends them as `close_loaders` does."""
    close_loaders(list(_open_loaders))


def close_loaders(loaders) -> None:
    """Stop the persistent workers now rather than whenever the garbage collector gets to them (a --compare
    trains many runs in one process). DataLoader has no public close; its iterator's shutdown is what `del` runs."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        loader._iterator = None


def load_splits(config, names) -> dict:
    """The splits `names` of a run (`config`, a RunConfig) with their transforms, each checked file by file before
    any training."""
    dataset = dataset_class(config.dataset, config.model.dataset_params)
    splits = {}
    for split in names:
        transform = build_transforms(dataset, split, config.model.scale)
        splits[split] = dataset(config.data_dir, split, transform)
        splits[split].channels = config.model.in_channels
        splits[split].validate()
    if splits[names[0]].note:  # what reading the results needs, e.g. that CUB's val split is its test list
        distributed.log(splits[names[0]].note)
    return splits
