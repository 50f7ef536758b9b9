"""The resumable training stream: a pure function of (seed, rank, world size), restartable at any batch."""

from __future__ import annotations

from itertools import islice

from fractalmidi.train.data import DataPosition, ResumableSampler

ITEMS, BATCH = 10, 3


def _stream(position: int, *, seed: int = 0, rank: int = 0, world: int = 1, count: int = 40) -> list[tuple[int, int]]:
    sampler = ResumableSampler(ITEMS, batch_size=BATCH, position=DataPosition(position), seed=seed, rank=rank,
                               world_size=world)
    return list(islice(iter(sampler), count))


def test_restart_at_a_batch_continues_the_same_stream() -> None:
    full = _stream(0, count=60)
    for batches in (1, 3, 4, 7):  # 4 and 7 batches cross epoch boundaries (10 items per epoch)
        assert _stream(batches, count=60 - batches * BATCH) == full[batches * BATCH:]


def test_every_epoch_is_a_permutation_and_epochs_differ() -> None:
    full = _stream(0, count=3 * ITEMS)
    epochs = [[i for e, i in full if e == k] for k in range(3)]
    assert all(sorted(order) == list(range(ITEMS)) for order in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert [e for e, _ in full] == [k for k in range(3) for _ in range(ITEMS)]
    assert _stream(0, seed=1) != _stream(0, seed=0)


def test_ranks_share_each_epoch_without_overlap() -> None:
    world = 3
    per_rank = ITEMS // world
    parts = [_stream(0, rank=r, world=world, count=per_rank) for r in range(world)]
    seen = [i for part in parts for _, i in part]
    assert len(seen) == len(set(seen)) == per_rank * world
