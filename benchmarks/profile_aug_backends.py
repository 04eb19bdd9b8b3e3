"""How fast could the train augmentation run on native image libraries instead of TF ops? (planning for issue 4)

Times one epoch of Ultralytics' default train augmentation at 224 (RandomResizedCrop(0.5-1) -> hflip 0.5 ->
RandAugment(2, 9) -> RandomErasing(0.4)) on the JPEG folder made by ``bench_data.py``, with the same number of
threads/workers on each side, batch 32, in one run:

* ``ultralytics``  Ultralytics' own ClassificationDataset + torch DataLoader (worker processes; the reference);
* ``jaxyolo``      our tf.data pipeline (``jaxyolo.data.train_batches``, default ``aug_backend=opencv``; when this
                   profile was written (session 3) it ran PIL-exact TF ops; data/host_augment.py grew out of it);
* ``pil``          the same Pillow calls torchvision makes (crop+resize, Image.transform, ImageEnhance, ImageOps),
                   in a thread pool: bit-exact with Ultralytics by construction;
* ``opencv``       OpenCV/numpy stand-ins (cv2.resize, cv2.warpAffine, LUTs) in a thread pool: NOT exact (no
                   antialiased resize, fixed-point warps), an upper bound for a native path.

The ``pil`` and ``opencv`` rows are prototypes in this file, not product code: random parameters are sampled in the
spirit of torchvision's (same op set and magnitudes), which is all a cost measurement needs. Prints a table only.

    python benchmarks/profile_aug_backends.py [--images 2000] [--workers N] [--dir /tmp/jaxyolo_bench_data]
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bench_data  # noqa: E402  (imports torch/ultralytics before TensorFlow, as it must)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMGSZ, BATCH = 224, 32
MAG = 9 / 30  # RandAugment magnitude 9 of 31 bins


def _rrc_box(rng, w, h):
    area = w * h
    for _ in range(10):
        s = rng.uniform(0.5, 1.0) * area
        r = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(s * r))), int(round(math.sqrt(s / r)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return left, top, left + cw, top + ch
    return 0, 0, w, h


def _erase(x, rng):
    if rng.random() < 0.4:
        eh, ew = int(rng.integers(20, 120)), int(rng.integers(20, 120))
        t, l = int(rng.integers(0, IMGSZ - eh)), int(rng.integers(0, IMGSZ - ew))
        x[t : t + eh, l : l + ew] = 0
    return x


def pil_aug(path: Path, seed: int) -> np.ndarray:
    import cv2
    from PIL import Image, ImageEnhance, ImageOps

    rng = np.random.default_rng(seed)
    im = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)  # Ultralytics reads with OpenCV
    img = Image.fromarray(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    img = img.crop(_rrc_box(rng, *img.size)).resize((IMGSZ, IMGSZ), Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    for _ in range(2):
        op = int(rng.integers(0, 14))
        sign = -1.0 if rng.random() < 0.5 else 1.0
        if op in (1, 2):  # ShearX / ShearY
            m = [1, sign * 0.3 * MAG, 0, 0, 1, 0] if op == 1 else [1, 0, 0, sign * 0.3 * MAG, 1, 0]
            img = img.transform(img.size, Image.AFFINE, m, Image.BILINEAR, fillcolor=0)
        elif op in (3, 4):  # TranslateX / TranslateY
            t = int(sign * 150 / 331 * IMGSZ * MAG)
            img = img.transform(img.size, Image.AFFINE, [1, 0, t, 0, 1, 0] if op == 3 else [1, 0, 0, 0, 1, t],
                                Image.BILINEAR, fillcolor=0)
        elif op == 5:
            img = img.rotate(sign * 30 * MAG, Image.BILINEAR, fillcolor=0)
        elif op in (6, 7, 8, 9):
            enh = (ImageEnhance.Brightness, ImageEnhance.Color, ImageEnhance.Contrast, ImageEnhance.Sharpness)[op - 6]
            img = enh(img).enhance(1 + sign * 0.9 * MAG)
        elif op == 10:
            img = ImageOps.posterize(img, 7)
        elif op == 11:
            img = ImageOps.solarize(img, 255 * (1 - MAG))
        elif op == 12:
            img = ImageOps.autocontrast(img)
        elif op == 13:
            img = ImageOps.equalize(img)
    return _erase(np.asarray(img).copy(), rng)


def opencv_aug(path: Path, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    im = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    h, w = im.shape[:2]
    left, top, right, bottom = _rrc_box(rng, w, h)
    shrink = (bottom - top) > IMGSZ or (right - left) > IMGSZ
    x = cv2.resize(im[top:bottom, left:right], (IMGSZ, IMGSZ),
                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = np.ascontiguousarray(x)
    for _ in range(2):
        op = int(rng.integers(0, 14))
        sign = -1.0 if rng.random() < 0.5 else 1.0
        if op in (1, 2, 3, 4, 5):
            m = cv2.getRotationMatrix2D((IMGSZ / 2, IMGSZ / 2), sign * 30 * MAG, 1.0)
            x = cv2.warpAffine(x, m, (IMGSZ, IMGSZ), flags=cv2.INTER_LINEAR)
        elif op in (6, 10, 11, 12, 13):  # per-channel lookup tables (brightness, posterize, solarize, autocontrast,
            if op == 13:  # equalize: histogram -> table
                cum = [np.cumsum(np.bincount(x[..., c].ravel(), minlength=256)) for c in range(3)]
                lut = np.stack([np.clip(cum[c] * 255 // x[..., c].size, 0, 255) for c in range(3)],
                               -1).astype(np.uint8)[:, None, :]
            else:
                lut = np.clip(np.arange(256) * (1 + sign * 0.9 * MAG), 0, 255).astype(np.uint8)
            x = cv2.LUT(x, lut)
        elif op == 7:  # colour: blend with grey
            g = cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)
            x = cv2.addWeighted(x, 1 + sign * 0.9 * MAG, cv2.merge([g, g, g]), -sign * 0.9 * MAG, 0)
        elif op == 8:  # contrast: blend with the grey mean
            mean = float(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY).mean())
            x = cv2.addWeighted(x, 1 + sign * 0.9 * MAG, np.full_like(x, int(mean)), -sign * 0.9 * MAG, 0)
        elif op == 9:  # sharpness: blend with the SMOOTH filter
            k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
            x = cv2.addWeighted(x, 1 + sign * 0.9 * MAG, cv2.filter2D(x, -1, k), -sign * 0.9 * MAG, 0)
    return _erase(cv2.cvtColor(x, cv2.COLOR_BGR2RGB), rng)


def run_pool(fn, paths, threads, epoch):
    t, c = time.perf_counter(), time.process_time()
    n = 0
    order = np.random.default_rng(epoch).permutation(len(paths))
    with ThreadPoolExecutor(threads) as ex:
        for b in range(0, len(order) - BATCH + 1, BATCH):
            idx = order[b : b + BATCH]
            n += len(np.stack(list(ex.map(lambda i: fn(paths[i], int(i) + epoch * 1_000_003), idx))))
    return n, time.perf_counter() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--dir", default="/tmp/jaxyolo_bench_data")
    a = ap.parse_args()
    root = Path(a.dir) / f"jpeg{a.images}"
    bench_data.make_folder(root, a.images)
    files = sorted(glob.glob(str(root / "train" / "*" / "*.jpg")))
    paths = [Path(f) for f in files]  # each worker reads its file, as the other two pipelines do

    rows = {}
    if bench_data.HAVE_ULTRALYTICS:
        rows["ultralytics"] = bench_data.bench_ultralytics(root, a.workers, 1)[1]
    rows["jaxyolo"] = bench_data.bench_jaxyolo(root, a.workers, 1)[0][1]
    for name, fn in (("pil", pil_aug), ("opencv", opencv_aug)):
        run_pool(fn, paths[: 4 * BATCH], a.workers, 0)  # warm-up
        rows[name] = run_pool(fn, paths, a.workers, 1)
    ref = rows.get("ultralytics")
    print(f"\none epoch @ {IMGSZ}, batch {BATCH}, RRC + flip + RandAugment(2, 9) + erasing, {len(paths)} JPEGs, "
          f"{a.workers} workers/threads, {os.cpu_count()} cores")
    print(f"{'pipeline':<13}{'img/s':>9}{'CPU ms/img':>12}{'vs ultralytics':>16}   exact?")
    exact = {"ultralytics": "reference", "jaxyolo": "no (aug_backend=opencv; =pillow is exact)",
             "pil": "yes (same PIL calls)", "opencv": "no (approximate ops)"}
    for k, (n, dt, cpu) in rows.items():
        ratio = f"{(n / dt) / (ref[0] / ref[1]):.2f}x" if ref else "-"
        print(f"{k:<13}{n / dt:>9.0f}{cpu / n * 1e3:>12.2f}{ratio:>16}   {exact[k]}")


if __name__ == "__main__":
    main()
