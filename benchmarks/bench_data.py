"""Train input pipeline throughput: jaxyolo (tf.data) vs Ultralytics' classification dataloader, same folder/cores.

Both sides run Ultralytics' default classification training augmentation at 224: RandomResizedCrop(scale 0.5-1)
-> hflip 0.5 -> RandAugment(2, 9) -> RandomErasing(0.4), on the same generated folder of JPEGs, with the same number
of worker processes/threads (= CPU cores unless --workers), batch 32. Each side runs a warm-up epoch (tracing,
worker start-up, page cache) and then --epochs timed epochs; the table shows images/s of the timed epochs.

    python benchmarks/bench_data.py [--images 2000] [--epochs 1] [--workers N] [--dir /tmp/jaxyolo_bench_data]
                                    [--aug-backend opencv|pillow]

jaxyolo runs its default ``aug_backend=opencv`` unless ``--aug-backend pillow`` (torchvision's exact Pillow pixels).

A dated row (date, machine, command, numbers, ratio) is appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# torch/torchvision (via ultralytics) must be imported before TensorFlow: triton's and TF's LLVM clash otherwise
try:
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import ClassificationDataset

    HAVE_ULTRALYTICS = True
except Exception as e:  # noqa: BLE001
    HAVE_ULTRALYTICS = False
    ULTRA_ERR = repr(e)

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import _results as R  # noqa: E402

BATCH = 32
IMGSZ = 224
AUG = dict(scale=0.5, fliplr=0.5, flipud=0.0, auto_augment="randaugment", hsv_h=0.015, hsv_s=0.7, hsv_v=0.4,
           erasing=0.4)


def natural(h, w, rng):
    """A smooth photo-like image with texture and noise (compresses like a photo, not like white noise)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(2, 12, 6)
    p = rng.uniform(0, 6.3, 6)
    img = np.stack(
        [
            np.sin(f[0] * x + p[0]) * np.cos(f[1] * y + p[1]),
            np.sin(f[2] * (x + y) + p[2]) * np.cos(f[3] * x * y + p[3]),
            np.sin(f[4] * y + p[4]) + 0.5 * np.cos(f[5] * x + p[5]),
        ],
        -1,
    )
    img = (img - img.min()) / (np.ptp(img) + 1e-6) * 255 + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, n: int, classes: int = 10, seed: int = 0):
    marker = root / f".generated-{n}"
    if marker.is_file():
        return
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", max(classes, n // 10))):
        for i in range(count):
            c = f"class{i % classes}"
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            h, w = int(rng.integers(224, 320)), int(rng.integers(224, 320))
            Image.fromarray(natural(h, w, rng)).save(d / f"{i:05d}.jpg", quality=90)
    marker.write_text("ok\n")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and all its live children (DataLoader workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for c in me.children(recursive=True):
        try:
            total += sum(c.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def bench_ultralytics(root: Path, workers: int, epochs: int):
    args = get_cfg(overrides=dict(imgsz=IMGSZ, fraction=1.0, cache=False, **AUG))
    ds = ClassificationDataset(str(root / "train"), args, augment=True, prefix="train")
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
                                     persistent_workers=workers > 0)
    times = []
    for e in range(epochs + 1):
        t, c = time.perf_counter(), _cpu_seconds()
        n = 0
        for batch in dl:
            n += batch["img"].shape[0]
        times.append((n, time.perf_counter() - t, _cpu_seconds() - c))
    return times


def bench_jaxyolo(root: Path, workers: int, epochs: int, aug_backend: str = "opencv"):
    from jaxyolo.data import load_dataset, train_batches

    t = time.perf_counter()
    ds = load_dataset(str(root))
    scan = time.perf_counter() - t
    times = []
    for e in range(epochs + 1):
        t, c = time.perf_counter(), _cpu_seconds()
        n = 0
        for x, y in train_batches(ds, imgsz=IMGSZ, batch_size=BATCH, seed=0, epoch=e,
                                  aug=dict(AUG, aug_backend=aug_backend), workers=workers):
            n += x.shape[0]
        times.append((n, time.perf_counter() - t, _cpu_seconds() - c))
    return times, scan


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs after one warm-up epoch")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--dir", default="/tmp/jaxyolo_bench_data")
    ap.add_argument("--aug-backend", default="opencv", choices=["opencv", "pillow"])
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    a = ap.parse_args()
    root = Path(a.dir) / f"jpeg{a.images}"
    t = time.perf_counter()
    make_folder(root, a.images)
    print(f"data: {root} ({a.images} train JPEGs, 224-319 px sides), ready in {time.perf_counter() - t:.1f}s")

    rows = {}
    if HAVE_ULTRALYTICS:
        u = bench_ultralytics(root, a.workers, a.epochs)
        rows["ultralytics"] = u
    else:
        print("ultralytics not importable:", ULTRA_ERR)
    j, scan = bench_jaxyolo(root, a.workers, a.epochs, a.aug_backend)
    rows["jaxyolo"] = j

    def ips(times):
        return sum(t[0] for t in times[1:]) / sum(t[1] for t in times[1:])

    def cpu_ms(times):
        return 1000 * sum(t[2] for t in times[1:]) / sum(t[0] for t in times[1:])

    print(f"\ntrain pipeline @ {IMGSZ}, batch {BATCH}, RandAugment + erasing, workers={a.workers}, "
          f"{os.cpu_count()} cores")
    print(f"{'pipeline':<14}{'warm-up epoch s':>17}{'timed img/s':>14}{'CPU ms/img':>12}")
    for k, v in rows.items():
        print(f"{k:<14}{v[0][1]:>17.1f}{ips(v):>14.1f}{cpu_ms(v):>12.2f}")
    print(f"jaxyolo first scan+verify of the folder: {scan:.1f}s (cached afterwards)")
    ratio = ips(rows["jaxyolo"]) / ips(rows["ultralytics"]) if "ultralytics" in rows else float("nan")
    cpu_ratio = cpu_ms(rows["ultralytics"]) / cpu_ms(rows["jaxyolo"]) if "ultralytics" in rows else float("nan")
    print(f"ratio jaxyolo/ultralytics: {ratio:.2f}x images/s, {cpu_ratio:.2f}x less CPU per image")
    nums = (f"jaxyolo {ips(rows['jaxyolo']):.0f} img/s ({cpu_ms(rows['jaxyolo']):.1f} CPU ms/img)"
            + (f", ultralytics {ips(rows['ultralytics']):.0f} img/s ({cpu_ms(rows['ultralytics']):.1f} CPU ms/img)"
               if "ultralytics" in rows else "")
            + f"; train @224, batch {BATCH}, RandAugment+erasing (aug_backend={a.aug_backend}), {a.images} JPEGs, "
            f"workers={a.workers}, "
            f"{a.epochs} timed epoch(s) after 1 warm-up; peak RSS {R.peak_rss_mib():.0f} MiB (this process); "
            f"load avg {R.load_avg():.1f}")
    R.append_row(a.results, "bench_data", nums, f"{ratio:.2f}x img/s, {cpu_ratio:.2f}x CPU")


if __name__ == "__main__":
    main()
