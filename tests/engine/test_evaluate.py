"""Per-image confusion matrices of an evaluation: exact counts, dataset order, gathered across ranks."""
import numpy as np
import torch

from utils.engine import distributed
from utils.engine import evaluate as evaluate_module
from utils.engine.evaluate import evaluate, gather_shards
from utils.engine.setup import Engine
from utils.metrics import ConfusionMatrix, confusion_counts

C = 3


def _literal(target, pred):
    mats = np.zeros((len(target), C, C), dtype=np.int64)
    for b in range(len(target)):
        for t, p in zip(target[b].flatten().tolist(), pred[b].flatten().tolist()):
            if 0 <= t < C and 0 <= p < C:
                mats[b, t, p] += 1
    return mats


def test_confusion_counts_count_each_image_like_a_literal_loop_and_sum_to_the_split():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(-1, C + 1, (4, 5, 6), generator=gen)  # -1 and C: outside the classes, ignored
    target[1, :2] = 255  # ignored
    pred = torch.randint(0, C + 1, (4, 5, 6), generator=gen)  # C: an impossible prediction, ignored too
    got = confusion_counts(target, pred, C, per_image=True)
    assert got.dtype == torch.int64 and (got.numpy() == _literal(target, pred)).all()
    whole = ConfusionMatrix(C)
    whole.update(target, pred)
    assert whole.mat.dtype == torch.int64 and (got.sum(0) == whole.mat).all()
    assert (whole.mat.numpy() == _literal(target, pred).sum(0)).all()


class _FromTargets(torch.nn.Module):
    """A "model" that predicts the class map carried in channel 0 of its input."""

    def forward(self, images):
        pred = images[:, 0].long()
        return (torch.nn.functional.one_hot(pred, C).permute(0, 3, 1, 2).float(),)


class _Identity:
    device = torch.device("cpu")

    def __call__(self, images):
        return images


def test_evaluate_keeps_every_image_in_dataset_order_and_they_sum_to_the_split():
    gen = torch.Generator().manual_seed(1)
    targets = torch.randint(0, C, (5, 4, 4), generator=gen)
    preds = torch.randint(0, C, (5, 4, 4), generator=gen)
    batches = [(preds[i:i + 2, None].expand(-1, 3, -1, -1).float(), targets[i:i + 2]) for i in (0, 2, 4)]
    engine = Engine(torch.device("cpu"), None, lambda output, target: output[0].sum() * 0, _Identity(), None)
    result = evaluate(_FromTargets(), engine, batches, ["a", "b", "void"], per_image=True)
    mats = result["per_image_confusion"]
    assert isinstance(mats, np.ndarray) and mats.shape == (5, C, C)
    assert (mats == _literal(targets, preds)).all()
    assert (mats.sum(0) == np.array(result["confusion_matrix"])).all()
    plain = evaluate(_FromTargets(), engine, batches, ["a", "b", "void"])
    assert "per_image_confusion" not in plain


def test_gather_shards_interleaves_the_ranks_back_into_dataset_order(monkeypatch):
    world, rows = 3, torch.arange(8 * 4).view(8, 2, 2)
    shards = [rows[r::world] for r in range(world)]  # what distributed.ShardSampler gives each rank

    def all_gather(out, tensor):
        if tensor.shape == (1,):  # the sizes
            for part, shard in zip(out, shards):
                part.copy_(torch.tensor([len(shard)]))
        else:
            for part, shard in zip(out, shards):
                part.zero_()
                part[: len(shard)] = shard

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    monkeypatch.setattr(evaluate_module.dist, "all_gather", all_gather)
    assert (gather_shards(shards[1]) == rows).all()
