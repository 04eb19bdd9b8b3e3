"""Validation: top-1, top-5, loss, fitness and the confusion matrix, counting every image exactly once."""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from jaxyolo import parallel
from jaxyolo.engine.steps import make_eval_step
from jaxyolo.nn.cpu_conv import inference_jit

LOGGER = logging.getLogger("jaxyolo")


@dataclass
class ClassifyMetrics:
    """Ultralytics-compatible metrics: ``top1``, ``top5``, ``fitness``, ``confusion_matrix`` ([pred, true]), ``speed``."""

    top1: float = 0.0
    top5: float = 0.0
    loss: float = 0.0
    n: int = 0
    confusion_matrix: np.ndarray | None = None
    speed: dict = field(default_factory=dict)
    save_dir: Path | None = None  # the run directory: train's, or val's when plots were saved

    @property
    def fitness(self) -> float:
        return (self.top1 + self.top5) / 2

    @property
    def results_dict(self) -> dict:
        return {"metrics/accuracy_top1": self.top1, "metrics/accuracy_top5": self.top5, "fitness": self.fitness}

    def summary_line(self) -> str:
        return f"top1_acc {self.top1:.3f}  top5_acc {self.top5:.3f}  ({self.n} images)"


class Evaluator:
    """Compiles the eval step once for a model/mesh and evaluates variables on a dataset split."""

    def __init__(self, module, nc: int, mesh=None, dtype=None, prepare=None, quick: bool = False):
        """``prepare``: traced inside the step on the variables it is given, returning the model's variables (the
        trainer passes the flat EMA and ``FlatLayout.unravel_variables``); ``quick``: compiled with less optimisation
        (``cpu_options.quick_compile``: the trainer's short runs)."""
        import jax.numpy as jnp

        self.mesh = mesh or parallel.make_mesh()
        self.nc = nc
        self.batch_sharding = parallel.data_sharding(self.mesh)
        step = make_eval_step(module, nc, dtype or jnp.float32)
        if prepare is not None:
            inner = step

            def step(variables, *batch):
                return inner(prepare(variables), *batch)

        self._step = inference_jit(step, quick, out_shardings=parallel.replicated(self.mesh))

    def warm_up(self, variables, batch: int, size_hw: tuple[int, int]) -> None:
        """Compile the step for global eval batches of ``batch`` images of ``size_hw`` (ahead of the first use)."""
        import jax.numpy as jnp

        sds, sh = jax.ShapeDtypeStruct, self.batch_sharding
        self._step.lower(variables, sds((batch, *size_hw, 3), jnp.uint8, sharding=sh),
                         sds((batch,), jnp.int32, sharding=sh), sds((batch,), jnp.bool_, sharding=sh)).compile()

    def __call__(self, variables, batches) -> ClassifyMetrics:
        t0 = time.perf_counter()
        outs = []  # summed on the host at the end: no per-batch sync, and no device adds to compile (a first run's)
        for images, labels, mask in batches:
            imgs, labs, msk = parallel.global_batch(self.batch_sharding, images, labels, mask)
            outs.append(self._step(variables, imgs, labs, msk))
        if not outs:
            raise ValueError("validation split is empty")
        tot = jax.tree.map(lambda *xs: functools.reduce(np.add, map(np.asarray, xs)), *outs)
        n = int(tot["n"])
        dt = (time.perf_counter() - t0) * 1000 / max(n, 1)
        return ClassifyMetrics(top1=float(tot["top1"] / n), top5=float(tot["top5"] / n), loss=float(tot["loss"] / n),
                               n=n, confusion_matrix=tot["cm"], speed={"inference": dt})


class KeptBatches:
    """Iterable eval batches of one split: read through ``make()`` (the tf.data pipeline) the first time, and kept in
    host memory for the next passes when they total at most ``limit_bytes`` (the trainer validates every epoch; the
    eval transform is deterministic, so every pass sees identical batches, and a small split no longer pays a
    pipeline start, decoding and resizing per epoch). Larger splits stream every time.

    ``read_ahead()`` makes that first pass on a background thread (the trainer starts it with the first epoch, so the
    first validation does not wait for the eval pipeline to be built and run); the batches are the same."""

    def __init__(self, make, limit_bytes: int = 256 << 20):
        self._make, self._limit = make, int(limit_bytes)
        self._kept: list | None = None
        self._reader: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()

    def read_ahead(self) -> None:
        if self._kept is None and self._reader is None:
            self._reader = threading.Thread(target=self._read, name="jaxyolo-val-read", daemon=True)
            self._reader.start()

    def _read(self) -> None:
        it = iter(self._make())
        try:
            kept, size = [], 0
            for b in it:
                size += sum(np.asarray(a).nbytes for a in b)
                if size > self._limit or self._stop.is_set():
                    return  # too large to keep (the first pass streams), or closed
                kept.append(b)
            self._kept = kept
        except BaseException as e:  # noqa: BLE001 - raised where the batches are used
            self._error = e
        finally:
            getattr(it, "close", lambda: None)()

    def close(self) -> None:
        """Stop a read-ahead still running (early stop, errors) and wait for its thread."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join()

    def __iter__(self):
        if self._reader is not None:
            self._reader.join()
            self._reader = None
            if self._error is not None:
                error, self._error = self._error, None
                raise error
        if self._kept is not None:
            yield from self._kept
            return
        kept, size = [], 0
        for b in self._make():
            if kept is not None:
                size += sum(np.asarray(a).nbytes for a in b)
                if size <= self._limit:
                    kept.append(b)
                else:
                    kept = None
            yield b
        self._kept = kept  # only reached when the pass ran to the end


def eval_batch_size(batch: int, n_dev: int) -> int:
    """The global eval batch actually used: a positive multiple of the device count."""
    return max(n_dev, batch // n_dev * n_dev)


def split_batches(ds, split: str, imgsz, batch: int, n_dev: int, cache=False, workers: int = 0):
    """This host's eval batches of ``split`` (an iterator), global ``batch`` rounded to the device count."""
    from jaxyolo import data

    return data.eval_batches(ds, split, imgsz=imgsz, batch_size=eval_batch_size(batch, n_dev),
                             process_index=jax.process_index(), process_count=jax.process_count(), cache=cache,
                             workers=workers)


def validate(module, variables, ds, split: str, imgsz, batch: int, mesh=None, cache=False, workers: int = 0,
             evaluator: Evaluator | None = None) -> ClassifyMetrics:
    """Evaluate ``variables`` on ``split`` of a loaded dataset (global ``batch`` over all devices and hosts). A new
    evaluator compiles before the clock starts, so ``speed`` excludes it (as Ultralytics' excludes its warmup)."""
    from jaxyolo.data.host_eval import parse_hw

    new = evaluator is None
    evaluator = evaluator or Evaluator(module, ds.nc, mesh)
    n_dev = evaluator.mesh.devices.size
    if new:
        try:
            evaluator.warm_up(variables, eval_batch_size(batch, n_dev), parse_hw(imgsz))
        except Exception as e:  # noqa: BLE001  (only an optimisation: the step then compiles on first use)
            LOGGER.debug(f"ahead-of-time compilation skipped: {e}")
    return evaluator(variables, split_batches(ds, split, imgsz, batch, n_dev, cache, workers))


def validate_exported(runner, nc: int, ds, split: str, imgsz, batch: int, cache=False, workers: int = 0
                      ) -> ClassifyMetrics:
    """Evaluate an exported model (``runner``: numpy NHWC uint8 in, probabilities out) on ``split``, on the host."""
    from jaxyolo import data

    cm = np.zeros((nc, nc), np.int64)
    top1 = top5 = n = 0
    loss = 0.0
    t0 = time.perf_counter()
    for images, labels, mask in data.eval_batches(ds, split, imgsz=imgsz, batch_size=batch, cache=cache,
                                                  workers=workers):
        m = np.asarray(mask, bool)
        if not m.any():
            continue
        p = runner(np.asarray(images)[m])
        y = np.asarray(labels)[m].astype(np.int64)
        order = np.argsort(-p, axis=1, kind="stable")[:, :5]
        top1 += int((order[:, 0] == y).sum())
        top5 += int((order == y[:, None]).any(1).sum())
        loss += float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).sum())
        np.add.at(cm, (order[:, 0], y), 1)
        n += len(y)
    if n == 0:
        raise ValueError(f"{ds.source}: the {split} split is empty")
    dt = (time.perf_counter() - t0) * 1000 / n
    return ClassifyMetrics(top1=top1 / n, top5=top5 / n, loss=loss / n, n=n, confusion_matrix=cm,
                           speed={"inference": dt})
