"""Loaders: shuffling and augmentation are a pure function of (seed, epoch, sample), whatever the workers."""
import torch

from utils.data.datasets import CamVid
from utils.data.loaders import make_loader
from utils.data.transforms import build_transforms
from tests.conftest import SAMPLE


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


def test_workers_leave_stop_signals_to_the_main_process():
    """A scheduler signals the whole process group: workers must not die first and turn a clean stop into a
    'DataLoader worker killed' traceback."""
    import signal

    from utils.data.loaders import ignore_stop_signals

    data = CamVid(SAMPLE, "train", build_transforms(CamVid, "train", scale=0.125))
    assert make_loader(data, 2, 2, 0, True, torch.device("cpu")).worker_init_fn is ignore_stop_signals
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        ignore_stop_signals(0)
        assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
