"""Loaders: shuffling and augmentation are a pure function of (seed, epoch, sample), whatever the workers."""
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest
import torch

from utils.data.datasets import CamVid
from utils.data.loaders import close_loaders, make_loader
from utils.data.transforms import build_transforms
from tests.conftest import ROOT, SAMPLE


def epoch_batches(workers, epochs=(1, 2), seed=0):
    data = CamVid(SAMPLE, "train", build_transforms(CamVid, "train", scale=0.125))
    loader = make_loader(data, 2, workers, seed, True, torch.device("cpu"))
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out.append([(images.clone(), masks.clone()) for images, masks in loader])
    return out


def same(a, b):
    return all(torch.equal(x, y) for batch_a, batch_b in zip(a, b) for x, y in zip(batch_a, batch_b))


def test_persistent_workers_draw_exactly_what_the_main_process_draws():
    in_process, workers = epoch_batches(0), epoch_batches(2)
    assert all(same(a, b) for a, b in zip(in_process, workers))
    assert not same(in_process[0], in_process[1])  # another epoch: another order and other augmentations


def test_an_epoch_can_be_replayed_alone_as_a_resumed_run_would():
    both, second_alone = epoch_batches(0, (1, 2)), epoch_batches(0, (2,))
    assert same(both[1], second_alone[0])
    assert not same(epoch_batches(0, (1,), seed=1)[0], both[0])


def test_loader_gives_uint8_images_and_masks():
    images, masks = epoch_batches(0, (1,))[0][0]
    assert images.dtype == torch.uint8 and images.shape[1] == 3 and masks.dtype == torch.uint8


@pytest.mark.e2e
def test_workers_leave_stop_signals_to_the_main_process():
    """A scheduler signals the whole process group: a worker must not die first and turn a clean stop into a
    'DataLoader worker exited unexpectedly' traceback. Each worker gets a stop signal mid-epoch, with Python's
    own handlers in the main process (which forked workers inherit); the epoch and the next one still arrive
    whole, the same batches as without workers."""
    expected = epoch_batches(0)
    data = CamVid(SAMPLE, "train", build_transforms(CamVid, "train", scale=0.125))
    loader = make_loader(data, 2, 2, 0, True, torch.device("cpu"))
    before = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        older = set(multiprocessing.active_children())
        loader.sampler.set_epoch(1)
        batches = iter(loader)
        # batches go to the workers in turn, so once the first two are back both workers have started
        got = [tuple(t.clone() for t in next(batches)) for _ in range(2)]
        workers = sorted(set(multiprocessing.active_children()) - older, key=lambda process: process.pid)
        assert len(workers) == 2
        for worker, signum in zip(workers, (signal.SIGINT, signal.SIGTERM)):
            os.kill(worker.pid, signum)
        got += [tuple(t.clone() for t in batch) for batch in batches]
        loader.sampler.set_epoch(2)
        second = [tuple(t.clone() for t in batch) for batch in loader]
        assert all(worker.is_alive() for worker in workers)
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
        close_loaders([loader])
    assert same(got, expected[0]) and same(second, expected[1]) and len(got) == len(expected[0]) and len(second) == len(expected[1])


@pytest.mark.e2e
def test_a_script_that_leaves_its_loader_open_still_exits():
    """Workers ignore SIGTERM (above), and at exit multiprocessing SIGTERMs the workers still alive and waits for
    them: a persistent loader its caller never closed hung the interpreter's exit. It now ends, and its workers
    with it. (The timeout only bounds a hang; the script takes seconds.)"""
    script = (f"import sys, torch; sys.path.insert(0, {str(ROOT)!r})\n"
              "from utils.data.datasets import CamVid\n"
              "from utils.data.loaders import make_loader\n"
              "from utils.data.transforms import build_transforms\n"
              f"data = CamVid({str(SAMPLE)!r}, 'train', build_transforms(CamVid, 'train', scale=0.125))\n"
              "loader = make_loader(data, 2, 2, 0, True, torch.device('cpu'))\n"
              "print(sum(len(images) for images, _ in loader), flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(CamVid(SAMPLE, "train", None)) // 2 * 2  # a whole pass, then the exit
