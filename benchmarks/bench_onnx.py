"""ONNX inference latency: jaxyolo's ONNX export vs Ultralytics' own ONNX export of the same weights, onnxruntime CPU.

    python benchmarks/bench_onnx.py                      # yolov8n-cls, batch 1 at 224, 2 threads
    python benchmarks/bench_onnx.py --model yolo11n-cls --threads 4

Both graphs come from one set of random weights: jaxyolo exports its model (``converters.export``, onnxslim on), writes
the same weights as an fp32 ``.pt`` with ``YOLO.save``, and Ultralytics loads that file and runs its own
``export(format='onnx', imgsz=...)``. Both are run by onnxruntime (CPUExecutionProvider) with identical session options
(``--threads`` intra-op threads, 1 inter-op thread, all graph optimisations), on the same input, interleaved in one
process: each repetition times ``--runs`` calls of each model; the reported latency is the median over repetitions of
the per-repetition median. Ratio = jaxyolo / Ultralytics (< 1: ours is faster). Appends a dated row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import _results as R  # noqa: E402
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
try:  # torchvision (triton) before anything imports TensorFlow: the other order segfaults
    import torchvision  # noqa: F401
except ImportError:
    pass

import numpy as np  # noqa: E402


def session(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def op_counts(path):
    return collections.Counter(op_sequence(path))


def op_sequence(path):
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n-cls")
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50, help="timed calls per repetition and model")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()

    import ultralytics

    from converters.export import export
    from jaxyolo import YOLO

    work = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
    y = YOLO(f"{a.model}.yaml")
    pt = y.save(work / f"{a.model}.pt", half=False)  # same fp32 weights for both exporters
    y.ckpt_path = str(pt)
    ours = Path(export(y, "onnx", imgsz=a.imgsz, batch=a.batch, out_dir=work / "jaxyolo"))
    theirs = Path(ultralytics.YOLO(str(pt), task="classify").export(format="onnx", imgsz=a.imgsz, batch=a.batch,
                                                                     device="cpu", verbose=False))
    sessions = {"jaxyolo": session(ours, a.threads), "ultralytics": session(theirs, a.threads)}
    x = np.random.default_rng(0).random((a.batch, 3, a.imgsz, a.imgsz), dtype=np.float32)
    outs = {k: s.run(None, {"images": x})[0] for k, s in sessions.items()}
    diff = float(np.abs(outs["jaxyolo"] - outs["ultralytics"]).max())

    for s in sessions.values():
        for _ in range(a.warmup):
            s.run(None, {"images": x})
    per_rep = {k: [] for k in sessions}
    for _ in range(a.repeats):
        for k, s in sessions.items():  # interleaved, so drift on a shared machine hits both alike
            t = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                s.run(None, {"images": x})
                t.append(time.perf_counter() - t0)
            per_rep[k].append(statistics.median(t))
    ms = {k: 1e3 * statistics.median(v) for k, v in per_rep.items()}
    spread = {k: (1e3 * min(v), 1e3 * max(v)) for k, v in per_rep.items()}
    ratio = ms["jaxyolo"] / ms["ultralytics"]

    import onnxruntime as ort

    print(f"\n{a.model} ONNX, batch {a.batch} at {a.imgsz}, onnxruntime {ort.__version__} CPU, {a.threads} threads, "
          f"{a.repeats} x {a.runs} runs, {R.cpu_name()}, {os.cpu_count()} cores")
    print(f"{'export':<13}{'median ms':>11}{'rep. range ms':>18}{'nodes':>7}{'Transpose':>11}  file")
    for k, path in (("jaxyolo", ours), ("ultralytics", theirs)):
        c = op_counts(path)
        lo, hi = spread[k]
        print(f"{k:<13}{ms[k]:>11.3f}{f'{lo:.3f}-{hi:.3f}':>18}{sum(c.values()):>7}{c.get('Transpose', 0):>11}  "
              f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)")
    same = op_sequence(ours) == op_sequence(theirs)
    print(f"ratio jaxyolo/ultralytics: {ratio:.3f}x   max |probs diff|: {diff:.2e}   "
          f"same op sequence: {'yes' if same else 'no'}")

    if a.no_append:
        return
    nums = (f"jaxyolo ONNX {ms['jaxyolo']:.3f} ms, Ultralytics ONNX {ms['ultralytics']:.3f} ms ({a.model}, batch "
            f"{a.batch} @{a.imgsz}, onnxruntime {ort.__version__} CPU, {a.threads} threads, median of {a.repeats}x"
            f"{a.runs}; probs diff {diff:.1e}; same op sequence: {'yes' if same else 'no'}; load avg "
            f"{R.load_avg():.1f})")
    R.append_row(a.results, "bench_onnx", nums, f"{ratio:.2f}x")


if __name__ == "__main__":
    main()
