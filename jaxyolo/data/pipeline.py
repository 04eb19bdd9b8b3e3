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
Caching (``cache='ram'|'disk'``): the decoded (upright, full-size, uint8) images of a split are kept in host RAM
    (one contiguous buffer) or on disk (one raw file per image, under ``<root>/.jaxyolo-decoded/`` or
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
import hashlib
import math
import os
import weakref
from pathlib import Path

import numpy as np
from jaxyolo.data._tf import dataset_options as _options
from jaxyolo.data._tf import parallel_calls as _parallel
from jaxyolo.data._tf import tf

from jaxyolo.data import decode as D
from jaxyolo.data import transforms as T
from jaxyolo.data.dataset import LOGGER, Dataset, DatasetError

TFDS_SHUFFLE_BUFFER = 16_384
PREFETCH_BATCHES = 2


def _host_batch(batch_size: int, process_count: int, process_index: int) -> int:
    batch_size, process_count = int(batch_size), int(process_count)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"bad process_index/process_count {process_index}/{process_count}")
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
    return batch_size // process_count


def _cache_mode(cache):
    if cache is None or cache is False:
        return None
    if cache is True:
        return "ram"
    c = str(cache).lower()
    if c in ("", "false", "none", "0"):
        return None
    if c in ("ram", "true", "1"):
        return "ram"
    if c == "disk":
        return "disk"
    raise ValueError(f"cache must be False, 'ram' or 'disk', got {cache!r}")


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


# ------------------------------------------------------------------------------------------------ random-access sources


class _Source:
    """Random access (inside a TF graph) to the decoded images of one split (or one host's part of it)."""

    n: int
    labels: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    global_: bool = True  # indices are global (all hosts see the same source)

    def _consts(self):  # eagerly, in the constructor (tensors made while tracing would belong to that graph)
        self._t_labels = tf.constant(np.asarray(self.labels, np.int32))
        self._t_h = tf.constant(np.asarray(self.heights, np.int32))
        self._t_w = tf.constant(np.asarray(self.widths, np.int32))

    def label(self, i):
        return tf.gather(self._t_labels, i)

    def hw(self, i):
        return tf.gather(self._t_h, i), tf.gather(self._t_w, i)

    def image(self, i):
        raise NotImplementedError

    def crop(self, i, top, left, ch, cw):
        return self.image(i)[top : top + ch, left : left + cw]


class _FileSource(_Source):
    def __init__(self, recs):
        self.recs = recs
        self.n = len(recs)
        self.labels, self.heights, self.widths = recs.labels, recs.heights, recs.widths
        self._paths = tf.constant(list(recs.files), dtype=tf.string, shape=[len(recs.files)])
        self._routes = tf.constant(recs.routes.astype(np.int32))
        self._orients = tf.constant(recs.orients.astype(np.int32))
        self._consts()

    def _meta(self, i):
        return tf.gather(self._paths, i), tf.gather(self._routes, i), tf.gather(self._orients, i)

    def image(self, i):
        return D.decode_file(*self._meta(i))

    def crop(self, i, top, left, ch, cw):
        return D.decode_crop_file(*self._meta(i), top, left, ch, cw)


class _RamSource(_Source):
    def __init__(self, flat: np.ndarray, offsets, labels, heights, widths, global_=True):
        self.n = len(labels)
        self.labels, self.heights, self.widths = labels, heights, widths
        self.global_ = global_
        self._flat = tf.constant(flat)
        self._off = tf.constant(np.asarray(offsets, np.int64))
        self._consts()

    def image(self, i):
        h, w = self.hw(i)
        off = tf.gather(self._off, i)
        size = tf.cast(h * w * 3, tf.int64)
        return tf.reshape(self._flat[off : off + size], tf.stack([h, w, 3]))


class _DiskSource(_Source):
    def __init__(self, paths, labels, heights, widths, global_=True):
        self.n = len(labels)
        self.labels, self.heights, self.widths = labels, heights, widths
        self.global_ = global_
        self._paths = tf.constant(list(paths), dtype=tf.string, shape=[len(paths)])
        self._consts()

    def image(self, i):
        h, w = self.hw(i)
        raw = tf.io.decode_raw(tf.io.read_file(tf.gather(self._paths, i)), tf.uint8)
        return tf.reshape(raw, tf.stack([h, w, 3]))


def _ram_available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _decoded_stream(src: _Source, workers):
    ds = tf.data.Dataset.range(src.n).map(src.image, num_parallel_calls=_parallel(workers), deterministic=True)
    return ds.with_options(_options(workers)).prefetch(PREFETCH_BATCHES).as_numpy_iterator()


def _build_ram(src: _Source, what: str, workers) -> _Source:
    need = int(np.sum(src.heights.astype(np.int64) * src.widths.astype(np.int64) * 3))
    avail = _ram_available()
    if need * 1.25 > avail:
        LOGGER.warning(
            f"{what}: cache='ram' needs {need / 2**30:.1f} GiB but {avail / 2**30:.1f} GiB is available; not caching"
        )
        return src
    flat = np.empty(need, np.uint8)
    offsets = np.zeros(src.n, np.int64)
    pos = 0
    for i, img in enumerate(_decoded_stream(src, workers)):
        offsets[i] = pos
        flat[pos : pos + img.size] = img.reshape(-1)
        pos += img.size
    LOGGER.info(f"{what}: cached {src.n} decoded images in RAM ({need / 2**20:.0f} MiB)")
    return _RamSource(flat, offsets, src.labels, src.heights, src.widths, src.global_)


def _disk_dir(root: str | None, tag: str) -> Path:
    from jaxyolo.data.folders import cache_dir

    if root and os.access(root, os.W_OK | os.X_OK):
        return Path(root) / ".jaxyolo-decoded" / tag
    h = hashlib.sha1(f"{root}|{tag}".encode()).hexdigest()[:16]
    return cache_dir() / "decoded" / f"{h}-{tag}"


def _build_disk_files(src: _FileSource, ddir: Path, workers) -> _Source:
    recs = src.recs
    names = []
    for k in range(src.n):
        rel = os.path.relpath(recs.files[k], recs.root)
        key = hashlib.sha1(f"{rel}\0{recs.sizes[k]}\0{recs.mtimes[k]}".encode()).hexdigest()[:24]
        names.append(ddir / f"{key}_{recs.heights[k]}x{recs.widths[k]}.u8")
    missing = [
        k for k, p in enumerate(names)
        if not (p.is_file() and p.stat().st_size == int(recs.heights[k]) * int(recs.widths[k]) * 3)
    ]
    if missing:
        ddir.mkdir(parents=True, exist_ok=True)
        sub = _FileSource(recs.subset(missing))
        for k, img in zip(missing, _decoded_stream(sub, workers)):
            tmp = names[k].with_name(f".{names[k].name}.{os.getpid()}.tmp")
            img.tofile(tmp)
            os.replace(tmp, names[k])
        LOGGER.info(f"{ddir}: cached {len(missing)} decoded images on disk")
    return _DiskSource([str(p) for p in names], src.labels, src.heights, src.widths)


def _folder_source(ds: Dataset, split: str, cache, workers) -> _Source:
    real = ds.resolve_split(split)
    mode = _cache_mode(cache)
    key = ("folder", real, mode)
    if key not in ds._cache:
        base = ds._cache.get(("folder", real, None))
        if base is None:
            base = ds._cache[("folder", real, None)] = _FileSource(ds.records[real])
        if mode == "ram":
            ds._cache[key] = _build_ram(base, f"{ds.source} {real}", workers)
        elif mode == "disk":
            tag = real if ds.root is None else os.path.relpath(ds.records[real].root, ds.root).replace(os.sep, "_")
            tag = real if tag in (".", "") else f"{real}-{tag}"
            ds._cache[key] = _build_disk_files(base, _disk_dir(ds.root, tag), workers)
        else:
            return base
    return ds._cache[key]


# ------------------------------------------------------------------------------------------------------- TFDS helpers


def _tfds_host_split(ds: Dataset, split: str, process_index: int, process_count: int, drop_remainder: bool):
    import tensorflow_datasets as tfds

    real = ds.resolve_split(split)
    base = ds.tfds_splits[real]
    if process_count == 1:
        arg = base
    else:
        arg = tfds.split_for_jax_process(
            base, process_index=process_index, process_count=process_count, drop_remainder=drop_remainder
        )
    n = ds.tfds_builder.info.splits[arg].num_examples
    return arg, n


def _tfds_read(ds: Dataset, split_arg, shuffle_seed=None):
    import tensorflow_datasets as tfds

    rc = tfds.ReadConfig(
        shuffle_seed=shuffle_seed, shuffle_reshuffle_each_iteration=False, try_autocache=False,
        interleave_cycle_length=4 if shuffle_seed is not None else 1,
    )
    data = ds.tfds_builder.as_dataset(
        split=split_arg,
        shuffle_files=shuffle_seed is not None,
        decoders={ds.image_key: tfds.decode.SkipDecoding()},
        read_config=rc,
    )
    ik, lk = ds.image_key, ds.label_key
    return data.map(lambda ex: (ex[ik], tf.cast(ex[lk], tf.int32)))


def _tfds_cached_source(ds: Dataset, split: str, cache, process_index, process_count, workers) -> _Source:
    """Decode one host's part of a TFDS split into RAM or disk (natural order); random access afterwards."""
    mode = _cache_mode(cache)
    drop = split == "train"
    arg, n = _tfds_host_split(ds, split, process_index, process_count, drop_remainder=drop)
    key = ("tfds", str(arg), mode)
    if key in ds._cache:
        return ds._cache[key]
    info = ds.tfds_builder.info
    tag = hashlib.sha1(f"{info.full_name}|{arg}".encode()).hexdigest()[:16]
    ddir = _disk_dir(None, f"tfds-{info.name}-{tag}") if mode == "disk" else None
    meta = ddir / "meta.npz" if ddir else None
    if meta is not None and meta.is_file():
        m = np.load(meta)
        paths = [str(ddir / f"{i}.u8") for i in range(len(m["labels"]))]
        src = _DiskSource(paths, m["labels"], m["heights"], m["widths"], global_=False)
        ds._cache[key] = src
        return src
    stream = _tfds_read(ds, arg).map(
        lambda data, y: (D.decode_bytes(data), y), num_parallel_calls=_parallel(workers), deterministic=True
    )
    labels, hs, ws, chunks, paths = [], [], [], [], []
    if ddir is not None:
        ddir.mkdir(parents=True, exist_ok=True)
    stream = stream.with_options(_options(workers)).prefetch(PREFETCH_BATCHES)
    for i, (img, y) in enumerate(stream.as_numpy_iterator()):
        labels.append(int(y))
        hs.append(img.shape[0])
        ws.append(img.shape[1])
        if ddir is None:
            chunks.append(img.reshape(-1))
        else:
            p = ddir / f"{i}.u8"
            img.tofile(p)
            paths.append(str(p))
    labels, hs, ws = np.array(labels, np.int32), np.array(hs, np.int32), np.array(ws, np.int32)
    if ddir is None:
        sizes = np.array([c.size for c in chunks], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else np.zeros(0, np.int64)
        flat = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        src = _RamSource(flat, offsets, labels, hs, ws, global_=False)
    else:
        np.savez(meta, labels=labels, heights=hs, widths=ws)
        src = _DiskSource(paths, labels, hs, ws, global_=False)
    LOGGER.info(f"{ds.source} {split}: cached {len(labels)} decoded images ({mode})")
    ds._cache[key] = src
    return src


# ------------------------------------------------------------------------------------------------------------ public


def num_train_batches(ds: Dataset, batch_size: int) -> int:
    """Train batches per epoch (global batch_size, drop_remainder)."""
    return int(ds.splits["train"]) // int(batch_size)


def _aug_key(imgsz, aug, seed, extra=()):
    return (T.parse_imgsz(imgsz), tuple(sorted((k, str(v)) for k, v in aug.items())), int(seed)) + tuple(extra)


def _train_map(cache: dict, src: _Source, imgsz, aug, seed, index_offset=0):
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


def _eval_map(cache: dict, src: _Source, size_hw):
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
    mode = _cache_mode(cache)
    par = _parallel(workers)
    if ds.kind == "folder" or mode is not None:
        if ds.kind == "folder":
            src = _folder_source(ds, "train", cache, workers)
            perm = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(src.n)
            sel = perm[: nb * batch_size].reshape(nb, process_count, b)[start_batch:, process_index].reshape(-1)
            offset = 0
        else:
            src = _tfds_cached_source(ds, "train", cache, process_index, process_count, workers)
            perm = np.random.default_rng(
                np.random.SeedSequence([int(seed), int(epoch), int(process_index)])).permutation(src.n)
            sel = perm[: nb * b].reshape(nb, b)[start_batch:].reshape(-1)
            offset = int(process_index) << 32
        data = tf.data.Dataset.from_tensor_slices((sel.astype(np.int64), np.full(len(sel), int(epoch), np.int64)))
        data = data.map(_train_map(ds._cache, src, imgsz, aug, seed, offset), num_parallel_calls=par,
                        deterministic=True)
    else:  # streaming TFDS
        arg, n_host = _tfds_host_split(ds, "train", process_index, process_count, drop_remainder=True)
        sseed = _rng_seed(seed, epoch, process_index)
        data = _tfds_read(ds, arg, shuffle_seed=sseed).enumerate()
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
    mode = _cache_mode(cache)
    par = _parallel(workers)
    zeros = tf.zeros([th, tw, 3], tf.uint8)
    if ds.kind == "folder" or mode is not None:
        if ds.kind == "folder":
            src = _folder_source(ds, split, cache, workers)
            nbe = max(1, math.ceil(src.n / batch_size))
            idx = np.full(nbe * batch_size, -1, np.int64)
            idx[: src.n] = np.arange(src.n)
            sel = idx.reshape(nbe, process_count, b)[:, process_index].reshape(-1)
        else:
            src = _tfds_cached_source(ds, split, cache, process_index, process_count, workers)
            counts = [_tfds_host_split(ds, split, p, process_count, False)[1] for p in range(process_count)]
            nbe = max(1, math.ceil(max(counts) / b))
            sel = np.full(nbe * b, -1, np.int64)
            sel[: src.n] = np.arange(src.n)

        fn = _eval_map(ds._cache, src, (th, tw))

        data = tf.data.Dataset.from_tensor_slices(sel).map(fn, num_parallel_calls=par, deterministic=True)
    else:
        arg, n_host = _tfds_host_split(ds, split, process_index, process_count, drop_remainder=False)
        counts = [_tfds_host_split(ds, split, p, process_count, False)[1] for p in range(process_count)]
        nbe = max(1, math.ceil(max(counts) / b))
        size = (th, tw) if th != tw else th

        def fn(raw, y):
            return T.eval_transform(D.decode_bytes(raw), size), y, tf.constant(True)

        data = _tfds_read(ds, arg).map(fn, num_parallel_calls=par, deterministic=True)
        pad = nbe * b - n_host
        if pad:
            data = data.concatenate(
                tf.data.Dataset.from_tensors((zeros, tf.constant(0, tf.int32), tf.constant(False))).repeat(pad)
            )
    data = data.batch(b, drop_remainder=False).with_options(_options(workers)).prefetch(PREFETCH_BATCHES)
    return _numpy_iter(data)
