"""engine/prefetch.py: EpochPrefetcher hands out exactly ``make_epoch``'s batches, in order, holds at most its depth
of them ahead until ``deepen`` lets it run further, passes errors on, and stops on ``close``."""

import time

import pytest

from jaxyolo.engine.prefetch import EpochPrefetcher


def _maker(made: list, fail_at=None):
    def make_epoch(epoch, start_batch):
        for b in range(start_batch, 5):
            if (epoch, b) == fail_at:
                raise OSError(f"unreadable batch {b}")
            made.append((epoch, b))
            yield (epoch, b)

    return make_epoch


def _settle(made: list, timeout: float = 2.0) -> int:
    """The producer's count once it has stopped growing (it blocks on the depth limit)."""
    end, n = time.time() + timeout, -1
    while time.time() < end:
        if len(made) == n:
            return n
        n = len(made)
        time.sleep(0.1)
    return len(made)


def test_batches_order_depth_and_deepen():
    made: list = []
    p = EpochPrefetcher(_maker(made), 1, 4, first_batch=2, depth=2)
    try:
        assert _settle(made) <= 3  # 2 waiting in the buffer, at most one more in the producer's hand
        p.deepen(100)  # room for the rest: the producer runs to the end without anything being consumed
        assert _settle(made) == 3 + 5 + 5  # epoch 1 from batch 2, then epochs 2 and 3
        got = [list(p.epoch(e)) for e in (1, 2, 3)]
        assert got == [[(1, b) for b in range(2, 5)], [(2, b) for b in range(5)], [(3, b) for b in range(5)]]
        with pytest.raises(RuntimeError, match="asked for epoch 1, next is 4"):
            next(iter(p.epoch(1)))
    finally:
        p.close()


def test_errors_reach_the_consumer_and_close_stops_the_producer():
    made: list = []
    p = EpochPrefetcher(_maker(made, fail_at=(0, 3)), 0, 2, depth=1)
    it = p.epoch(0)
    assert [next(it), next(it), next(it)] == [(0, 0), (0, 1), (0, 2)]
    with pytest.raises(OSError, match="unreadable batch 3"):
        next(it)
    p.close()
    q = EpochPrefetcher(_maker([]), 0, 1000, depth=1)  # blocked on a full buffer: close() still ends its thread
    time.sleep(0.2)
    q.close()
    assert not q._thread.is_alive()
