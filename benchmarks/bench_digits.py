"""End-to-end `digits` training (the README main job) vs `yolo classify train`, same folder, same settings, one run.

    python benchmarks/bench_digits.py [--epochs 10] [--repeats 1]

Both train yolov8n-cls at imgsz 32, batch 64, with the settings of experiments/digits.py (fliplr=0: digits are not
mirror-symmetric) on the same materialised digits image folder, on this machine's CPU cores. Wall time is the whole
process (start-up, compilation, data, training, validation, checkpoint writing), as a user experiences it.
Appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def last_row(csv_path: Path) -> dict:
    with open(csv_path) as f:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    return rows[-1]


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_digits_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAXYOLO_DATASETS_DIR": str(tmp / "datasets"), "YOLO_OFFLINE": "1",
           "YOLO_CONFIG_DIR": str(tmp / "ycfg")}
    sys.path.insert(0, str(ROOT))
    os.environ["JAXYOLO_DATASETS_DIR"] = env["JAXYOLO_DATASETS_DIR"]
    from jaxyolo.data import load_dataset

    folder = Path(load_dataset("digits").root)
    yolo_bin = Path(sys.executable).with_name("yolo")
    ours, theirs = [], []
    for r in range(a.repeats):
        w = tmp / f"ours{r}"
        ours.append((timed([sys.executable, "-m", "jaxyolo.train", "--config", "experiments/digits.py",
                            f"--config.epochs={a.epochs}", "--workdir", str(w)], env), last_row(w / "results.csv")))
        theirs.append((timed([str(yolo_bin), "classify", "train", f"data={folder}", "model=yolov8n-cls.yaml",
                              f"epochs={a.epochs}", "imgsz=32", "batch=64", "fliplr=0.0", "device=cpu",
                              f"project={tmp / 'ul'}", f"name=r{r}", "plots=False"], env),
                       last_row(tmp / "ul" / f"r{r}" / "results.csv")))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    t_o, t_t = med([t for t, _ in ours]), med([t for t, _ in theirs])
    top_o = med([float(r["metrics/accuracy_top1"]) for _, r in ours])
    top_t = med([float(r["metrics/accuracy_top1"]) for _, r in theirs])
    print(f"jaxyolo: {t_o:.1f} s wall, top-1 {top_o:.3f} | ultralytics: {t_t:.1f} s wall, top-1 {top_t:.3f} | "
          f"wall ratio {t_o / t_t:.2f}")
    import ultralytics

    with open(a.results, "a") as f:
        f.write(f"\n### digits end-to-end (README main job) — {datetime.date.today()} — {platform.node()}, "
                f"{os.cpu_count()} CPUs\n`python {' '.join(sys.argv)}` (jaxyolo vs ultralytics "
                f"{ultralytics.__version__}; yolov8n-cls, {a.epochs} epochs, imgsz 32, batch 64, fliplr 0; median of "
                f"{a.repeats})\n\n| | wall s | final top-1 |\n|---|---|---|\n"
                f"| jaxyolo | {t_o:.1f} | {top_o:.3f} |\n| Ultralytics | {t_t:.1f} | {top_t:.3f} |\n"
                f"| ratio (jaxyolo / Ultralytics) | {t_o / t_t:.2f} | |\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
