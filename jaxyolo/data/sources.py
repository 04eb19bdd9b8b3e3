"""Random access, inside a TF graph, to the decoded images of one split: from the files, from a RAM cache (one
contiguous buffer) or from a disk cache (one raw file per image), and the TFDS readers (per-host split, cached
source). ``pipeline.py`` builds the train and eval batches on top of these.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from jaxyolo.data._tf import PREFETCH_BATCHES
from jaxyolo.data._tf import dataset_options as _options
from jaxyolo.data._tf import parallel_calls as _parallel
from jaxyolo.data._tf import tf

from jaxyolo.data import decode as D
from jaxyolo.data.dataset import cache_mode  # noqa: F401  (sources.cache_mode, as before)
from jaxyolo.data.dataset import LOGGER, Dataset


class Source:
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


class _FileSource(Source):
    def __init__(self, recs):
        self.recs = recs
        self.n = len(recs)
        self.labels, self.heights, self.widths = recs.labels, recs.heights, recs.widths
        self._paths = tf.constant(list(recs.files), dtype=tf.string, shape=[len(recs.files)])
        self._routes = tf.constant(recs.routes.astype(np.int32))
        self._orients = tf.constant(recs.orients.astype(np.int32))
        routes = np.unique(recs.routes)
        # trace-time facts: one decode route for every file, no EXIF rotation anywhere (decode.decode_file)
        self._static = {"static_route": int(routes[0]) if len(routes) == 1 else None,
                        "upright": bool(np.all(np.asarray(recs.orients) <= 1))}
        self._consts()

    def _meta(self, i):
        return tf.gather(self._paths, i), tf.gather(self._routes, i), tf.gather(self._orients, i)

    def image(self, i):
        return D.decode_file(*self._meta(i), **self._static)

    def crop(self, i, top, left, ch, cw):
        return D.decode_crop_file(*self._meta(i), top, left, ch, cw, **self._static)


class _RamSource(Source):
    def __init__(self, flat: np.ndarray, offsets, labels, heights, widths, global_=True):
        self.n = len(labels)
        self.labels, self.heights, self.widths = labels, heights, widths
        self.global_ = global_
        self._flat = tf.constant(flat)
        self._flat_np, self._off_np = flat, np.asarray(offsets, np.int64)
        self._off = tf.constant(np.asarray(offsets, np.int64))
        self._consts()

    def numpy_image(self, i: int) -> np.ndarray:
        h, w = int(self.heights[i]), int(self.widths[i])
        off = int(self._off_np[i])
        return self._flat_np[off : off + h * w * 3].reshape(h, w, 3)

    def image(self, i):
        h, w = self.hw(i)
        off = tf.gather(self._off, i)
        size = tf.cast(h * w * 3, tf.int64)
        return tf.reshape(self._flat[off : off + size], tf.stack([h, w, 3]))


class _DiskSource(Source):
    def __init__(self, paths, labels, heights, widths, global_=True):
        self.n = len(labels)
        self.labels, self.heights, self.widths = labels, heights, widths
        self.global_ = global_
        self._paths = tf.constant(list(paths), dtype=tf.string, shape=[len(paths)])
        self._path_list = [str(p) for p in paths]
        self._consts()

    def numpy_image(self, i: int) -> np.ndarray:
        h, w = int(self.heights[i]), int(self.widths[i])
        return np.fromfile(self._path_list[i], np.uint8).reshape(h, w, 3)

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


def _decoded_stream(src: Source, workers):
    ds = tf.data.Dataset.range(src.n).map(src.image, num_parallel_calls=_parallel(workers), deterministic=True)
    return ds.with_options(_options(workers)).prefetch(PREFETCH_BATCHES).as_numpy_iterator()


def _build_ram(src: Source, what: str, workers) -> Source:
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


def _build_disk_files(src: _FileSource, ddir: Path, workers) -> Source:
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


def folder_source(ds: Dataset, split: str, cache, workers) -> Source:
    real = ds.resolve_split(split)
    mode = cache_mode(cache)
    ds.wait_files()
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


def tfds_host_split(ds: Dataset, split: str, process_index: int, process_count: int, drop_remainder: bool):
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


def tfds_read(ds: Dataset, split_arg, shuffle_seed=None):
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


def tfds_cached_source(ds: Dataset, split: str, cache, process_index, process_count, workers) -> Source:
    """Decode one host's part of a TFDS split into RAM or disk (natural order); random access afterwards."""
    mode = cache_mode(cache)
    drop = split == "train"
    arg, n = tfds_host_split(ds, split, process_index, process_count, drop_remainder=drop)
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
    stream = tfds_read(ds, arg).map(
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
