"""Evaluation sharding: every sample once, on exactly one rank, none padded."""
import pytest

from utils.engine import distributed


@pytest.mark.parametrize("length,world", [(7, 2), (3, 4), (10, 3), (1, 1)])
def test_shards_cover_every_sample_once(monkeypatch, length, world):
    shards = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: world)
        shards.append(list(distributed.ShardSampler(length)))
    assert sorted(i for shard in shards for i in shard) == list(range(length))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_log_speaks_once_before_the_process_group_exists(monkeypatch, capsys):
    # Under torchrun, messages printed before the group starts (resume notes) come from rank 0 alone.
    monkeypatch.setenv("RANK", "1")
    distributed.log("from rank 1")
    monkeypatch.setenv("RANK", "0")
    distributed.log("from rank 0")
    assert capsys.readouterr().out == "from rank 0\n"
