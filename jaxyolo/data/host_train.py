"""Training batches of a PNG/BMP image folder made on host threads, without TensorFlow: the batches tf.data makes.

The tf.data route (``pipeline.train_batches``) runs a small TF graph per example -- its seeds, the
RandomResizedCrop box (``transforms.rrc_params``), reading and decoding the file -- then the host augmentation
(``host_augment``) per batch. Here the same things happen on the host:

* every example's seeds and box for the whole epoch at once, with TF's own Philox stream in numpy
  (``stateless_np``): the seeds, boxes and RandAugment keys the graph draws;
* the file read and decoded by OpenCV, whose PNG and BMP decoders give the pixels TF's do (alpha dropped, grey
  replicated, 16-bit samples' high byte; tested), EXIF orientation applied as ``decode.apply_orientation`` does;
* then ``host_augment.augment_crop``, as on the tf.data route, on a pool of threads (``host_eval._batches``: the
  next two batches are read ahead; ``host_eval.pool_threads``: one thread for small images such as digits, where
  the work is mostly Python holding the GIL, more for larger ones, at most ``workers`` and the cores).

``tests/test_host_train.py`` checks that both routes give identical batches. What this saves is TensorFlow itself:
a training run on such a folder never imports it (~2.5 s of start-up CPU, most of it holding the GIL while the
model is built and the steps load) and starts no tf.data graph per epoch. It is taken for image folders read from
their files (``cache=False``) whose every file decodes on the PNG or BMP route, with the augmentation after the
crop on the host (RandAugment, the default, or neither a policy nor HSV jitter). JPEGs keep tf.data (it decodes only
the crop window, which a full decode does not reproduce exactly at chroma block edges), as do the cache modes, TFDS
and the TF-side policies. ``JAXYOLO_HOST_TRAIN=0`` turns the route off.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from jaxyolo.data import stateless_np as S
from jaxyolo.data.aug_space import aug_value, host_args
from jaxyolo.data.dataset import Dataset, DatasetError, cache_mode, num_train_batches, read_only
from jaxyolo.data.host_eval import _batches, pool_threads
from jaxyolo.data.routes import BMP, PNG

ROUTES = (PNG, BMP)  # the decode routes this module reads (decode.py)
_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def applies(ds: Dataset, imgsz, aug: dict, cache) -> bool:
    """Whether ``train_batches`` of ``ds`` with these settings is made here (see the module docstring)."""
    from jaxyolo.utils.jax_cache import switched_off

    if ds.kind != "folder" or cache_mode(cache) is not None or switched_off("JAXYOLO_HOST_TRAIN"):
        return False
    if host_args(imgsz, aug) is None:
        return False
    recs = ds.records[ds.resolve_split("train")]
    return bool(np.isin(np.asarray(recs.routes), ROUTES).all())


def example_seeds(seed: int, epoch: int, index) -> np.ndarray:
    """[n, 8, 2] int64: ``stateless_split(transforms.example_seed(seed, epoch, i), 8)`` for every i in ``index``."""
    index = np.asarray(index, np.int64)
    base = np.array([int(seed) & 0x7FFFFFFF, 0x5EED], np.int64)
    k = S.fold_in(base, int(epoch))
    return S.split(S.fold_in(np.broadcast_to(k, index.shape + (2,)), index), 8)


def rrc_boxes(seeds, h, w, scale=(0.08, 1.0), ratio=_RATIO) -> np.ndarray:
    """[n, 4] int32 (top, left, crop_h, crop_w): ``transforms.rrc_params`` for n seeds ([n, 2]) and image sizes."""
    h, w = np.asarray(h, np.int32), np.asarray(w, np.int32)
    s = S.split(seeds, 3)
    frac = S.uniform_f32(s[:, 0], 10, scale[0], scale[1]).astype(np.float64)
    logr = S.uniform_f32(s[:, 1], 10, math.log(ratio[0]), math.log(ratio[1]))
    aspect = np.exp(logr.astype(np.float64))
    target = (h * w).astype(np.float64)[:, None] * frac
    cw = np.rint(np.sqrt(target * aspect)).astype(np.int32)  # half to even, as tf.round
    ch = np.rint(np.sqrt(target / aspect)).astype(np.int32)
    ok = (cw > 0) & (cw <= w[:, None]) & (ch > 0) & (ch <= h[:, None])
    first = np.argmax(ok, axis=1)
    rows = np.arange(len(h))
    ch_ok, cw_ok = ch[rows, first], cw[rows, first]
    upos = S.uniform_f64(s[:, 2], 2, 0.0, 1.0)
    top_ok = np.minimum(np.floor(upos[:, 0] * (h - ch_ok + 1).astype(np.float64)).astype(np.int32), h - ch_ok)
    left_ok = np.minimum(np.floor(upos[:, 1] * (w - cw_ok + 1).astype(np.float64)).astype(np.int32), w - cw_ok)
    in_ratio = w.astype(np.float64) / h.astype(np.float64)
    rmin, rmax = min(ratio), max(ratio)
    fh_lo = np.rint(w.astype(np.float64) / rmin).astype(np.int32)
    fw_hi = np.rint(h.astype(np.float64) * rmax).astype(np.int32)
    fh = np.where(in_ratio < rmin, fh_lo, h)
    fw = np.where(in_ratio > rmax, fw_hi, w)
    any_ok = ok.any(axis=1)
    return np.stack([np.where(any_ok, top_ok, (h - fh) // 2), np.where(any_ok, left_ok, (w - fw) // 2),
                     np.where(any_ok, ch_ok, fh), np.where(any_ok, cw_ok, fw)], -1).astype(np.int32)


def orient(img: np.ndarray, o: int) -> np.ndarray:
    """EXIF orientation 1..8 -> the upright image (``decode.apply_orientation``)."""
    if o in (0, 1):
        return img
    if o == 2:
        return img[:, ::-1]
    if o == 3:
        return img[::-1, ::-1]
    if o == 4:
        return img[::-1]
    t = img.transpose(1, 0, 2)
    return {5: t, 6: t[:, ::-1], 7: t[::-1, ::-1], 8: t[::-1]}[o]


def load(path: str, o: int = 1) -> np.ndarray:
    """A PNG/BMP file -> upright uint8 [h, w, 3] RGB, the pixels ``decode.decode_file`` gives. (``host_eval.read_rgb``
    gives the same pixels through Pillow, at ~3x the time per digits image: 120 vs 36 us.)"""
    with open(path, "rb") as f:  # (np.fromfile takes ~2x the time of this read on small files)
        data = np.frombuffer(f.read(), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if img is None:
        raise DatasetError(f"{path}: the image cannot be decoded (it was readable when the folder was scanned)")
    return orient(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), int(o))


MEMO_MAX_BYTES = 64 << 20  # splits whose decoded images fit in this are decoded once per process (decoded_images)
_MEMO: dict = {}


def decoded_images(recs):
    """``i -> load(files[i], orients[i])`` for a split's records. Where the whole split decodes to at most
    ``MEMO_MAX_BYTES`` (digits: 4.4 MB), each image is decoded once per process and kept (read-only) for the later
    epochs: reading and decoding a file was ~30 us of the ~100 us a digits image costs per epoch (the rest is its
    augmentation), on the cores the train step runs on. Larger splits are read from their files every epoch."""
    if recs.images is not None:  # already in memory (SplitRecords.images)
        return recs.images.__getitem__
    files, orients = [str(f) for f in recs.files], np.asarray(recs.orients)
    size = int(np.dot(np.asarray(recs.heights, np.int64), np.asarray(recs.widths, np.int64))) * 3
    if size > MEMO_MAX_BYTES:
        return lambda i: load(files[i], orients[i])
    if _MEMO.get("records") is not recs:  # one split at a time: the trainer's
        _MEMO.clear()
        _MEMO.update(records=recs, images={})
    images = _MEMO["images"]

    def image(i: int) -> np.ndarray:
        img = images.get(i)
        if img is None:
            img = images[i] = read_only(load(files[i], orients[i]))  # (every later epoch's: augment_crop never
            # writes its input)
        return img

    return image


def folder_train_batches(ds: Dataset, *, imgsz, batch_size: int, seed: int, epoch: int, start_batch: int = 0,
                         aug: dict, process_index: int = 0, process_count: int = 1, workers: int = 0):
    """``train_batches`` of an image folder (``applies``): the same examples, order and pixels as tf.data's."""
    b = int(batch_size) // int(process_count)
    nb = num_train_batches(ds, batch_size)
    if nb == 0:
        raise DatasetError(f"{ds.source}: batch size {batch_size} is larger than the training set "
                           f"({ds.splits['train']} images)")
    if int(start_batch) < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    if int(start_batch) >= nb:
        return iter(())
    args = host_args(imgsz, aug)
    recs = ds.records[ds.resolve_split("train")]
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)])).permutation(len(recs))
    idx = perm[: nb * batch_size].reshape(nb, process_count, b)[int(start_batch):, process_index].reshape(-1)
    seeds = example_seeds(seed, epoch, idx)  # transforms._crop: [0] draws the box, [1] the host augmentation
    boxes = rrc_boxes(seeds[:, 0], np.asarray(recs.heights)[idx], np.asarray(recs.widths)[idx],
                      (max(0.0, 1.0 - float(aug_value(aug, "scale", 0.5))), 1.0))
    if recs.images is None:
        ds.wait_files()
    image = decoded_images(recs)
    from jaxyolo.data.host_augment import augment_crop

    def one(j: int) -> np.ndarray:
        i = int(idx[j])
        t, left, ch, cw = (int(v) for v in boxes[j])
        return augment_crop(image(i)[t : t + ch, left : left + cw], seeds[j, 1], *args)

    positions = np.arange(len(idx)).reshape(-1, b)
    labels = np.asarray(recs.labels, np.int32)[idx]
    th, tw = args[:2]
    threads = pool_threads(workers, recs.heights, recs.widths)
    return _images_and_labels(_batches(one, positions, labels, (b, th, tw, 3), threads))


def _images_and_labels(batches):
    try:
        for x, y, _ in batches:
            yield x, y
    finally:
        batches.close()  # stops the read-ahead threads (host_eval._batches)
