"""Validation batches of image folders on the host: Pillow decode and Ultralytics' eval transform, no TensorFlow.

Ultralytics validates with ``classify_transforms`` (torchvision Resize + CenterCrop) on PIL images; this module runs
exactly that (``classify_transform``, tested against torchvision pixel for pixel), which the predictor uses too, so
``val`` and ``predict`` preprocess alike and as Ultralytics does. The tf.data eval ops (``transforms.eval_transform``)
resize in float32 and can differ by a grey level. Reading a folder's validation split this way also spares
``jaxyolo classify val`` the ~2.5 s TensorFlow import. TFDS splits keep the tf.data path (``pipeline.eval_batches``).

Batches follow ``pipeline.eval_batches``' contract: natural order, global batch g is ``[g*B, (g+1)*B)`` of the split,
host p takes the p-th ``B // process_count`` slice, padding is zeros with label 0 and mask False. Images are decoded
and transformed on a pool of threads (``pool_threads``: as many as the images' size keeps busy, at most ``workers``
and the cores; Pillow releases the GIL while it decodes and resizes), the images of the next two batches at a time.
With ``cache='ram'|'disk'`` the decoded images come from the split's cache.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from jaxyolo.data.dataset import DatasetError, cache_mode, parallel_calls
from jaxyolo.utils.host import host_cores


def to_rgb_array(im) -> np.ndarray:
    """Pillow image (any mode) -> uint8 HxWx3 RGB; 16/32-bit integer samples keep their high byte like OpenCV."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if mode == "I":
            a = np.clip(a, 0, 65535)
        a = (a.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.round(np.asarray(im)), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def read_rgb(path: str) -> np.ndarray | None:
    """Decode an image file to RGB uint8 HWC as ``cv2.imread(IMREAD_COLOR)`` would (first frame, EXIF orientation
    applied, alpha dropped, 16-bit samples' high byte); ``None`` when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.seek(0)
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # noqa: BLE001 - broken EXIF: keep the pixels as stored
                pass
            return to_rgb_array(im)
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable": the caller says so
        return None


def parse_hw(imgsz) -> tuple[int, int]:
    """int or (h, w) -> (h, w); a ``ValueError`` naming the value for anything else (0, negative, not integers)."""
    hw = tuple(imgsz) if isinstance(imgsz, (list, tuple)) else (imgsz,)
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in hw):
        raise ValueError(f"imgsz={imgsz!r} is invalid: expected a positive int (e.g. 224) or a pair h,w (e.g. 224,192)")
    return int(hw[0]), int(hw[1])


def classify_transform(rgb: np.ndarray, imgsz) -> np.ndarray:
    """Ultralytics' ``classify_transforms(imgsz)`` (torchvision Resize + CenterCrop on a PIL image) without the
    ToTensor step: uint8 HWC RGB -> uint8 [h, w, 3], exactly as torchvision computes it."""
    from PIL import Image

    th, tw = parse_hw(imgsz)
    h, w = rgb.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if th != tw:  # Resize((h, w)) then a no-op CenterCrop
        return np.asarray(im.resize((tw, th), Image.BILINEAR)) if (h, w) != (th, tw) else np.asarray(im)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = th, int(th * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    if (nh, nw) != (h, w):
        im = im.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
    return np.asarray(im)[top:top + th, left:left + tw]


def folder_eval_batches(ds, split: str, *, imgsz, batch_size: int, process_index: int = 0, process_count: int = 1,
                        cache=False, workers: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``eval_batches`` of an image-folder dataset (see the module docstring)."""
    batch_size, process_count = int(batch_size), int(process_count)
    if batch_size <= 0 or process_count <= 0 or not 0 <= process_index < process_count \
            or batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of process_count {process_count} "
                         f"(process_index {process_index})")
    b = batch_size // process_count
    th, tw = parse_hw(imgsz)
    recs = ds.records[ds.resolve_split(split)]
    n = len(recs)
    nbe = max(1, math.ceil(n / batch_size))
    idx = np.full(nbe * batch_size, -1, np.int64)
    idx[:n] = np.arange(n)
    rows = idx.reshape(nbe, process_count, b)[:, process_index]
    labels = np.asarray(recs.labels, np.int32)
    load = _loader(ds, split, recs, cache, workers)

    def one(i: int) -> np.ndarray:
        img = load(i)
        if img is None:
            raise DatasetError(f"{recs.files[i]}: the image cannot be decoded (it was readable when the folder "
                               f"was scanned)")
        return classify_transform(img, (th, tw))

    threads = pool_threads(workers, recs.heights, recs.widths)
    return _batches(one, rows, labels, (b, th, tw, 3), threads)


def _loader(ds, split, recs, cache, workers):
    """i -> uint8 HWC RGB of example i: the records' images in memory, the file (no cache) or the split's decoded
    cache."""
    if cache_mode(cache) is None and recs.images is not None:
        return recs.images.__getitem__
    ds.wait_files()
    if cache_mode(cache) is None:
        files = [str(f) for f in recs.files]
        return lambda i: read_rgb(files[i])
    from jaxyolo.data.sources import folder_source

    src = folder_source(ds, split, cache, workers)
    return src.numpy_image if hasattr(src, "numpy_image") else (lambda i: read_rgb(str(recs.files[i])))


PREFETCH = 2  # batches whose images are being read ahead of the one being consumed
PIXELS_PER_THREAD = 9000  # source pixels per image that keep one more pool thread busy (``pool_threads``)


def pool_threads(workers, heights, widths) -> int:
    """Threads worth running for images of these source sizes: ``1 + mean pixels // PIXELS_PER_THREAD``, at most
    ``parallel_calls(workers)`` and the usable cores.

    Each image costs ~0.25 ms of Python (holding the GIL) plus decode/resize/augmentation work in OpenCV, Pillow and
    numpy that releases it and grows with the pixels (~28 ns a source pixel; PNGs, 2 cores). Threads only overlap the
    second part, and threads waiting on the GIL cost more than they give: on digits (32x32) one thread makes an epoch
    with 0.68 CPU-s, eight threads with 1.9 CPU-s, and a training run beside the train step is ~20% faster with one.
    400x300 PNGs at imgsz 224 are 1.6x faster on two threads than on one."""
    n = max(1, parallel_calls(workers))
    px = float(np.mean(np.asarray(heights, np.float64) * np.asarray(widths, np.float64))) if len(heights) else 0.0
    return int(max(1, min(n, host_cores(), 1 + px // PIXELS_PER_THREAD)))


def _batches(one, rows, labels, shape, threads: int):
    """(images, labels, mask) per row of indices (-1: padding), in order. The images of the next ``PREFETCH``
    batches are made ahead on a pool of ``threads`` threads, each batch as ``threads`` chunks of consecutive images
    (a task per image costs a thread hand-off per image), so at most that many batches are in memory."""
    threads = max(1, int(threads))
    ex = ThreadPoolExecutor(threads, thread_name_prefix="jaxyolo-images")
    pending: deque = deque()
    rows = iter(rows)

    def fill(x: np.ndarray, row: np.ndarray, slots: np.ndarray) -> None:
        for j in slots:
            x[j] = one(int(row[j]))

    def submit() -> None:
        row = next(rows, None)
        if row is not None:
            x = np.zeros(shape, np.uint8)
            valid = row >= 0
            slots = np.flatnonzero(valid)
            chunks = np.array_split(slots, min(threads, len(slots))) if len(slots) else []
            pending.append((row, valid, x, [ex.submit(fill, x, row, c) for c in chunks]))

    try:
        for _ in range(PREFETCH + 1):
            submit()
        while pending:
            row, valid, x, futures = pending.popleft()
            submit()
            for f in futures:
                f.result()
            yield x, np.where(valid, labels[np.maximum(row, 0)], 0).astype(np.int32), valid
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
