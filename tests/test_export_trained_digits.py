"""Exported *trained* models on `digits`: the accuracy acceptance checks of the export issues (7: ONNX branch, 8: TF
branch) that random-weight models cannot make.

Models: yolov8n-cls and yolo11n-cls trained with the README recipe (experiments/digits.py: 10 epochs, imgsz 32, batch
64, fliplr 0), from the session fixtures in conftest.py. Each is exported once per format variant (module-scoped cache)
at imgsz 32 from its ``best.pt``, and for every format that runs here:

* ``YOLO(exported).val(data='digits', imgsz=32)`` top-1 is within 0.5 points of the JAX model's (TFLite
  and OpenVINO int8: within 2, as issue 8 allows; OpenVINO int8 held to 0.5 until openvino 2026.4 / nncf 3.4,
  which give yolo11n-cls 0.83 points);
* int8 (OpenVINO NNCF calibrated on ``data='digits'``, TFLite full-integer) top-1 agrees with the fp32 JAX model on
  >= 95% of the digits val split, measured on the runtime's probabilities for the very inputs ``val`` sees (the eval
  transform via ``jaxyolo.data.eval_batches``).

The ``.pb`` is the frozen graph of the ``saved_model`` export (``pb.freeze`` + ``pb.write``: exactly what
``export(format='pb')`` does after building the same SavedModel), which saves a second onnx2tf conversion per model;
``format='pb'`` end to end is covered by tests/test_export_tf_branch.py.

The measured numbers are collected in ``RESULTS`` and printed as a table when the module finishes (``pytest -s``).
"""

try:  # torchvision (triton) must load before TensorFlow, which the data pipeline and TF exporters import
    import torchvision  # noqa: F401
except ImportError:
    pass

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

IMGSZ = 32
N_VAL = 360  # the digits val split
MODELS = {"yolov8n-cls": "digits_yolov8n", "yolo11n-cls": "digits_yolo11n"}  # arch -> session fixture
TF = ("tensorflow",)
ONNX2TF = ("tensorflow", "onnx", "onnx2tf", "onnx_graphsurgeon", "sng4onnx", "tf_keras")
# variant -> (format, export arguments, modules it needs, max |val top-1 - JAX top-1| in points)
FORMATS = {
    "onnx": ("onnx", {}, ("onnx", "onnxruntime"), 0.5),
    "torchscript": ("torchscript", {}, ("torch",), 0.5),
    "openvino": ("openvino", {}, ("onnx", "openvino"), 0.5),
    "openvino-fp16": ("openvino", {"half": True}, ("onnx", "openvino"), 0.5),
    "openvino-int8": ("openvino", {"int8": True, "data": "digits"}, ("onnx", "openvino", "nncf"), 2.0),
    "ncnn": ("ncnn", {}, ("torch", "pnnx", "ncnn"), 0.5),
    "paddle": ("paddle", {}, ("torch", "paddle", "x2paddle"), 0.5),
    "tflite": ("tflite", {}, TF, 0.5),
    "tflite-fp16": ("tflite", {"half": True}, TF, 0.5),
    "tflite-int8": ("tflite", {"int8": True, "data": "digits"}, TF, 2.0),
    "saved_model": ("saved_model", {}, ONNX2TF, 0.5),
    "pb": ("pb", {}, ONNX2TF, 0.5),
}
INT8 = ["openvino-int8", "tflite-int8"]
INT8_MIN_AGREEMENT = 0.95
RESULTS: dict = {}  # (arch, variant) -> measured numbers
TIMES: dict = {}  # (arch, variant) -> export / inference seconds


def need(*modules):
    """Skip unless the runtime's packages are installed (found, not imported: see test_export_onnx_branch.need)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def trained(request, arch):
    return request.getfixturevalue(MODELS[arch])


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not RESULTS:
        return
    print("\n\nExported trained digits models (val split, 360 images): top-1 in %, vs the JAX model")
    print(f"{'model':<12} {'variant':<14} {'val top1':>8} {'JAX top1':>8} {'diff':>6} {'agree':>7} {'max|dp|':>8} "
          f"{'export s':>8} {'infer s':>7} {'val s':>6}")
    for (arch, key), r in sorted(RESULTS.items(), key=lambda kv: (kv[0][0], list(FORMATS).index(kv[0][1]))):
        print(f"{arch:<12} {key:<14} {100 * r['top1']:>8.2f} {100 * r['jax_top1']:>8.2f} "
              f"{100 * (r['top1'] - r['jax_top1']):>+6.2f} {100 * r['agreement']:>6.2f}% {r['max_dp']:>8.2g} "
              f"{r['export_s']:>8.1f} {r['infer_s']:>7.1f} {r['val_s']:>6.1f}")


@pytest.fixture(scope="module")
def val_split(digits_env):
    """The digits val split after the eval transform, exactly the inputs ``val`` feeds: (uint8 NHWC, labels)."""
    from jaxyolo.data import eval_batches, load_dataset

    xs, ys = [], []
    for images, labels, mask in eval_batches(load_dataset("digits"), "val", imgsz=IMGSZ, batch_size=64):
        m = np.asarray(mask, bool)
        xs.append(np.asarray(images)[m])
        ys.append(np.asarray(labels)[m])
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int64)
    assert x.shape == (N_VAL, IMGSZ, IMGSZ, 3) and x.dtype == np.uint8
    return x, y


@pytest.fixture(scope="module")
def jax_models(val_split):
    """TrainedDigits -> (YOLO loaded from its best.pt, its probabilities on the val split), loaded on first use."""
    from jaxyolo import YOLO

    cache = {}

    def get(t):
        if t.arch not in cache:
            y = YOLO(str(t.weights))
            cache[t.arch] = y, y.forward(val_split[0])
        return cache[t.arch]

    return get


@pytest.fixture(scope="module")
def exported(tmp_path_factory, jax_models, digits_env, val_split):
    """(TrainedDigits, variant) -> (YOLO on the exported artifact, its probabilities on the val split); each variant
    is exported once for the module (its export and inference seconds go to TIMES)."""
    from converters.export import export, pb
    from converters.export.metadata import read_metadata_yaml
    from jaxyolo import YOLO

    cache = {}
    base = tmp_path_factory.mktemp("digits_exports")

    def get(t, key):
        arch = t.arch
        if (arch, key) not in cache:
            fmt, kw, _, _ = FORMATS[key]
            y, _ = jax_models(t)
            t0 = time.perf_counter()
            if key == "pb":  # freeze the saved_model export (see the module docstring)
                saved = get(t, "saved_model")[0].ckpt_path
                t0 = time.perf_counter()
                path = base / f"{arch}-{key}" / f"{Path(y.ckpt_path).stem}.pb"
                path.parent.mkdir(parents=True)
                pb.write(pb.freeze(Path(saved)), read_metadata_yaml(Path(saved)), path)
            else:
                path = export(y, fmt, imgsz=IMGSZ, out_dir=base / f"{arch}-{key}", **kw)
            dt = time.perf_counter() - t0
            m = YOLO(str(path))
            assert m.kind == "exported" and m.names == y.names and m.backend.fmt == fmt
            t0 = time.perf_counter()
            probs = m.backend(np.ascontiguousarray(val_split[0].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)
            TIMES[(arch, key)] = {"export_s": dt, "infer_s": time.perf_counter() - t0}
            cache[(arch, key)] = m, probs
        return cache[(arch, key)]

    return get


CASES = [pytest.param(a, k, id=f"{a}-{k}") for a in MODELS for k in FORMATS]


@pytest.mark.parametrize("arch,key", CASES)
def test_val_of_export_matches_jax(request, arch, key, exported, jax_models, val_split):
    """Issue 7/8: ``val`` on every exported format reports top-1 within 0.5 points of the JAX model's (FORMATS)."""
    fmt, kw, modules, tol = FORMATS[key]
    need(*modules)
    t = trained(request, arch)
    _, ref = jax_models(t)
    m, probs = exported(t, key)
    t0 = time.perf_counter()
    metrics = m.val(data="digits", imgsz=IMGSZ, verbose=False)
    val_s = time.perf_counter() - t0
    x, labels = val_split
    assert metrics.n == N_VAL
    own_top1 = float((probs.argmax(1) == labels).mean())
    r = RESULTS[(arch, key)] = {
        "top1": float(metrics.top1), "jax_top1": t.top1, "agreement": float((probs.argmax(1) == ref.argmax(1)).mean()),
        "max_dp": float(np.abs(probs - ref).max()), **TIMES[(arch, key)], "val_s": val_s, "probs_top1": own_top1}
    # val and the module's own pass over the same preprocessed inputs measure the same thing (batching may differ)
    assert abs(own_top1 - metrics.top1) <= 1 / N_VAL + 1e-9, (own_top1, metrics.top1)
    diff = 100 * abs(metrics.top1 - t.top1)
    assert diff <= tol, (f"{arch} {key}: val top-1 {100 * metrics.top1:.2f}% vs JAX {100 * t.top1:.2f}% "
                         f"({diff:.2f} points > {tol}); top-1 agreement with JAX {100 * r['agreement']:.2f}%, "
                         f"max |dp| {r['max_dp']:.3g}")


@pytest.mark.parametrize("arch,key", [pytest.param(a, k, id=f"{a}-{k}") for a in MODELS for k in INT8])
def test_int8_top1_agreement_with_fp32(request, arch, key, exported, jax_models):
    """Issue 7/8: int8 top-1 agrees with the fp32 (JAX) model on >= 95% of the digits val split."""
    need(*FORMATS[key][2])
    t = trained(request, arch)
    _, ref = jax_models(t)
    m, probs = exported(t, key)
    assert probs.shape == ref.shape == (N_VAL, 10)
    assert np.allclose(probs.sum(1), 1, atol=0.05)  # dequantized int8 softmax: still (about) a distribution
    agree = float((probs.argmax(1) == ref.argmax(1)).mean())
    assert agree >= INT8_MIN_AGREEMENT, f"{arch} {key}: top-1 agreement with fp32 {100 * agree:.2f}% < 95%"


def test_readme_recipe_reaches_093(digits_yolov8n):
    """Issue 5: the README job (experiments/digits.py: yolov8n-cls, 10 epochs, imgsz 32) reaches val top-1 >= 0.93."""
    t = digits_yolov8n
    assert t.epochs == 10 and t.imgsz == 32
    assert t.train_top1 >= 0.93, f"best-epoch val top-1 {t.train_top1:.4f}"
    assert abs(t.top1 - t.train_top1) <= 2 / N_VAL  # best.pt (fp16) validates like the fp32 EMA weights


def test_yolo11n_recipe_trains(digits_yolo11n):
    """The same recipe trains yolo11n-cls well above chance (its exports are only meaningful on a real classifier)."""
    t = digits_yolo11n
    assert t.top1 >= 0.85, f"yolo11n-cls after {t.epochs} epochs: val top-1 {t.top1:.4f}"
