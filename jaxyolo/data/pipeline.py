"""tf.data input pipelines: seeded, resumable, host-sharded train batches and exactly-once eval batches.

Order and randomness
    Train: the epoch's order is the ``numpy.random.default_rng(SeedSequence([seed, epoch]))`` permutation of the
    split (folders; cached TFDS: per host, ``[seed, epoch, process_index]``) or a seeded file + buffer shuffle
    (streaming TFDS, buffer 16,384); every random draw of an example is
    stateless, keyed by (seed, epoch, example index) (``transforms.example_seed``). Batches therefore do not depend
    on threads, processes or machines, and ``start_batch=k`` yields exactly batches k.. of the full epoch.
Multi-host
    ``batch_size`` is global. Image folders: global batch g of the permutation is ``perm[g*B:(g+1)*B]`` and host p
    takes the p-th contiguous ``B // process_count`` slice of it. TFDS: ``tfds.split_for_jax_process`` gives each
    host its part of the split (train: ``drop_remainder=True``, equal parts; eval: every example once).
Eval
    Natural order, the last batch padded (zeros, label 0) with ``mask=False``; every host yields the same number of
    batches and over all hosts every image appears exactly once with ``mask=True``.
Caching (``cache='ram'|'disk'``, ``sources.py``): the decoded (upright, full-size, uint8) images of a split are kept
    in host RAM (one contiguous buffer) or on disk (one raw file per image, under ``<root>/.jaxyolo-decoded/`` or
    ``$JAXYOLO_CACHE_DIR/decoded/``), built on first use; augmentation still runs every epoch.
Cost
    The per-example map functions are traced once per (dataset, split, imgsz, aug, seed) and reused by later epochs;
    each epoch's iterator still takes ~0.5-1 s to start (TF instantiates the function graph); the trainer builds it
    one epoch ahead on a background thread (``engine/prefetch.py``). With host augmentation (RandAugment, the
    default) the crops are batched ragged and augmented by one Python call per batch (``T.batch_train``).
Threads: ``workers`` parallel map calls in a private pool of ``workers`` threads (``workers=0``: one per CPU
    core), then ``PREFETCH_BATCHES`` batches prefetched; tf.data's autotuner is off (``_tf.dataset_options`` says
    why; larger pools/more calls were measured without a consistent gain on 2 cores).
"""

from __future__ import annotations

import atexit
import math
import weakref

import numpy as np
from jaxyolo.data._tf import PREFETCH_BATCHES
from jaxyolo.data._tf import dataset_options as _options
from jaxyolo.data._tf import parallel_calls as _parallel
from jaxyolo.data._tf import tf

from jaxyolo.data import decode as D
from jaxyolo.data import transforms as T
from jaxyolo.data.dataset import Dataset, DatasetError, num_train_batches
from jaxyolo.data.sources import (Source, cache_mode, folder_source, tfds_cached_source, tfds_host_split,
                                  tfds_read)

TFDS_SHUFFLE_BUFFER = 16_384


def _host_batch(batch_size: int, process_count: int, process_index: int) -> int:
    batch_size, process_count = int(batch_size), int(process_count)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"bad process_index/process_count {process_index}/{process_count}")
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
    return batch_size // process_count


def _rng_seed(*xs) -> int:
    return int(np.random.SeedSequence([int(x) & 0xFFFFFFFF for x in xs]).generate_state(1)[0] & 0x7FFFFFFF)


_LIVE_ITERATORS: "weakref.WeakSet" = weakref.WeakSet()


def _numpy_iter(dataset):
    """Batches as numpy. The iterator is closed at interpreter exit if its consumer left it unfinished: the train map
    calls Python (``tf.numpy_function``), so tearing a running tf.data iterator down during finalisation, when its
    threads can no longer take the GIL, would hang the process."""
    it = _batches(dataset)
    _LIVE_ITERATORS.add(it)
    return it


def _batches(dataset):
    for batch in dataset.as_numpy_iterator():
        yield batch


@atexit.register
def _close_live_iterators() -> None:
    for it in list(_LIVE_ITERATORS):
        try:
            it.close()
        except ValueError:  # being advanced by another thread right now: that thread's owner closes it
            pass


def _aug_key(imgsz, aug, seed, extra=()):
    return (T.parse_imgsz(imgsz), tuple(sorted((k, str(v)) for k, v in aug.items())), int(seed)) + tuple(extra)


def _train_map(cache: dict, src: Source, imgsz, aug, seed, index_offset=0):
    """fn(i, epoch) -> (``T.train_example``, label), traced once per (source, imgsz, aug, seed) and reused."""
    key = ("train_fn", id(src)) + _aug_key(imgsz, aug, seed, (index_offset,))
    if key not in cache:

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)], autograph=False)
        def fn(i, epoch):
            k = T.example_seed(seed, epoch, i + index_offset)
            h, w = src.hw(i)
            img = T.train_example(lambda t, l, ch, cw: src.crop(i, t, l, ch, cw), h, w, k, imgsz, aug)
            return img, src.label(i)

        cache[key] = (fn, src)  # keep src alive: id() must not be reused
    return cache[key][0]


def _eval_map(cache: dict, src: Source, size_hw):
    """fn(i) -> (image, label, mask); i < 0 is padding (zeros, label 0, mask False). Traced once per source/size."""
    key = ("eval_fn", id(src), size_hw)
    if key not in cache:
        th, tw = size_hw
        size = (th, tw) if th != tw else th

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64)], autograph=False)
        def fn(i):
            valid = i >= 0
            j = tf.maximum(i, 0)
            img = tf.cond(valid, lambda: T.eval_transform(src.image(j), size),
                          lambda: tf.zeros([th, tw, 3], tf.uint8))
            return img, tf.where(valid, src.label(j), 0), valid

        cache[key] = (fn, src)
    return cache[key][0]


def _tfds_train_map(cache: dict, imgsz, aug, seed, index_offset):
    """fn(i, encoded, label, epoch) -> (``T.train_example``, label) for streaming TFDS, traced once and reused."""
    key = ("tfds_train_fn",) + _aug_key(imgsz, aug, seed, (index_offset,))
    if key not in cache:
        sig = [tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
               tf.TensorSpec([], tf.int64)]

        @tf.function(input_signature=sig, autograph=False)
        def fn(i, raw, y, epoch):
            k = T.example_seed(seed, epoch, i + index_offset)
            img = D.decode_bytes(raw)
            shape = tf.shape(img)
            out = T.train_example(lambda t, l, ch, cw: img[t : t + ch, l : l + cw], shape[0], shape[1], k,
                                    imgsz, aug)
            return out, y

        cache[key] = fn
    return cache[key]


def train_batches(ds: Dataset, *, imgsz, batch_size: int, seed: int, epoch: int, start_batch: int = 0, aug: dict,
                  process_index: int = 0, process_count: int = 1, cache=False, workers: int = 0):
    """Iterator (one epoch) of (images uint8 [b,h,w,3], labels int32 [b]) host-local batches, b = batch_size //
    process_count, drop_remainder; ``aug`` holds Ultralytics keys (scale, fliplr, flipud, auto_augment, hsv_h, hsv_s,
    hsv_v, erasing). ``start_batch`` skips already-seen batches of this epoch (exact resume)."""
    b = _host_batch(batch_size, process_count, process_index)
    nb = num_train_batches(ds, batch_size)
    if nb == 0:
        raise DatasetError(
            f"{ds.source}: batch size {batch_size} is larger than the training set ({ds.splits['train']} images)"
        )
    start_batch = int(start_batch)
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    aug = dict(aug or {})
    T.parse_imgsz(imgsz)
    if start_batch >= nb:
        return iter(())
    mode = cache_mode(cache)
    par = _parallel(workers)
    if ds.kind == "folder" or mode is not None:
        if ds.kind == "folder":
            src = folder_source(ds, "train", cache, workers)
            perm = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(src.n)
            sel = perm[: nb * batch_size].reshape(nb, process_count, b)[start_batch:, process_index].reshape(-1)
            offset = 0
        else:
            src = tfds_cached_source(ds, "train", cache, process_index, process_count, workers)
            perm = np.random.default_rng(
                np.random.SeedSequence([int(seed), int(epoch), int(process_index)])).permutation(src.n)
            sel = perm[: nb * b].reshape(nb, b)[start_batch:].reshape(-1)
            offset = int(process_index) << 32
        data = tf.data.Dataset.from_tensor_slices((sel.astype(np.int64), np.full(len(sel), int(epoch), np.int64)))
        data = data.map(_train_map(ds._cache, src, imgsz, aug, seed, offset), num_parallel_calls=par,
                        deterministic=True)
    else:  # streaming TFDS
        arg, n_host = tfds_host_split(ds, "train", process_index, process_count, drop_remainder=True)
        sseed = _rng_seed(seed, epoch, process_index)
        data = tfds_read(ds, arg, shuffle_seed=sseed).enumerate()
        data = data.shuffle(min(n_host, TFDS_SHUFFLE_BUFFER), seed=sseed, reshuffle_each_iteration=False)
        data = data.take(nb * b).skip(start_batch * b)
        data = data.map(lambda i, item: (i, item[0], item[1], tf.constant(int(epoch), tf.int64)))
        data = data.map(_tfds_train_map(ds._cache, imgsz, aug, seed, int(process_index) << 32),
                        num_parallel_calls=par, deterministic=True)
    data = T.batch_train(data, b, imgsz, aug, par).with_options(_options(workers)).prefetch(PREFETCH_BATCHES)
    return _numpy_iter(data)


def eval_batches(ds: Dataset, split: str, *, imgsz, batch_size: int, process_index: int = 0,
                 process_count: int = 1, cache=False, workers: int = 0):
    """Iterator of (images uint8 [b,h,w,3], labels int32 [b], mask bool [b]) host-local batches in natural order;
    the last batch(es) padded with mask False; over all hosts every image appears exactly once with mask True."""
    b = _host_batch(batch_size, process_count, process_index)
    th, tw = T.parse_imgsz(imgsz)
    mode = cache_mode(cache)
    par = _parallel(workers)
    zeros = tf.zeros([th, tw, 3], tf.uint8)
    if ds.kind == "folder" or mode is not None:
        if ds.kind == "folder":
            src = folder_source(ds, split, cache, workers)
            nbe = max(1, math.ceil(src.n / batch_size))
            idx = np.full(nbe * batch_size, -1, np.int64)
            idx[: src.n] = np.arange(src.n)
            sel = idx.reshape(nbe, process_count, b)[:, process_index].reshape(-1)
        else:
            src = tfds_cached_source(ds, split, cache, process_index, process_count, workers)
            counts = [tfds_host_split(ds, split, p, process_count, False)[1] for p in range(process_count)]
            nbe = max(1, math.ceil(max(counts) / b))
            sel = np.full(nbe * b, -1, np.int64)
            sel[: src.n] = np.arange(src.n)

        fn = _eval_map(ds._cache, src, (th, tw))

        data = tf.data.Dataset.from_tensor_slices(sel).map(fn, num_parallel_calls=par, deterministic=True)
    else:
        arg, n_host = tfds_host_split(ds, split, process_index, process_count, drop_remainder=False)
        counts = [tfds_host_split(ds, split, p, process_count, False)[1] for p in range(process_count)]
        nbe = max(1, math.ceil(max(counts) / b))
        size = (th, tw) if th != tw else th

        def fn(raw, y):
            return T.eval_transform(D.decode_bytes(raw), size), y, tf.constant(True)

        data = tfds_read(ds, arg).map(fn, num_parallel_calls=par, deterministic=True)
        pad = nbe * b - n_host
        if pad:
            data = data.concatenate(
                tf.data.Dataset.from_tensors((zeros, tf.constant(0, tf.int32), tf.constant(False))).repeat(pad)
            )
    data = data.batch(b, drop_remainder=False).with_options(_options(workers)).prefetch(PREFETCH_BATCHES)
    return _numpy_iter(data)
