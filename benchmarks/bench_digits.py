"""End-to-end `digits` training (the README main job) vs `yolo classify train`, same folder, same settings, one run.

    python benchmarks/bench_digits.py [--epochs 10] [--repeats 1] [--cold]

jaxyolo keeps compiled steps in a persistent XLA cache (~/.cache/jaxyolo/xla): a repeat run is faster than the first
one on a machine; ``--cold`` measures a first run: the cache is an empty folder, and the digits image folder is
written (and scanned) by jaxyolo's timed run in a fresh datasets folder.

Both train yolov8n-cls at imgsz 32, batch 64, with the settings of experiments/digits.py (fliplr=0: digits are not
mirror-symmetric) on the same materialised digits image folder, on this machine's CPU cores, both with their default
plots=True (training-batch mosaics, confusion matrices, results.png). Wall time is the whole process (start-up,
compilation, data, training, validation, checkpoint writing, plots), as a user experiences it.
Appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results as R  # noqa: E402  (benchmarks/_results.py)


def last_row(csv_path: Path) -> dict:
    with open(csv_path) as f:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    return rows[-1]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return wall, R.peak_rss_mib(children=True)  # the largest child so far: each side runs first once (see main)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cold", action="store_true", help="a first run on a machine: empty JAX compilation cache, digits folder written afresh")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_digits_"))
    env = R.child_env(ROOT, tmp)
    if a.cold:  # nothing from an earlier run: no compiled steps, no digits folder or scan of it
        env["JAXYOLO_COMPILATION_CACHE"] = str(tmp / "xla-cache")
        env["JAXYOLO_DATASETS_DIR"] = str(tmp / "datasets")  # written and scanned inside jaxyolo's timed run
        folder = tmp / "datasets" / "digits"  # (Ultralytics then scans it afresh too: its cache files are its own)
    else:
        from jaxyolo.data import load_dataset

        folder = Path(load_dataset("digits").root)
    yolo_bin = Path(sys.executable).with_name("yolo")
    ours, theirs = [], []
    for r in range(a.repeats):
        w = tmp / f"ours{r}"
        t, rss = timed([sys.executable, "-m", "jaxyolo.train", "--config", "experiments/digits.py",
                        f"--config.epochs={a.epochs}", "--workdir", str(w)], env)
        ours.append((t, rss, last_row(w / "results.csv")))
        t, rss = timed([str(yolo_bin), "classify", "train", f"data={folder}", "model=yolov8n-cls.yaml",
                        f"epochs={a.epochs}", "imgsz=32", "batch=64", "fliplr=0.0", "device=cpu",
                        f"project={tmp / 'ul'}", f"name=r{r}"], env)
        theirs.append((t, rss, last_row(tmp / "ul" / f"r{r}" / "results.csv")))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    t_o, t_t = med([t for t, _, _ in ours]), med([t for t, _, _ in theirs])
    top_o = med([float(r["metrics/accuracy_top1"]) for _, _, r in ours])
    top_t = med([float(r["metrics/accuracy_top1"]) for _, _, r in theirs])
    rss = max(m for _, m, _ in ours + theirs)
    cache = ("an empty folder, digits folder written and scanned in the timed run" if a.cold
             else os.environ.get("JAXYOLO_COMPILATION_CACHE", "~/.cache/jaxyolo/xla"))
    print(f"jaxyolo: {t_o:.1f} s wall, top-1 {top_o:.3f} | ultralytics: {t_t:.1f} s wall, top-1 {top_t:.3f} | "
          f"wall ratio {t_o / t_t:.2f}")
    import ultralytics

    R.append_row(a.results, "bench_digits",
                 f"README main job (yolov8n-cls, {a.epochs} epochs, imgsz 32, batch 64, fliplr 0, plots on both sides), "
                 f"whole process: "
                 f"jaxyolo {t_o:.1f} s, top-1 {top_o:.3f}; Ultralytics {ultralytics.__version__} {t_t:.1f} s, top-1 "
                 f"{top_t:.3f}; median of {a.repeats}; JAX compilation cache {cache} "
                 f"({'cold' if a.cold else 'as found'}); peak RSS of the larger process {rss:.0f} MiB; load avg "
                 f"{R.load_avg():.1f}",
                 f"{t_o / t_t:.2f}x wall")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
