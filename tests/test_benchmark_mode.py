"""``benchmark`` mode (issue 9, item 3): ``jaxyolo benchmark model=W data=D imgsz=N`` / ``YOLO(W).benchmark(...)``.

A YOLOv8n-cls with random weights (nc=10, digits' class count) is benchmarked on the embedded digits at imgsz 32 over
the quick formats (JAX, PyTorch, TorchScript, ONNX, OpenVINO). Checked: the rows (status, size, top-1 against the
exported model's own ``val`` and against the JAX row, latency), the printed/written table, that a missing back-end or a
failing export is recorded with its reason while the other formats still run, ``verbose`` (failures and the top-1
floor), and the command line.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

try:  # torchvision (triton) must load before TensorFlow, which the input pipeline imports: the other order segfaults
    import torchvision  # noqa: F401
except ImportError:
    pass

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from jaxyolo import YOLO  # noqa: E402
from jaxyolo.engine import benchmark as bm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMGSZ = 32
HAS_OPENVINO = bm._has_module("openvino")


@pytest.fixture(autouse=True)
def quick_timing(monkeypatch):
    monkeypatch.setattr(bm, "LATENCY_BUDGET_S", 0.2)  # the latency loop's budget per format (1 s by default)


@pytest.fixture(scope="module")
def weights(workdir):
    """A random-weight yolov8n-cls for digits' 10 classes, saved as a .pt that remembers imgsz=32."""
    y = YOLO("yolov8n-cls.yaml", nc=10)
    y.overrides["imgsz"] = IMGSZ
    return Path(y.save(workdir / "digits-n.pt", half=False))


@pytest.fixture(scope="module")
def subset(weights):
    """One run over the quick formats (the model given as a YOLO object, imgsz from the checkpoint)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bm, "LATENCY_BUDGET_S", 0.2)
        return YOLO(str(weights)).benchmark(data="digits", format="jax,pytorch,torchscript,onnx,openvino")


def test_rows_of_the_quick_formats(subset):
    assert [r["arg"] for r in subset] == ["jax", "pytorch", "torchscript", "onnx", "openvino"]
    jax_top1 = subset.row("jax")["top1"]
    for r in subset:
        if r["arg"] == "openvino" and not HAS_OPENVINO:
            assert r["status"] == bm.FAILED and "openvino" in r["note"]
            continue
        assert r["status"] == bm.OK, r
        assert r["size_mb"] > 0 and r["ms_per_img"] > 0 and r["fps"] == pytest.approx(1000 / r["ms_per_img"])
        assert 0.0 <= r["top1"] <= 1.0
        assert abs(r["top1"] - jax_top1) <= 0.005, (r["format"], r["top1"], jax_top1)
    # JAX and PyTorch share the weights file: the model's own .pt
    assert subset.row("jax")["path"] == subset.row("pytorch")["path"]
    for arg in ("torchscript", "onnx"):
        assert Path(subset.row(arg)["path"]).parent == subset.save_dir.resolve()
    # an exported row's top-1 is what the artifact's own val gives
    onnx = subset.row("ONNX")
    assert onnx["path"].endswith("digits-n.onnx")
    assert onnx["top1"] == YOLO(onnx["path"]).val(data="digits", imgsz=IMGSZ, verbose=False).top1


def test_table_text_and_files(subset):
    text = subset.text
    assert "Benchmarks complete for digits-n.pt on digits at imgsz=32" in text
    lines = text.strip().splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("Format"))
    table = lines[header:header + 1 + len(subset)]
    assert [ln.split()[0] for ln in table[1:]] == [r["format"] for r in subset]
    # aligned: the size column ends at the same display column on every line
    ends = {bm._width(ln[:ln.index(c) + len(c)]) for ln, c in
            zip(table, ["Size (MB)"] + [bm._cells(r)[2] for r in subset])}
    assert len(ends) == 1, table
    log = (subset.save_dir / "benchmarks.log").read_text(encoding="utf-8")
    assert text.strip() in log
    with open(subset.save_dir / "benchmarks.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["Format"] for r in rows] == [r["format"] for r in subset]
    assert float(rows[0][bm.METRIC]) == pytest.approx(subset[0]["top1"], abs=1e-6)


def test_missing_backend_and_failing_export_do_not_stop_the_others(weights, monkeypatch):
    real = bm._has_module
    monkeypatch.setattr(bm, "_has_module", lambda m: m != "openvino" and real(m))

    def boom(*a, **k):
        raise RuntimeError("simulated TorchScript failure\nsecond line")

    monkeypatch.setattr("converters.export.torchscript.export", boom)
    rows = bm.benchmark(str(weights), data="digits", imgsz=IMGSZ, format="torchscript,onnx,openvino")
    ts, ox, ov = rows
    assert (ts["status"], ts["note"]) == (bm.FAILED, "simulated TorchScript failure")  # its first line
    assert ts["size_mb"] is None and ts["top1"] is None
    assert ov["status"] == bm.FAILED and "needs openvino (not installed" in ov["note"]
    assert ox["status"] == bm.OK and ox["top1"] is not None
    assert "simulated TorchScript failure" in rows.text
    # verbose=True (Ultralytics): a real failure is an error once the table is written; a missing back-end is not
    with pytest.raises(bm.BenchmarkFailure, match="TorchScript: simulated"):
        bm.benchmark(str(weights), data="digits", imgsz=IMGSZ, format="torchscript,openvino", verbose=True)
    assert bm.benchmark(str(weights), data="digits", imgsz=IMGSZ, format="openvino", verbose=True)[0]["status"] \
        == bm.FAILED


def test_availability_rules(monkeypatch):
    import platform

    if not bm._has_module("tensorrt"):
        assert "NVIDIA GPU" in bm.export_unavailable("engine")
    if platform.system() != "Darwin":
        assert "macOS" in bm.inference_unavailable("coreml")
    assert "JavaScript" in bm.inference_unavailable("tfjs")
    monkeypatch.setattr(bm.shutil, "which", lambda name: None)
    if bm._has_module("tensorflow"):
        assert "edgetpu_compiler" in bm.export_unavailable("edgetpu")
    assert bm._one_line(RuntimeError("pnnx failed (exit 255):\nlog\nopen failed x.pt")) == \
        "pnnx failed (exit 255): ... open failed x.pt"
    assert bm._select("") is None
    assert bm._select("JAX, tensorrt,.onnx") == ["jax", "engine", "onnx"]
    with pytest.raises(ValueError, match="not supported"):
        bm._select("jpeg")


def test_one_format_and_the_top1_floor(weights, capsys):
    with pytest.raises(bm.BenchmarkFailure, match=r"ONNX: top-1 .* < floor 1.5"):
        bm.benchmark(str(weights), data="digits", imgsz=IMGSZ, format="onnx", verbose=1.5)
    out = capsys.readouterr().out  # the table is printed (and written) before the check
    table = out[out.index("Format"):out.index("Results saved")].strip().splitlines()
    assert len(table) == 2 and table[1].startswith("ONNX") and bm.OK in table[1]


def test_cli_prints_the_table(weights, workdir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAXYOLO_DATASETS_DIR": str(workdir / "datasets")}
    p = subprocess.run([sys.executable, "-m", "jaxyolo.cli", "benchmark", f"model={weights}", "data=digits",
                        f"imgsz={IMGSZ}", "format=onnx"], cwd=workdir, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Benchmarks complete for digits-n.pt on digits at imgsz=32" in p.stdout
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("ONNX"))
    assert bm.OK in line
    assert "Results saved to runs/classify/benchmark" in p.stdout


def test_cli_errors_and_help(capsys):
    from jaxyolo.cli import HELP, entrypoint

    assert "benchmark" in HELP
    assert entrypoint(["benchmark", "data=digits"]) == 1
    assert "model= is required for benchmark" in capsys.readouterr().err
