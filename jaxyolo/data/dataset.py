"""The resolved-dataset record shared by every source (image folders, the embedded digits, TFDS)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LOGGER = logging.getLogger("jaxyolo")


class DatasetError(ValueError):
    """A dataset that cannot be used as given (missing/empty split, empty class, class mismatch, unknown source)."""


@dataclass
class SplitRecords:
    """The valid images of one split of an image-folder dataset, in a fixed order (class, then file name)."""

    root: str  # the folder the split was scanned from
    files: list[str]  # absolute paths
    labels: np.ndarray  # int32 class index (train's class order)
    heights: np.ndarray  # int32, upright (EXIF orientation applied) decoded height
    widths: np.ndarray  # int32
    routes: np.ndarray  # int32 decode route (decode.JPEG, ...)
    orients: np.ndarray  # int32 EXIF orientation applied by the TF decoders (1 = none)
    sizes: np.ndarray = None  # int64 file size (for disk-cache keys)
    mtimes: np.ndarray = None  # int64 mtime_ns
    images: np.ndarray = None  # read-only uint8 [n, h, w, 3] RGB, the files' decoded pixels, where they are in memory
    # already (the embedded digits on the run that writes them); readers take them instead of the files

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, idx) -> "SplitRecords":
        idx = np.asarray(idx, dtype=np.int64)
        return SplitRecords(
            root=self.root,
            files=[self.files[i] for i in idx],
            labels=self.labels[idx],
            heights=self.heights[idx],
            widths=self.widths[idx],
            routes=self.routes[idx],
            orients=self.orients[idx],
            sizes=None if self.sizes is None else self.sizes[idx],
            mtimes=None if self.mtimes is None else self.mtimes[idx],
            images=None if self.images is None else read_only(self.images[idx]),
        )


def read_only(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only (shared arrays: no reader writes them)."""
    a.flags.writeable = False
    return a


@dataclass
class Dataset:
    """A resolved dataset (see ``load_dataset``)."""

    source: str  # what the user passed ('digits', a path, 'tfds:mnist')
    names: dict[int, str]
    nc: int
    splits: dict[str, int]  # 'train' / 'val' / 'test' -> number of valid images (fallback splits included)
    kind: str = "folder"  # 'folder' (image folders, digits) or 'tfds'
    root: str | None = None  # dataset root folder (folder kind)
    records: dict[str, SplitRecords] = field(default_factory=dict, repr=False)  # folder kind: real splits
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict, repr=False)  # split -> [(path, reason)]
    aliases: dict[str, str] = field(default_factory=dict)  # fallback split -> real split, e.g. {'test': 'val'}
    # TFDS kind
    tfds_builder: Any = field(default=None, repr=False)
    tfds_splits: dict[str, str] = field(default_factory=dict)  # our split name -> TFDS split string
    image_key: str = "image"
    label_key: str = "label"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)  # tf tables, RAM/disk stores
    # the files still being written (a Future; the embedded digits' first run reads them from ``records[*].images``)
    files_pending: Any = field(default=None, repr=False, compare=False)

    def wait_files(self) -> None:
        """Return once every record's file exists (``files_pending``); readers of the files call it first. Raises
        ``DatasetError`` naming the folder if writing them failed."""
        pending = self.files_pending
        if pending is None:
            return
        try:
            pending.result()
        except Exception as e:  # noqa: BLE001 - any failure to write them: say which folder
            raise DatasetError(f"{self.source}: its image folder {self.root} could not be written: {e}") from e
        for recs in self.records.values():  # the file keys of the disk cache, as a scan would have recorded them
            if recs.sizes is None or recs.mtimes is None:
                st = [os.stat(f) for f in recs.files]
                recs.sizes = np.array([s.st_size for s in st], np.int64)
                recs.mtimes = np.array([s.st_mtime_ns for s in st], np.int64)
        self.files_pending = None

    def resolve_split(self, split: str) -> str:
        """Our split name -> the real split it reads ('val' may fall back to 'test' and vice versa)."""
        split = {"valid": "val", "validation": "val"}.get(split, split)
        real = self.aliases.get(split, split)
        available = self.records if self.kind == "folder" else self.tfds_splits
        if real not in available:
            raise DatasetError(
                f"dataset {self.source!r} has no {split!r} split (available: {sorted(self.splits) or 'none'})"
            )
        return real

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def num_train_batches(ds: Dataset, batch_size: int) -> int:
    """Train batches per epoch (global batch_size, drop_remainder)."""
    return int(ds.splits["train"]) // int(batch_size)


def cache_mode(cache):
    """``cache`` (Ultralytics' argument) -> None, 'ram' or 'disk'."""
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


def parallel_calls(workers) -> int:
    """Parallel map calls (and pool threads) for ``workers``: itself when > 0, else one per CPU core."""
    return int(workers) if workers and int(workers) > 0 else (os.cpu_count() or 1)


def train_count(fraction, n: int) -> int:
    """How many of a split's ``n`` training images ``fraction`` keeps, as Ultralytics 8.4: a ratio in (0, 1] keeps
    ``round(n * fraction)`` (at least one), an integer count > 1 that many (at most ``n``); a ``DatasetError`` naming
    the value otherwise."""
    if isinstance(fraction, int) and not isinstance(fraction, bool) and fraction > 1:
        return min(fraction, n)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise DatasetError(f"fraction={fraction!r} is invalid: expected a ratio in (0, 1] (e.g. 0.25) or an image "
                           f"count > 1 (e.g. 500) of the training split" + (
                               "; per-split lists [train, val, test] are not supported" * isinstance(fraction, list)))
    return max(1, round(n * fraction))
