"""The embedded ``digits`` dataset: scikit-learn's bundled ``load_digits()`` (1,797 real 8x8 handwritten digits,
values 0..16, 10 classes), materialised once as an Ultralytics image folder::

    <datasets_dir>/digits/train/<0..9>/<index>.png   1,437 images
    <datasets_dir>/digits/val/<0..9>/<index>.png       360 images

* pixels: ``round(v * 255 / 16)`` grey, upscaled 4x with bilinear interpolation to 32x32 (the native 8x8 would fall
  under the 10 px minimum that user folders are held to; bilinear gives smooth strokes, which trains markedly better
  than blocky nearest-neighbour pixels: 0.947 vs 0.864 top-1 for the README job), saved as 8-bit grey ('L') PNG;
  ``<index>`` is the sample's index in ``load_digits()``;
* split: stratified 80/20 with a fixed seed (``train_test_split(test_size=0.2, stratify=y, random_state=0)``, kept as
  a constant: ``_VAL_MASK``);
* ``datasets_dir``: argument, else ``$JAXYOLO_DATASETS_DIR``, else ``./datasets``;
* atomic: written to a temporary sibling folder, then renamed into place, with a ``.complete`` marker; an
  existing complete folder is reused as is (never rewritten), a leftover temporary folder is ignored/replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from jaxyolo.data.dataset import LOGGER
from jaxyolo.data.folders import record_scan
from jaxyolo.data.routes import PNG

NAME = "digits"
SIZE = 32
SEED = 0
VAL_FRACTION = 0.2
MARKER = ".complete"


def datasets_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("JAXYOLO_DATASETS_DIR") or "datasets")


# The split, one bit per sample of load_digits() (1: val), packed and base64-encoded: what
# ``train_test_split(arange(1797), test_size=0.2, stratify=target, random_state=0)`` gives (tests/test_data.py checks it
# against scikit-learn's), kept here because importing scikit-learn's model_selection took ~0.6 s of every first run.
_VAL_MASK = ("AAAEiDUkEEAABkEAk0IFABoACAEAJAAoBiwSABAAlAoAkBkSBCD4oAKBEKAACAqIIEQVJElCQKAKAAAAQATYAACBgCAASAXEABBA"
             "CKAQAAVASAAwEAACDsQJAAIkhACDqAE8IKaYCgAAAAsIQAgEoBhIAgJAQcEAgARARoQ3aoECFgBEgABAQqCkGApQAIQLhWHGCBCA"
             "CABMgMAgBAaOAAEIggCBADgIA8AIGQAAEA4BAIQQoCEAMygpBMBEwIBoDgECgwCCAIgipkAsJAQhCKhggJCBoAwCggJCEgE4pBUA")
N_SAMPLES = 1797


def _load_digits():
    """(images float [1797, 8, 8] in 0..16, labels int64 [1797]) of ``sklearn.datasets.load_digits()``: its bundled
    ``digits.csv.gz`` (64 pixel columns, then the label) read with numpy, without importing scikit-learn (~0.6 s);
    through ``load_digits()`` where that file is not where scikit-learn keeps it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        with gzip.open(path) as f:
            data = np.loadtxt(f, delimiter=",")
        if data.shape == (N_SAMPLES, 65):
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target.astype(np.int64)


def digits_split():
    """(images uint8 [1797, 8, 8] in 0..255, labels int [1797], train indices, val indices)."""
    import base64

    images, y = _load_digits()
    imgs = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    val = np.unpackbits(np.frombuffer(base64.b64decode(_VAL_MASK), np.uint8), count=len(y)).astype(bool)
    return imgs, y, np.flatnonzero(~val), np.flatnonzero(val)


def materialize(dir: str | os.PathLike | None = None) -> Path:
    """Make sure ``<datasets_dir>/digits`` exists and is complete; returns its path."""
    from PIL import Image

    base = datasets_dir(dir)
    root = base / NAME
    if (root / MARKER).is_file():
        return root
    if root.exists():
        raise FileExistsError(f"{root} exists but is not a complete digits dataset (no {MARKER}); remove it")
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.tmp-", dir=base))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
    try:
        imgs, y, tr, va = digits_split()

        def write(folder: Path, idx) -> None:
            folder.mkdir(parents=True)
            for i in idx:
                big = Image.fromarray(imgs[i], "L").resize((SIZE, SIZE), Image.BILINEAR)  # smooth 8 -> 32
                big.save(folder / f"{i:04d}.png")

        # One class folder per task: creating 1,797 files was 0.15-2 s on one thread (file creation, on some disks
        # ~1 ms a file), 0.3 s on 8, which wait for the disk side by side.
        with ThreadPoolExecutor(8, thread_name_prefix="jaxyolo-digits") as ex:
            for done in [ex.submit(write, tmp / split / str(c), idx[y[idx] == c])
                         for split, idx in (("train", tr), ("val", va)) for c in range(10)]:
                done.result()
        for split in ("train", "val"):  # the scan's cache, as scanning these files would write it
            record_scan(tmp / split, (SIZE, SIZE, PNG, 1))
        with open(tmp / MARKER, "w") as f:
            json.dump({"source": "sklearn.datasets.load_digits", "train": len(tr), "val": len(va),
                       "size": SIZE, "seed": SEED, "resize": "bilinear"}, f)
        try:
            os.rename(tmp, root)
        except OSError:
            if (root / MARKER).is_file():  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        LOGGER.info(f"digits: wrote {len(tr)} train + {len(va)} val 32x32 PNGs to {root}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
