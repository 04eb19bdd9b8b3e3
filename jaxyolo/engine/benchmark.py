"""``benchmark`` mode: export a model to every format this machine can produce, validate each export on a dataset and
time it, and print one table (what Ultralytics' ``yolo benchmark`` does).

    from jaxyolo.engine.benchmark import benchmark
    rows = benchmark('runs/classify/train/weights/best.pt', data='digits', imgsz=32)   # or YOLO(...).benchmark(...)
    jaxyolo benchmark model=runs/classify/train/weights/best.pt data=digits imgsz=32 [format=onnx] [half] [int8]

Rows, in order: ``JAX`` (the Flax model itself), ``PyTorch`` (the same weights in the eager torch mirror, the model
every torch-traced export starts from; Ultralytics' first row), then every row of the export table
(``converters/export/formats.py``). For each export format:

1. availability first, without importing anything heavy: the back-end packages (``importlib.util.find_spec``), a CUDA
   GPU for TensorRT, ``edgetpu_compiler`` on PATH for Edge TPU, a ready converter environment for TF.js. A format that
   cannot be exported here is recorded as ❌ with the reason and costs nothing;
2. export (batch 1, the benchmark's ``imgsz``/``half``/``int8``; int8 formats calibrate on ``data``) into the run
   directory ``runs/classify/benchmark[-N]/``;
3. load the artifact (``YOLO(path)``), ``val`` it on ``data`` (top-1), and time single-image inference.

Status: ✅ exported and validated; ❎ exported, but not validated here (CoreML runs only on macOS, TF.js only in
JavaScript, an Edge TPU model only on an Edge TPU, or loading/validation failed: the reason is in the Note column);
❌ not exported (missing back-end, or the export failed: the reason is in the Note column). One format failing never
stops the others.

Inference time (ms/im) is the median latency of one batch-1 forward pass on a preprocessed image after warm-up
(the ``val`` speed of jaxyolo includes the input pipeline and, for JAX, the jit compilation, so it is not used for the
table; it is kept in each row as ``val_ms_per_img``). FPS = 1000 / ms.

The table is printed, and written to ``benchmarks.log`` (appended, with a header line like Ultralytics') and
``benchmarks.csv`` in the run directory. ``verbose=True`` turns every real failure (an export or validation error, not
a format that is unavailable here) into an error after the table is written; ``verbose=<float>`` also requires each
validated format's top-1 to be at least that floor (``BenchmarkFailure``, an ``AssertionError`` as in Ultralytics).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import platform
import shutil
import statistics
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("jaxyolo")

OK, EXPORT_ONLY, FAILED = "✅", "❎", "❌"
LEGEND = (f"Benchmarks legend:  {OK} success  {EXPORT_ONLY} exported, not validated here  "
          f"{FAILED} not exported (see Note)")
METRIC = "metrics/accuracy_top1"  # Ultralytics' TASK2METRIC['classify']
COLUMNS = ("Format", "Status❔", "Size (MB)", METRIC, "Inference time (ms/im)", "FPS", "Note")
LATENCY_BUDGET_S = 1.0  # timing runs per format stop after this many seconds (at least 5 runs)
NOTE_WIDTH = 150  # the printed table cuts notes here; the rows, CSV and log keep them whole

_TF_CONVERTER = ("torch", "onnx", "tensorflow", "onnx2tf", "onnx_graphsurgeon", "sng4onnx", "tf_keras")
# Python packages each export needs (what converters/export/<module>.py imports), and what running the artifact needs
EXPORT_NEEDS = {
    "torchscript": ("torch",),
    "onnx": ("torch", "onnx"),
    "openvino": ("torch", "onnx", "openvino"),
    "engine": ("tensorrt", "torch", "onnx"),
    "coreml": ("torch", "coremltools"),
    "saved_model": _TF_CONVERTER,
    "pb": _TF_CONVERTER,
    "tflite": ("tensorflow",),
    "edgetpu": ("tensorflow",),
    "tfjs": _TF_CONVERTER,
    "paddle": ("torch", "paddle", "x2paddle"),
    "ncnn": ("torch", "pnnx", "ncnn"),
}
INFER_NEEDS = {
    "torchscript": ("torch",),
    "onnx": ("onnxruntime",),
    "openvino": ("openvino",),
    "engine": ("tensorrt",),
    "saved_model": ("tensorflow",),
    "pb": ("tensorflow",),
    "paddle": ("paddle",),
    "ncnn": ("ncnn",),
}


class BenchmarkFailure(AssertionError):
    """``verbose=True`` / ``verbose=<floor>``: a format failed, or a validated top-1 is below the floor."""


class BenchmarkTable(list):
    """The benchmark rows (a list of dicts: format, arg, status, size_mb, top1, ms_per_img, fps, note, path,
    val_ms_per_img) with the printed ``text``, the ``save_dir`` and ``row(name_or_arg)``."""

    text: str = ""
    save_dir: Path | None = None

    def row(self, key: str) -> dict:
        key = str(key).lower()
        for r in self:
            if key in (r["format"].lower(), r["arg"]):
                return r
        raise KeyError(f"no benchmark row {key!r} (rows: {', '.join(r['arg'] for r in self)})")

    def __str__(self) -> str:
        return self.text


# ------------------------------------------------------------------------------------------------ availability


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _missing(modules) -> list[str]:
    return [m for m in modules if not _has_module(m)]


def _cuda_available() -> bool:
    if "torch" in sys.modules or _has_module("torch"):
        try:
            import torch

            return bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001
            return False
    return False


def _tfjs_env_ready() -> bool:
    import json

    from converters.export import tfjs

    marker = tfjs.tools_dir() / "tfjs-venv" / tfjs.MARKER
    try:
        return json.loads(marker.read_text()).get("spec") == tfjs._spec()
    except (OSError, ValueError):
        return False


def export_unavailable(arg: str, int8: bool = False) -> str | None:
    """Why format ``arg`` cannot be exported on this machine, or None when it can (checked without importing)."""
    from converters.export.formats import get_format

    fmt = get_format(arg)
    needs = EXPORT_NEEDS.get(fmt.arg, ())
    if int8 and fmt.arg == "openvino":
        needs = (*needs, "nncf")
    missing = _missing(needs)
    if fmt.arg == "engine" and missing:
        return (f"needs {', '.join(missing)} and an NVIDIA GPU with CUDA (not installed; TensorRT comes from NVIDIA's "
                f"package index)")
    if missing:
        return f"needs {', '.join(missing)} (not installed; pip install 'jaxyolo[{fmt.extra}]')"
    if fmt.arg == "engine" and not _cuda_available():
        return "needs an NVIDIA GPU with CUDA (TensorRT builds and runs engines on the GPU)"
    if fmt.arg == "edgetpu" and shutil.which("edgetpu_compiler") is None:
        return (f"needs edgetpu_compiler on PATH (Coral's compiler, Debian/Ubuntu x86-64 only; not found on this "
                f"{platform.system()} {platform.machine()} machine)")
    if fmt.arg == "tfjs" and not _tfjs_env_ready():
        return ("the TF.js converter environment is not set up (the first 'jaxyolo export format=tfjs' creates it; "
                "it downloads about 0.8 GB)")
    return None


def inference_unavailable(arg: str) -> str | None:
    """Why an exported ``arg`` model cannot run here (export-only), or None when it can."""
    if arg == "coreml" and platform.system() != "Darwin":
        return "CoreML inference needs macOS (exported only)"
    if arg == "tfjs":
        return "TF.js models run in JavaScript (@tensorflow/tfjs), not in Python (exported only)"
    if arg == "edgetpu":
        return None  # its loader says whether an Edge TPU and libedgetpu are present
    if arg == "tflite":
        return None if (_has_module("ai_edge_litert") or _has_module("tensorflow")) else \
            "needs ai_edge_litert or tensorflow to run (exported only)"
    missing = _missing(INFER_NEEDS.get(arg, ()))
    return f"needs {', '.join(missing)} to run (exported only)" if missing else None


# ------------------------------------------------------------------------------------------------ measuring


def size_mb(path) -> float:
    """Size of a file, or of everything in a directory, in MB (2**20 bytes, as Ultralytics)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20
    return p.stat().st_size / 2**20 if p.exists() else 0.0


def latency_ms(fn, x, warmup: int = 3, min_runs: int = 5, max_runs: int = 200,
               budget_s: float | None = None) -> float:
    """Median wall time of ``fn(x)`` in ms after ``warmup`` calls (at least ``min_runs``, at most ``max_runs`` runs,
    stopping after ``budget_s`` seconds, default ``LATENCY_BUDGET_S``)."""
    for _ in range(warmup):
        fn(x)
    times: list[float] = []
    end = time.perf_counter() + (LATENCY_BUDGET_S if budget_s is None else budget_s)
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < end):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _one_line(e: BaseException) -> str:
    """The first line of an error; when it ends with ':' (a tool's log follows), plus the log's last line."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    msg = lines[0] if lines else ""
    if msg.endswith(":") and len(lines) > 1:
        msg = f"{msg} ... {lines[-1][:200]}"
    return f"{type(e).__name__}: {msg}" if not isinstance(e, (ValueError, RuntimeError)) or not msg else msg


def _row(name, arg, status, size=None, top1=None, ms=None, note="", path=None, val_ms=None) -> dict:
    return {"format": name, "arg": arg, "status": status, "size_mb": size, "top1": top1, "ms_per_img": ms,
            "fps": (1000.0 / ms) if ms else None, "note": note, "path": None if path is None else str(path),
            "val_ms_per_img": val_ms}


def _preload_torch() -> None:
    """torchvision (triton) must load before TensorFlow (input pipeline, TF exporters): the other order segfaults."""
    if "tensorflow" in sys.modules:
        return
    for m in ("torch", "torchvision"):
        if _has_module(m):
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001 - a broken torch is reported by the formats that need it
                return


def _torch_backend(yolo, imgsz):
    """The eager torch mirror of ``yolo`` (BatchNorm folded) as an inference backend."""
    import torch

    from converters.export.torch_graph import inference_module
    from jaxyolo.engine.backends import Backend

    model = inference_module(yolo)

    def run(x):
        with torch.no_grad():
            y = model(torch.from_numpy(x))
        return (y[0] if isinstance(y, (list, tuple)) else y).float().numpy()

    return Backend("pytorch", dict(yolo.names), tuple(imgsz), run, batch=None, meta={"dynamic": True})


def _with_backend(yolo, backend):
    """A shallow copy of ``yolo`` that predicts/validates through ``backend`` (YOLO's exported-model path)."""
    import copy

    y = copy.copy(yolo)
    y.backend, y.module, y.variables, y._runner, y._forward = backend, None, None, None, None
    return y


# ------------------------------------------------------------------------------------------------ the benchmark


def _select(format) -> list[str] | None:
    """``format=''`` -> None (everything); 'onnx' / 'jax,onnx' / ['onnx', 'openvino'] -> the chosen row args."""
    from converters.export.formats import get_format

    if format in (None, "", False):
        return None
    items = format if isinstance(format, (list, tuple)) else str(format).split(",")
    out = []
    for it in (str(i).strip() for i in items):
        if not it:
            continue
        low = it.lower()
        if low in ("jax", "flax"):
            out.append("jax")
        elif low in ("pytorch", "torch", "pt", "-"):
            out.append("pytorch")
        else:
            out.append(get_format(low).arg)
    return out or None


def benchmark(model="yolov8n-cls.yaml", data=None, imgsz=None, half: bool = False, int8: bool = False,
              device=None, verbose=False, format="", project=None, name=None, exist_ok: bool = False,
              batch: int | None = None, data_dir=None, **ignored) -> BenchmarkTable:
    """Benchmark ``model`` (a ``YOLO`` or anything ``YOLO()`` opens, except an exported model) in every format.

    ``data``: the dataset for top-1 (default: the one the model was trained on, else ``'digits'``); ``imgsz``: export
    and validation size (default: the model's training size, 224 for a model YAML); ``half``/``int8``: passed to the
    formats that accept them; ``format``: only these rows (``'onnx'``, or a comma list such as ``'jax,onnx'``);
    ``batch``: validation batch (default 32; exports are batch 1); ``device`` is accepted and ignored (JAX uses its
    default device, exported models run on CPU). Returns a ``BenchmarkTable`` (list of row dicts)."""
    from converters.export.core import export as run_export
    from converters.export.formats import FORMATS
    from jaxyolo.engine.model import YOLO
    from jaxyolo.engine.predict import parse_imgsz
    from jaxyolo.utils.files import run_dir

    if ignored:
        LOGGER.warning(f"WARNING: benchmark ignores {', '.join(f'{k}={v}' for k, v in ignored.items())}")
    if device not in (None, "", "cpu"):
        LOGGER.info(f"benchmark: device={device} ignored (JAX runs on its default device, exported models on CPU)")
    floor = float(verbose) if isinstance(verbose, float) else None
    t_start = time.time()
    _preload_torch()
    yolo = model if isinstance(model, YOLO) else YOLO(str(model))
    yolo._require_jax("be benchmarked")
    from jaxyolo import data as jdata

    data = data or yolo.overrides.get("data") or "digits"
    imgsz = imgsz or yolo.overrides.get("imgsz") or 224
    size = parse_imgsz(imgsz)
    imgsz = size[0] if size[0] == size[1] else size
    ds = jdata.load_dataset(str(data), data_dir=data_dir)
    if ds.nc != yolo.nc:
        raise ValueError(f"the model has {yolo.nc} classes but data={data!r} has {ds.nc}; benchmark on the dataset "
                         f"the model was trained on")
    wanted = _select(format)
    save_dir = run_dir(project, name, "benchmark", exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    out_dir = save_dir.resolve()  # absolute: some exporters run their converter in another working directory
    vbatch = int(batch or 32)
    val_kw = {"data": str(data), "imgsz": imgsz, "batch": vbatch, "verbose": False, "plots": False}
    if data_dir:
        val_kw["data_dir"] = data_dir
    x = np.random.default_rng(0).random((1, size[0], size[1], int(yolo.cfg.get("channels", 3))), dtype=np.float32)
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    precision_note = "fp32 (half/int8 apply to exports)" if (half or int8) else ""

    weights = Path(yolo.ckpt_path) if yolo.ckpt_path and str(yolo.ckpt_path).endswith(".pt") and \
        Path(yolo.ckpt_path).is_file() else None
    src_name = Path(yolo.ckpt_path).name if yolo.ckpt_path else Path(str(yolo.cfg.get("yaml_file", "model"))).name
    rows = BenchmarkTable()
    real_failures: list[str] = []

    def keep(row):
        rows.append(row)
        shown = "" if row["top1"] is None else f" top-1 {row['top1']:.4f}"
        LOGGER.info(f"benchmark: {row['format']} {row['status']}{shown} {row['note']}".rstrip())

    def weights_file():
        nonlocal weights
        if weights is None:  # a YAML/orbax model: its weights as the .pt jaxyolo would save (fp32, exact)
            weights = yolo.save(out_dir / f"{Path(src_name).stem or 'model'}.pt", half=False)
        return weights

    # JAX: the Flax model itself
    if wanted is None or "jax" in wanted:
        try:
            sz = size_mb(weights_file())
            m = yolo.val(**val_kw)
            ms = latency_ms(lambda a: yolo.forward(a), x)
            keep(_row("JAX", "jax", OK, sz, float(m.top1), ms, precision_note, weights,
                      m.speed.get("inference")))
        except Exception as e:  # noqa: BLE001
            real_failures.append(f"JAX: {_one_line(e)}")
            keep(_row("JAX", "jax", FAILED, note=_one_line(e)))
    # PyTorch: the same weights in the eager torch mirror (what torch-based exports trace)
    if wanted is None or "pytorch" in wanted:
        if not _has_module("torch"):
            keep(_row("PyTorch", "pytorch", FAILED, note="needs torch (not installed)"))
        else:
            try:
                sz = size_mb(weights_file())
                y = _with_backend(yolo, _torch_backend(yolo, size))
                m = y.val(**val_kw)
                ms = latency_ms(y.backend, x_nchw)
                keep(_row("PyTorch", "pytorch", OK, sz, float(m.top1), ms, precision_note, weights,
                          m.speed.get("inference")))
            except Exception as e:  # noqa: BLE001
                real_failures.append(f"PyTorch: {_one_line(e)}")
                keep(_row("PyTorch", "pytorch", FAILED, note=_one_line(e)))

    for fmt in FORMATS:
        if wanted is not None and fmt.arg not in wanted:
            continue
        why = export_unavailable(fmt.arg, int8=bool(int8))
        if why:
            keep(_row(fmt.name, fmt.arg, FAILED, note=why))
            continue
        kw = {}
        notes = []
        for k, v in (("half", half), ("int8", int8)):
            if v:
                if k in fmt.args:
                    kw[k] = True
                else:
                    notes.append(f"no {k} option: fp32")
        if "data" in fmt.args and (int8 or fmt.arg == "edgetpu"):
            kw["data"] = str(data)
        LOGGER.info(f"benchmark: exporting {fmt.name} ...")
        try:
            path = run_export(yolo, fmt.arg, imgsz=size, batch=1, out_dir=out_dir, **kw)
        except Exception as e:  # noqa: BLE001
            real_failures.append(f"{fmt.name}: {_one_line(e)}")
            keep(_row(fmt.name, fmt.arg, FAILED, note=_one_line(e)))
            continue
        sz = size_mb(path)
        why = inference_unavailable(fmt.arg)
        if why:
            keep(_row(fmt.name, fmt.arg, EXPORT_ONLY, sz, note="; ".join([*notes, why]), path=path))
            continue
        exported = None
        try:
            exported = YOLO(path)
            m = exported.val(**val_kw)
            ms = latency_ms(exported.backend, x_nchw)
            keep(_row(fmt.name, fmt.arg, OK, sz, float(m.top1), ms, "; ".join(notes), path,
                      m.speed.get("inference")))
        except Exception as e:  # noqa: BLE001
            if fmt.arg != "edgetpu":  # an Edge TPU model without an Edge TPU is expected, not a failure
                real_failures.append(f"{fmt.name}: {_one_line(e)}")
            keep(_row(fmt.name, fmt.arg, EXPORT_ONLY, sz, note="; ".join([*notes, _one_line(e)]), path=path))
        finally:
            del exported  # e.g. Paddle's inference child process ends with its backend

    rows.save_dir = save_dir
    rows.text = report(rows, src_name, data, imgsz, time.time() - t_start)
    print(rows.text)
    with open(save_dir / "benchmarks.log", "a", encoding="utf-8", errors="ignore") as f:
        f.write(rows.text + "\n")
    write_csv(rows, save_dir / "benchmarks.csv")
    print(f"Results saved to {save_dir}")

    problems = list(real_failures) if verbose else []
    if floor is not None:
        problems += [f"{r['format']}: top-1 {r['top1']:.4f} < floor {floor}" for r in rows
                     if r["top1"] is not None and r["top1"] < floor]
    if problems:
        raise BenchmarkFailure("Benchmark failure: " + "; ".join(problems))
    return rows


# ------------------------------------------------------------------------------------------------ the table


def _width(s: str) -> int:
    """Display width in a terminal: the status emoji (and ❔) take two columns."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else (0 if unicodedata.combining(c) or
                                                                       c == "\ufe0f" else 1) for c in s)


def _cells(r: dict) -> list[str]:
    f = (lambda v, d: "-" if v is None else f"{v:.{d}f}")
    note = r["note"] if len(r["note"]) <= NOTE_WIDTH else r["note"][:NOTE_WIDTH - 3] + "..."
    return [r["format"], r["status"], f(r["size_mb"], 1), f(r["top1"], 4), f(r["ms_per_img"], 2), f(r["fps"], 1),
            note]


def format_table(rows) -> str:
    """Rows as an aligned plain-text table (text columns left-aligned, numbers right-aligned)."""
    table = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(_width(row[i]) for row in table) for i in range(len(COLUMNS))]
    right = {2, 3, 4, 5}
    lines = []
    for row in table:
        cells = []
        for i, c in enumerate(row):
            pad = " " * (widths[i] - _width(c))
            cells.append(pad + c if i in right else (c if i == len(row) - 1 else c + pad))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def report(rows, name, data, imgsz, seconds: float) -> str:
    return (f"\nBenchmarks complete for {name} on {data} at imgsz={imgsz} ({seconds:.2f}s)\n{LEGEND}\n"
            f"{format_table(rows)}\n")


def write_csv(rows, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Format", "Status", "Size (MB)", METRIC, "Inference time (ms/im)", "FPS", "Note", "Path"])
        for r in rows:
            w.writerow([r["format"], r["status"], "" if r["size_mb"] is None else round(r["size_mb"], 3),
                        "" if r["top1"] is None else round(r["top1"], 6),
                        "" if r["ms_per_img"] is None else round(r["ms_per_img"], 3),
                        "" if r["fps"] is None else round(r["fps"], 1), r["note"], r["path"] or ""])
