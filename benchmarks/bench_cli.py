"""The README main job's `val` and `predict` commands vs `yolo classify val|predict`: whole-process wall time.

    python benchmarks/bench_cli.py [--repeats 3] [--model path/to/best.pt]

Both CLIs run on the same `.pt` (a yolov8n-cls digits checkpoint: ``--model``, else random weights written by
jaxyolo, which Ultralytics loads too; the timing does not depend on the weights) and the same materialised digits
folder at imgsz 32, alternating jaxyolo and Ultralytics ``--repeats`` times; the median wall time of each command is
reported. `val` reads the 360 validation images and writes its confusion-matrix plots on both sides, `predict`
classifies the 36 images of `val/3` and saves the annotated images on both sides. Appends a row to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results as R  # noqa: E402  (benchmarks/_results.py)


def timed(cmd: list[str], env: dict, cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="a classification .pt (default: random yolov8n-cls weights)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    env = R.child_env(ROOT, tmp)
    from jaxyolo import YOLO
    from jaxyolo.data import load_dataset

    folder = Path(load_dataset("digits").root)
    model = Path(a.model) if a.model else tmp / "digits-random.pt"
    if not a.model:
        y = YOLO("yolov8n-cls.yaml", nc=10)
        y.names = {i: str(i) for i in range(10)}
        y.save(model)
    bin_dir = Path(sys.executable).parent
    common = [f"model={model}", "imgsz=32"]
    jobs = {"val": [f"data={folder}"], "predict": [f"source={folder / 'val' / '3'}"]}
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(a.repeats):
        for mode, extra in jobs.items():
            for side, exe in (("jaxyolo", "jaxyolo"), ("ultralytics", "yolo")):
                cmd = [str(bin_dir / exe), "classify", mode, *common, *extra, f"project={tmp / side}"]
                times.setdefault((mode, side), []).append(timed(cmd, env, tmp))
    med = {k: statistics.median(v) for k, v in times.items()}
    parts = [f"{m}: jaxyolo {med[m, 'jaxyolo']:.2f} s vs Ultralytics {med[m, 'ultralytics']:.2f} s" for m in jobs]
    ratios = ", ".join(f"{m} {med[m, 'jaxyolo'] / med[m, 'ultralytics']:.2f}x" for m in jobs)
    print("; ".join(parts), "|", ratios)
    import ultralytics

    R.append_row(a.results, "bench_cli",
                 f"README main job's CLI commands, whole process, yolov8n-cls .pt at imgsz 32 on digits (val: 360 "
                 f"images + plots; predict: 36 images, annotated copies saved): {'; '.join(parts)}; Ultralytics "
                 f"{ultralytics.__version__}; median of {a.repeats}, alternating; load avg {R.load_avg():.1f}",
                 f"{ratios} wall")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
