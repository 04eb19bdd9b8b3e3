"""Background work for the trainer: the next epoch's batches, and weight files, are prepared off the main thread.

``EpochPrefetcher`` builds each epoch's batch iterator (``data.train_batches``: the host route's thread pool, or a
tf.data iterator) on a background thread, one epoch ahead, and buffers a few host batches (more once ``deepen``d),
so starting the pipeline (seconds for tf.data's augmentation graph on the first epoch) overlaps model initialisation
and XLA compilation, and starting the next epoch's iterator overlaps validation. The batches, their order and their
content are exactly those of ``make_epoch(epoch, start_batch)``: only *when* they are produced changes.

``BackgroundWriter`` runs file writes (``last.pt`` / ``best.pt``, plots, TensorBoard scalars) one at a time on a
worker thread; ``wait()`` re-raises the first failure, and every file write is atomic (the writers themselves write
to a temp file and rename).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

_BATCH, _END, _ERROR = 0, 1, 2


class EpochPrefetcher:
    """Batches of epochs ``start_epoch .. end_epoch - 1`` (the first from ``first_batch``), produced ahead."""

    def __init__(self, make_epoch: Callable[[int, int], Iterator], start_epoch: int, end_epoch: int,
                 first_batch: int = 0, depth: int = 4):
        self._make = make_epoch
        self._range = (int(start_epoch), int(end_epoch), int(first_batch))
        self._q: queue.Queue = queue.Queue()
        self._limit = max(1, int(depth))  # items waiting in _q at most (``deepen``)
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._next_epoch = int(start_epoch)
        self._thread = threading.Thread(target=self._run, name="jaxyolo-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        with self._room:
            while self._q.qsize() >= self._limit and not self._stop.is_set():
                self._room.wait(timeout=0.1)
        if self._stop.is_set():
            return False
        self._q.put(item)
        return True

    def deepen(self, depth: int) -> None:
        """Let up to ``depth`` batches wait from now on (never fewer than before). The trainer deepens the buffer once
        its eval step has compiled: while the train step's compilation keeps one core busy, the other then makes
        batches ahead instead of idling (a digits run's whole augmentation, ~0.7 s of CPU, which on 2 cores added
        its full time to the train steps it ran beside)."""
        with self._room:
            self._limit = max(self._limit, int(depth))
            self._room.notify_all()

    def _run(self) -> None:
        start, end, first = self._range
        for epoch in range(start, end):
            try:
                for batch in self._make(epoch, first if epoch == start else 0):
                    if not self._put((_BATCH, epoch, batch)):
                        return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
                self._put((_ERROR, epoch, e))
                return
            if not self._put((_END, epoch, None)):
                return

    def epoch(self, epoch: int) -> Iterator:
        """The batches of ``epoch``; epochs must be consumed in order, each completely (or ``close()`` after)."""
        if epoch != self._next_epoch:
            raise RuntimeError(f"prefetcher: asked for epoch {epoch}, next is {self._next_epoch}")
        self._next_epoch += 1
        while True:
            kind, e, payload = self._q.get()
            with self._room:
                self._room.notify()
            if kind == _ERROR:
                raise payload
            if e != epoch:  # cannot happen when epochs are consumed completely and in order
                raise RuntimeError(f"prefetcher: got a batch of epoch {e} while reading epoch {epoch}")
            if kind == _END:
                return
            yield payload

    def close(self) -> None:
        """Stop producing (early stopping, errors, SIGTERM) and let the thread exit."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


class BackgroundWriter:
    """Runs write jobs in submission order on one worker thread; ``wait()`` blocks and re-raises the first error."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxyolo-writer")
        self._jobs: list[Future] = []

    def submit(self, fn, *args, **kwargs) -> None:
        self._check()
        self._jobs.append(self._pool.submit(fn, *args, **kwargs))

    def _check(self) -> None:
        done = [f for f in self._jobs if f.done()]
        self._jobs = [f for f in self._jobs if not f.done()]
        for f in done:
            f.result()  # re-raise a failed write here, in the trainer's thread

    def wait(self) -> None:
        jobs, self._jobs = self._jobs, []
        for f in jobs:
            f.result()

    def close(self) -> None:
        """Finish pending writes without raising (``wait()`` is where errors surface on the normal path)."""
        self._pool.shutdown(wait=True)
        self._jobs = []
