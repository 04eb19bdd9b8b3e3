"""jaxyolo input pipeline: datasets (image folders, embedded digits, TFDS) and tf.data batches.

Public API::

    ds = load_dataset('path/to/root' | 'digits' | 'tfds:<name>[:<version>]', data_dir=None, fraction=1.0)
    for images, labels in train_batches(ds, imgsz=224, batch_size=64, seed=0, epoch=e, aug=cfg): ...
    for images, labels, mask in eval_batches(ds, 'val', imgsz=224, batch_size=64): ...
    num_train_batches(ds, 64)
    eval_transform_np(img_rgb_uint8_hwc, 224)     # the tf.data eval ops on one image (TFDS validation)

Images are uint8 NHWC RGB (the model divides by 255), labels int32, masks bool. ``batch_size`` is global; each host
gets ``batch_size // process_count``. See ``folders``, ``digits``, ``tfds_source``, ``transforms`` and ``pipeline``
for the details of each part.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxyolo.data.dataset import LOGGER, Dataset, DatasetError, SplitRecords, num_train_batches, train_count

__all__ = [
    "Dataset",
    "DatasetError",
    "SplitRecords",
    "load_dataset",
    "train_batches",
    "eval_batches",
    "num_train_batches",
    "eval_transform_np",
    "sample_crop_boxes",
]


def _apply_fraction(ds: Dataset, fraction) -> Dataset:
    """Keep ``train_count`` training images, evenly spaced over the (class-ordered) list, as Ultralytics."""
    import numpy as np

    if ds.kind != "folder":
        return ds
    recs = ds.records["train"]
    count = train_count(fraction, len(recs))
    if count < len(recs):
        idx = np.linspace(0, len(recs) - 1, count, dtype=int)
        ds.records["train"] = recs.subset(idx)
        ds.splits["train"] = count
        LOGGER.info(f"{ds.source}: fraction={fraction}: using {count} of {len(recs)} training images")
    return ds


def load_dataset(data: str, data_dir: str | None = None, fraction: float | int = 1.0,
                 files_in_background: bool = False) -> Dataset:
    """Resolve a dataset.

    * ``'digits'``: the embedded scikit-learn digits, materialised once under ``data_dir`` (or
      ``$JAXYOLO_DATASETS_DIR``, or ``./datasets``) as ``digits/``. With ``files_in_background`` (the trainer) a
      first run returns at once, with the images in memory, while a child process writes the folder
      (``Dataset.wait_files``; ``digits.load``).
    * ``'tfds:<name>[:<version>]'``: a prepared TFDS dataset in ``data_dir`` (nothing is downloaded).
    * a folder in Ultralytics' classification layout (``train/``, ``val/``, ``test/``; or class folders only, split
      80/20); a bare name that is not a folder is looked up in the datasets directory.

    ``fraction`` (a ratio in (0, 1], or an image count > 1) subsamples the training split. Raises ``DatasetError``
    for anything unusable."""
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise DatasetError(f"data must be a dataset folder, 'digits' or 'tfds:<name>', got {data!r}")
    train_count(fraction, 1)  # (a bad value fails before anything is read)
    s = str(data)
    if s.startswith("tfds:"):
        from jaxyolo.data.tfds_source import load_tfds

        return load_tfds(s, data_dir=data_dir, fraction=fraction)
    from jaxyolo.data import digits
    from jaxyolo.data.folders import load_folder

    if s == digits.NAME:
        return _apply_fraction(digits.load(data_dir, background=files_in_background), fraction)
    root = Path(s).expanduser()
    if not root.is_dir() and not root.is_absolute():
        alt = digits.datasets_dir(data_dir) / s
        if alt.is_dir():
            root = alt
    if not root.exists():
        raise DatasetError(
            f"dataset {s!r} not found: {root.resolve()} does not exist "
            f"(also looked in {digits.datasets_dir(data_dir).resolve()}; nothing is downloaded)"
        )
    return _apply_fraction(load_folder(s, root.resolve(), source=s), fraction)


def eval_batches(ds: Dataset, split: str, *, imgsz, batch_size: int, process_index: int = 0, process_count: int = 1,
                 cache=False, workers: int = 0):
    """Iterator of (images uint8 [b,h,w,3], labels int32 [b], mask bool [b]) host-local batches of ``split`` in
    natural order, the last padded with mask False; over all hosts every image appears exactly once with mask True.
    Image folders are read on the host with Ultralytics' exact eval transform (``host_eval``, no TensorFlow); TFDS
    splits through tf.data (``pipeline.eval_batches``)."""
    kw = dict(imgsz=imgsz, batch_size=batch_size, process_index=process_index, process_count=process_count,
              cache=cache, workers=workers)
    if ds.kind == "folder":
        from jaxyolo.data.host_eval import folder_eval_batches

        return folder_eval_batches(ds, split, **kw)
    from jaxyolo.data import pipeline

    return pipeline.eval_batches(ds, split, **kw)


def train_batches(ds: Dataset, *, imgsz, batch_size: int, seed: int, epoch: int, start_batch: int = 0, aug: dict,
                  process_index: int = 0, process_count: int = 1, cache=False, workers: int = 0):
    """Iterator (one epoch) of (images uint8 [b,h,w,3], labels int32 [b]) host-local batches, b = batch_size //
    process_count, drop_remainder; ``aug`` holds Ultralytics keys (scale, fliplr, flipud, auto_augment, hsv_h, hsv_s,
    hsv_v, erasing, aug_backend). ``start_batch`` skips already-seen batches of this epoch (exact resume). PNG/BMP
    image folders with the host augmentation are made on host threads (``host_train``, no TensorFlow), everything
    else by tf.data (``pipeline.train_batches``): the same batches either way."""
    kw = dict(imgsz=imgsz, batch_size=batch_size, seed=seed, epoch=epoch, start_batch=start_batch, aug=aug,
              process_index=process_index, process_count=process_count, workers=workers)
    from jaxyolo.data import host_train

    if host_train.applies(ds, imgsz, aug, cache):
        return host_train.folder_train_batches(ds, **kw)
    from jaxyolo.data import pipeline

    return pipeline.train_batches(ds, cache=cache, **kw)


def __getattr__(name):  # TensorFlow-backed parts load on first use
    if name in ("eval_transform_np", "sample_crop_boxes"):
        from jaxyolo.data import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'jaxyolo.data' has no attribute {name!r}")
