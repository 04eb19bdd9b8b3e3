"""Export chain, PyTorch/ONNX branch (issue 7): ONNX, TorchScript, OpenVINO, TensorRT, ncnn, Paddle, CoreML.

Every artifact is checked against the JAX model (not the torch mirror it is traced from) on the same inputs: fp32
within 1e-4 max abs of JAX's probabilities, fp16 within 1e-2. Models are YOLOv8n-cls and YOLO11n-cls with random
weights and calibrated BatchNorm statistics, so outputs depend on the input. The real Ultralytics package loads our
ONNX/TorchScript (and OpenVINO/ncnn/Paddle) exports, reads their metadata and predicts what jaxyolo predicts.
"""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

try:  # torchvision (triton) must load before TensorFlow, which some exporters import: the other order segfaults
    import torchvision  # noqa: F401
except ImportError:
    pass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from converters.export import ExportError, export  # noqa: E402
from converters.export.core import output_path  # noqa: E402
from converters.export.formats import get_format  # noqa: E402
from converters.torch_weights.mapping import state_dict_to_variables  # noqa: E402
from converters.torch_weights.mirror import build_mirror  # noqa: E402
from jaxyolo import YOLO  # noqa: E402
from jaxyolo.engine.backends import load_backend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMGSZ = 64
NC = 10
MODELS = ["yolov8n-cls", "yolo11n-cls"]
FP32_TOL, FP16_TOL = 1e-4, 1e-2


def images(n, h=IMGSZ, w=IMGSZ, seed=0):
    """NCHW float32 [0, 1] images with different global colour/structure (not just i.i.d. noise)."""
    rng = np.random.default_rng(seed)
    field = rng.random((n, 3, 4, 4)).repeat(-(-h // 4), axis=2).repeat(-(-w // 4), axis=3)[:, :, :h, :w]
    a = rng.uniform(0.3, 0.9, (n, 1, 1, 1))
    return (a * field + (1 - a) * rng.random((n, 3, h, w))).astype(np.float32)


def _shape_only_init(module, seed=0, ch=3):
    shapes = jax.eval_shape(lambda k: module.init(k, jnp.zeros((1, 32, 32, ch), jnp.float32)), jax.random.PRNGKey(0))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def calibrated(name, seed=0):
    """A jaxyolo model with random weights, BatchNorm statistics of a random batch (jittered) and a Linear layer scaled
    so that logits vary by ~2 across inputs: with default init the output hardly depends on the input."""
    with pytest.MonkeyPatch.context() as mp:  # skip the (slow) jit-compiled Flax init: all variables are set below
        mp.setattr("jaxyolo.engine.model.init_variables", _shape_only_init, raising=False)
        y = YOLO(f"{name}.yaml", nc=NC, seed=seed)
    y.names = {i: f"cls_{i}" for i in range(NC)}
    torch.manual_seed(seed)
    m = build_mirror(y.module.specs, y.cfg, y.names)  # torch's default (random) init, like Ultralytics'
    g = torch.Generator().manual_seed(seed)
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    x = torch.from_numpy(images(8, seed=seed + 100))
    with torch.no_grad():
        for b in bns:
            b.weight.copy_(torch.rand(b.num_features, generator=g).mul(0.4).add(0.8))
            b.bias.copy_(torch.rand(b.num_features, generator=g).sub(0.5).mul(0.4))
            b.momentum = 1.0
        m.train()
        m(x)
        for b in bns:
            b.running_mean += torch.rand(b.num_features, generator=g).sub(0.5).mul(0.1) * b.running_var.sqrt()
            b.running_var *= torch.rand(b.num_features, generator=g).mul(0.2).add(0.9)
            b.running_var += 0.15 * b.running_var.mean()
        m.eval()
        feats = []
        m.model[-1].linear.register_forward_hook(lambda mod, i, o: feats.append(i[0]))
        m(x)
        f = feats[-1]  # (8, 1280) pooled features
        lin = m.model[-1].linear
        w = torch.randn(lin.weight.shape, generator=g)
        logits = (f - f.mean(0)) @ w.T
        w *= 2.0 / logits.std(0).mean()
        lin.weight.copy_(w)
        lin.bias.copy_(-(f.mean(0) @ w.T))
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    y.variables = jax.tree.map(jnp.asarray, state_dict_to_variables(sd))
    y._forward = None
    return y


def need(*modules):
    """Skip unless the modules are installed (found, not imported: importing openvino or nncf outside our exporter
    starts their usage telemetry, which converters.export.openvino keeps off during its own calls)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def jax_probs(y, x_nchw):
    return np.asarray(y.forward(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))))


@pytest.fixture(scope="module")
def models():
    return {n: calibrated(n, seed=i) for i, n in enumerate(MODELS)}


@pytest.fixture(scope="module")
def x():
    return images(4, seed=7)


@pytest.fixture(scope="module")
def ref(models, x):
    return {n: jax_probs(y, x) for n, y in models.items()}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, models):
    """Export once per (model, format, options) for the whole module."""
    cache = {}
    base = tmp_path_factory.mktemp("exports")

    def get(name, fmt, **kw):
        key = (name, fmt, tuple(sorted(kw.items())))
        if key not in cache:
            out = base / f"{name}-{fmt}-{len(cache)}"
            cache[key] = Path(export(models[name], fmt, imgsz=IMGSZ, out_dir=out, **kw))
        return cache[key]

    return get


def test_models_are_input_dependent(ref):
    for name, p in ref.items():
        assert np.allclose(p.sum(1), 1, atol=1e-5)
        assert p.std(0).max() > 0.05, f"{name}: outputs hardly depend on the input"
        assert len(set(p.argmax(1))) >= 2, f"{name}: every input gets the same class"


def check_backend(b, name, ref, x, tol=FP32_TOL):
    assert b.names == {i: f"cls_{i}" for i in range(NC)}
    assert b.imgsz == (IMGSZ, IMGSZ)
    assert b.meta["task"] == "classify" and b.meta["imgsz"] == [IMGSZ, IMGSZ]
    out = b(x)
    assert out.shape == (len(x), NC) and out.dtype == np.float32
    err = float(np.abs(out - ref[name]).max())
    assert err < tol, f"{b.fmt} {name}: max |diff| vs JAX = {err:.3g} (tolerance {tol})"
    assert (out.argmax(1) == ref[name].argmax(1)).all()
    return err


# ---------------------------------------------------------------------------------------------------------------- ONNX

@pytest.mark.parametrize("name", MODELS)
def test_onnx_matches_jax_and_is_valid(exports, name, ref, x):
    path = exports(name, "onnx")
    assert path.name == f"{name}.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert model.ir_version <= 10
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "images" and out.name == "output0"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, IMGSZ, IMGSZ]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, NC]
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops and ops[-1] == "Softmax"
    if name.startswith("yolov8"):  # transpose-free (YOLO11's attention has its own two, as in Ultralytics' graph)
        assert "Transpose" not in ops
    props = {p.key: p.value for p in model.metadata_props}
    assert {"names", "imgsz", "task", "batch", "stride", "args", "description", "version", "date"} <= set(props)
    assert props["task"] == "classify" and props["imgsz"] == f"[{IMGSZ}, {IMGSZ}]"
    b = load_backend(path)
    assert b.fmt == "onnx" and b.batch == 1  # static graph: the backend feeds the 4 images one by one
    check_backend(b, name, ref, x)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_dynamic_batch_and_size(exports, models, name, ref, x):
    path = exports(name, "onnx", dynamic=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    b = load_backend(path)
    assert b.batch is None
    check_backend(b, name, ref, x)  # one call with batch 4
    check_backend(b, name, {name: ref[name][:3]}, x[:3])
    x2 = images(2, 96, 64, seed=3)  # another image size through the same graph
    err = np.abs(b(x2) - jax_probs(models[name], x2)).max()
    assert err < FP32_TOL


def test_onnx_half(exports, ref, x):
    path = exports("yolov8n-cls", "onnx", half=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O, fp16 inside
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    check_backend(load_backend(path), "yolov8n-cls", ref, x, tol=FP16_TOL)


def test_onnx_options(models, ref, x, tmp_path):
    y = models["yolov8n-cls"]
    path = Path(export(y, "onnx", imgsz=IMGSZ, batch=2, opset=20, simplify=False, out_dir=tmp_path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 20
    b = load_backend(path)
    assert b.batch == 2 and b.meta["batch"] == 2 and b.meta["args"]["simplify"] is False
    assert np.abs(b(x[:3]) - ref["yolov8n-cls"][:3]).max() < FP32_TOL  # 3 images through a batch-2 graph
    with pytest.raises(ExportError, match="opset"):
        export(y, "onnx", imgsz=IMGSZ, opset=11, out_dir=tmp_path / "old")
    assert not (tmp_path / "old" / "yolov8n-cls.onnx").exists()


# --------------------------------------------------------------------------------------------------------- TorchScript

@pytest.mark.parametrize("name", MODELS)
def test_torchscript_matches_jax(exports, name, ref, x):
    path = exports(name, "torchscript")
    assert path.name == f"{name}.torchscript"
    extra = {"config.txt": ""}
    torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["config.txt"])
    assert meta["names"]["3"] == "cls_3" and meta["imgsz"] == [IMGSZ, IMGSZ]
    b = load_backend(path)
    assert b.fmt == "torchscript" and b.batch is None
    check_backend(b, name, ref, x)


# ------------------------------------------------------------------------------------------------------------ OpenVINO

@pytest.mark.parametrize("name,kw", [("yolov8n-cls", {}), ("yolo11n-cls", {"dynamic": True})])
def test_openvino_matches_jax(exports, name, kw, ref, x):
    need("openvino")
    path = exports(name, "openvino", **kw)
    assert path.name == f"{name}_openvino_model"
    assert sorted(p.name for p in path.iterdir()) == sorted([f"{name}.xml", f"{name}.bin", "metadata.yaml"])
    b = load_backend(path)
    assert b.batch == (None if kw.get("dynamic") else 1)
    check_backend(b, name, ref, x)


def test_openvino_half(exports, ref, x):
    need("openvino")
    path = exports("yolov8n-cls", "openvino", half=True)
    assert 'element_type="f16"' in (path / "yolov8n-cls.xml").read_text()
    check_backend(load_backend(path), "yolov8n-cls", ref, x, tol=FP16_TOL)


# ---------------------------------------------------------------------------------------------------- ncnn, Paddle

@pytest.mark.parametrize("name", MODELS)
def test_ncnn_matches_jax(exports, name, ref, x):
    need("pnnx", "ncnn")
    path = exports(name, "ncnn")
    assert {"model.ncnn.param", "model.ncnn.bin", "metadata.yaml"} <= {p.name for p in path.iterdir()}
    check_backend(load_backend(path), name, ref, x)


def test_paddle_matches_jax(exports, ref, x):
    need("paddle", "x2paddle")
    path = exports("yolo11n-cls", "paddle")
    assert (path / "inference_model" / "model.json").is_file() and (path / "metadata.yaml").is_file()
    b = load_backend(path)
    assert b.batch == 1
    check_backend(b, "yolo11n-cls", ref, x)


# ------------------------------------------------------------------------------------------------------------ TensorRT

def _have_tensorrt():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_tensorrt_header_roundtrip(tmp_path):
    from converters.export.tensorrt import read_engine_file

    meta = {"names": {0: "a"}, "imgsz": [IMGSZ, IMGSZ]}
    header = json.dumps(meta).encode()
    p = tmp_path / "m.engine"
    p.write_bytes(len(header).to_bytes(4, "little") + header + b"\x00ENGINEBYTES")
    got, blob = read_engine_file(p)
    assert got["imgsz"] == [IMGSZ, IMGSZ] and blob == b"\x00ENGINEBYTES"
    p.write_bytes(b"\xff\xff\xff\x7fnot-a-header")  # an engine without Ultralytics' header
    assert read_engine_file(p) == ({}, b"\xff\xff\xff\x7fnot-a-header")


def test_tensorrt_missing_is_a_clear_error(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(ExportError) as e:
        export(models["yolov8n-cls"], "engine", imgsz=IMGSZ, out_dir=tmp_path)
    msg = str(e.value)
    assert "jaxyolo[tensorrt]" in msg and "NVIDIA" in msg and "cannot be installed here" in msg
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not _have_tensorrt(), reason="TensorRT cannot be installed here: its PyPI packages download from "
                    "NVIDIA's index; install it on a machine with an NVIDIA GPU")
@pytest.mark.parametrize("kw,tol", [({}, FP32_TOL), ({"half": True}, FP16_TOL), ({"dynamic": True, "batch": 4},
                                                                                  FP32_TOL)])
def test_tensorrt_engine_matches_jax(models, ref, x, tmp_path, kw, tol):
    path = Path(export(models["yolov8n-cls"], "engine", imgsz=IMGSZ, out_dir=tmp_path, **kw))
    b = load_backend(path)
    check_backend(b, "yolov8n-cls", ref, x, tol=tol)


# ------------------------------------------------------------------------------- missing back-ends, failing exports

@pytest.mark.parametrize("fmt,module", [("onnx", "onnx"), ("openvino", "openvino"), ("ncnn", "pnnx"),
                                        ("coreml", "coremltools"), ("paddle", "x2paddle")])
def test_missing_backend_names_the_extra(models, tmp_path, monkeypatch, fmt, module):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ExportError) as e:
        export(models["yolov8n-cls"], fmt, imgsz=IMGSZ, out_dir=tmp_path)
    extra = get_format(fmt).extra
    assert f"jaxyolo[{extra}]" in str(e.value)
    assert not list(tmp_path.iterdir()), "a failed export left files behind"


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "torchscript"])
def test_failing_export_leaves_nothing(models, tmp_path, monkeypatch, fmt):
    if fmt == "openvino":
        need("openvino")
        from converters.export.openvino import telemetry_off

        with telemetry_off():
            import openvino as ov

        def broken(model, path, **kw):
            Path(path).write_text("half-written")
            raise RuntimeError("disk full")

        monkeypatch.setattr(ov, "save_model", broken)
    elif fmt == "onnx":
        def broken(*a, **k):
            raise onnx.checker.ValidationError("broken graph")

        monkeypatch.setattr(onnx.checker, "check_model", broken)
    else:
        def broken(obj, f, *a, **k):
            Path(f).write_bytes(b"PK-partial")
            raise RuntimeError("disk full")

        monkeypatch.setattr(torch.jit, "save", broken)
    y = models["yolov8n-cls"]
    final = output_path(y, get_format(fmt), tmp_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":  # an existing export is kept when the new one fails
        final.write_bytes(b"previous")
    with pytest.raises((ExportError, RuntimeError)):
        export(y, fmt, imgsz=IMGSZ, out_dir=tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ([final.name] if fmt == "onnx" else []), left
    if fmt == "onnx":
        assert final.read_bytes() == b"previous"


# ---------------------------------------------------------------------------------------------------------------- CLI

def test_cli_onnx_from_saved_pt(tmp_path, models, x):
    pt = models["yolo11n-cls"].save(tmp_path / "best.pt")  # fp16 weights, like Ultralytics' best.pt
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "converters.export", "--to", "onnx", "--weights", str(pt),
                        "--imgsz", str(IMGSZ), "--dynamic"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path == tmp_path / "best.onnx" and path.is_file()
    b = load_backend(path)
    assert b.names == models["yolo11n-cls"].names and b.batch is None
    want = jax_probs(YOLO(str(pt)), x)  # the weights as stored in the .pt
    assert np.abs(b(x) - want).max() < FP32_TOL


# --------------------------------------------------------------------------------------------------------- Ultralytics

def _bgr_image(seed=0):
    """A uint8 BGR image of exactly IMGSZ x IMGSZ: Ultralytics' classify preprocessing (resize + centre crop to IMGSZ)
    leaves it unchanged, so both sides see the same [0, 1] RGB input."""
    return (np.random.default_rng(seed).random((IMGSZ, IMGSZ, 3)) * 255).astype(np.uint8)


@pytest.mark.ultralytics
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("fmt,kw", [("onnx", {}), ("onnx", {"dynamic": True}), ("torchscript", {})])
def test_ultralytics_loads_and_predicts_our_export(exports, models, name, fmt, kw):
    ultralytics = pytest.importorskip("ultralytics")
    path = exports(name, fmt, **kw)
    u = ultralytics.YOLO(str(path), task="classify")
    img = _bgr_image(seed=len(name))
    # static graphs: no imgsz, Ultralytics takes it from our metadata; dynamic ones: it uses its own default size
    r = u.predict(img, verbose=False, **({"imgsz": IMGSZ} if kw.get("dynamic") else {}))[0]
    backend = u.predictor.model
    assert list(backend.imgsz) == [IMGSZ, IMGSZ] and backend.task == "classify"
    assert r.names == models[name].names
    want = models[name].forward(img[..., ::-1].copy()[None])[0]
    assert r.probs.top1 == int(want.argmax())
    assert np.abs(r.probs.data.cpu().numpy() - want).max() < FP32_TOL


# Ultralytics imports Paddle in its own process: Paddle's libphi_core needs its bundled oneDNN (libdnnl.so.3, 3.x
# with the *_v2 symbols), and once jaxyolo's oneDNN 3.2 (the same soname) or TensorFlow is loaded in a process, the
# import fails. jaxyolo itself runs Paddle in a child process (converters/export/paddle.py) for that reason.
_ULTRALYTICS_PADDLE = """
import json, sys
import numpy as np
import ultralytics
u = ultralytics.YOLO(sys.argv[1], task="classify")
r = u.predict(np.load(sys.argv[2]), verbose=False)[0]
print(json.dumps({"names": {str(k): v for k, v in r.names.items()}, "imgsz": list(u.predictor.model.imgsz),
                  "probs": r.probs.data.cpu().numpy().tolist()}))
"""


@pytest.mark.ultralytics
@pytest.mark.parametrize("fmt", ["openvino", "ncnn", "paddle"])
def test_ultralytics_reads_our_directory_exports(exports, models, fmt, tmp_path):
    ultralytics = pytest.importorskip("ultralytics")
    need(fmt)
    name = "yolo11n-cls" if fmt == "paddle" else "yolov8n-cls"
    path = exports(name, fmt)
    img = _bgr_image(seed=5)
    if fmt == "paddle":
        np.save(tmp_path / "img.npy", img)
        p = subprocess.run([sys.executable, "-c", _ULTRALYTICS_PADDLE, str(path), str(tmp_path / "img.npy")],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        out = json.loads(p.stdout.strip().splitlines()[-1])
        names, imgsz, probs = {int(k): v for k, v in out["names"].items()}, out["imgsz"], np.array(out["probs"])
    else:
        off = contextlib.nullcontext()
        if fmt == "openvino":  # (OpenVINO's usage telemetry stays off in the tests too)
            from converters.export.openvino import telemetry_off

            off = telemetry_off()
        with off, contextlib.redirect_stdout(None):
            u = ultralytics.YOLO(str(path), task="classify")
            r = u.predict(img, verbose=False)[0]
        names, imgsz, probs = r.names, list(u.predictor.model.imgsz), r.probs.data.cpu().numpy()
    assert names == models[name].names and imgsz == [IMGSZ, IMGSZ]
    want = models[name].forward(img[..., ::-1].copy()[None])[0]
    assert int(probs.argmax()) == int(want.argmax())  # Ultralytics runs OpenVINO in bf16 and ncnn in fp16 here
    assert np.abs(probs - want).max() < FP16_TOL


# ---------------------------------------------- last: tests that load TensorFlow (int8 calibration data, coremltools)
# (TensorFlow stays out of the process for the tests above; Ultralytics' Paddle check runs in a child of its own.)

def test_openvino_int8(models, ref, x, tmp_path, monkeypatch):
    need("openvino", "nncf")
    from converters.export import openvino as ov_export

    from PIL import Image

    monkeypatch.setattr(ov_export, "INT8_CALIB_IMAGES", 16)
    y = models["yolov8n-cls"]
    with pytest.raises(ExportError, match="calibration"):
        export(y, "openvino", imgsz=IMGSZ, int8=True, out_dir=tmp_path / "nodata")
    assert not (tmp_path / "nodata" / "yolov8n-cls_openvino_model").exists()
    data = tmp_path / "calib"  # an image-folder dataset drawn like the test inputs
    for split, n, seed in (("train", 4, 1), ("val", 16, 2)):
        for i, im in enumerate(images(n, seed=seed)):
            d = data / split / f"c{i % 2}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((im.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)).save(d / f"{i}.png")
    path = Path(export(y, "openvino", imgsz=IMGSZ, int8=True, data=str(data), out_dir=tmp_path))
    assert "FakeQuantize" in (path / "yolov8n-cls.xml").read_text() or \
        'element_type="i8"' in (path / "yolov8n-cls.xml").read_text()
    out, want = load_backend(path)(x), ref["yolov8n-cls"]
    assert np.allclose(out.sum(1), 1, atol=1e-3)
    # int8 on a random network is coarse (max |diff| of probabilities ~0.2 here), but it is the same function:
    corr = np.corrcoef(np.log(out).ravel(), np.log(want).ravel())[0, 1]
    assert corr > 0.95 and (out.argmax(1) == want.argmax(1)).mean() >= 0.75


def test_coreml_spec(exports, models):
    need("coremltools")
    from converters.export.coreml import describe

    path = exports("yolov8n-cls", "coreml")
    assert path.name == "yolov8n-cls.mlpackage" and path.is_dir()
    d = describe(path)
    assert d["type"] == "mlProgram"
    assert d["input"] == {"name": "image", "kind": "imageType", "width": IMGSZ, "height": IMGSZ, "color_space": "RGB"}
    assert d["class_labels"] == [f"cls_{i}" for i in range(NC)]
    assert d["predicted_feature"] == "classLabel" and d["predicted_probabilities"] in d["outputs"]
    assert d["metadata"]["names"] == models["yolov8n-cls"].names and d["metadata"]["imgsz"] == [IMGSZ, IMGSZ]
    ops = set(d["ops"])
    assert {"conv", "silu", "softmax", "classify", "split", "concat"} <= ops and "batch_norm" not in ops
    if sys.platform != "darwin":
        with pytest.raises(ExportError, match="macOS"):
            load_backend(path)
