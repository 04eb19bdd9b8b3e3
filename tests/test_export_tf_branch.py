"""Export chain, TensorFlow branch (issue 8): TFLite (fp32/fp16/int8), Edge TPU, SavedModel, GraphDef, TF.js.

Models are yolov8n-cls and yolo11n-cls with random weights whose BatchNorm statistics come from a random batch (so the
probabilities really depend on the input), exported at imgsz 32 with batch 1. Every artifact is compared with the JAX
model's own probabilities. The int8 check here is top-1 agreement with fp32 on a small generated dataset; the accuracy
check on a trained digits model (>= 95% of fp32 top-1) belongs to the trained-model tests.
"""

try:  # torchvision must be imported before TensorFlow: triton's LLVM (pulled in by torchvision) and TF's clash
    import torchvision  # noqa: F401
except Exception:  # noqa: BLE001
    pass

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from converters.export import edgetpu, pb, tflite, tfjs
from converters.export.core import ExportError, export, output_path
from converters.export.formats import format_for_path, get_format
from jaxyolo import YOLO
from jaxyolo.engine.backends import load_backend
from jaxyolo.nn.modules import BN_MOMENTUM

REPO = Path(__file__).resolve().parents[1]
IMGSZ = 32
ARCHS = ["yolov8n-cls", "yolo11n-cls"]
NAMES = {i: f"cls_{i}" for i in range(10)}


# ----------------------------------------------------------------------------------------------------------------------
# Models and data
# ----------------------------------------------------------------------------------------------------------------------

def calibrate_bn(y, seed=0):
    """Flax counterpart of tests/test_pt_interop.calibrate_bn: jitter the BatchNorm affine parameters, give every
    BatchNorm the statistics of one random batch (recovered from a train-mode pass), jitter them, and scale the Linear
    layer so the logits spread by about 2. Default-initialised deep nets give nearly input-independent outputs."""
    rng = np.random.default_rng(seed)
    flat = {k: np.asarray(v) for k, v in flax.traverse_util.flatten_dict(jax.device_get(y.variables)).items()}
    for k, v in flat.items():
        if k[0] == "params" and k[-2] == "bn":
            lo, hi = (0.8, 1.2) if k[-1] == "scale" else (-0.2, 0.2)
            flat[k] = rng.uniform(lo, hi, v.shape).astype(np.float32)
    x = rng.random((8, IMGSZ, IMGSZ, 3), dtype=np.float32)
    _, upd = y.module.apply(flax.traverse_util.unflatten_dict(flat), x, train=True, mutable=["batch_stats"])
    new = flax.traverse_util.flatten_dict(jax.device_get(upd["batch_stats"]))
    batch = {k: (np.asarray(v, np.float64) - BN_MOMENTUM * flat[("batch_stats", *k)]) / (1 - BN_MOMENTUM)
             for k, v in new.items()}  # running = m * old + (1 - m) * batch  ->  batch statistics
    for k, b in batch.items():
        if k[-1] == "mean":
            b = b + rng.uniform(-0.05, 0.05, b.shape) * np.sqrt(np.maximum(batch[(*k[:-1], "var")], 0))
        else:
            b = np.maximum(b, 0) * rng.uniform(0.9, 1.1, b.shape)
            b = b + 0.15 * b.mean()  # no near-zero variances from a small batch
        flat[("batch_stats", *k)] = b.astype(np.float32)
    logits = np.asarray(y.module.apply(flax.traverse_util.unflatten_dict(flat), x, logits=True))
    for k in [k for k in flat if k[0] == "params" and "linear" in k]:
        flat[k] = flat[k] * np.float32(2.0 / logits.std())
    y.variables = jax.tree.map(jnp.asarray, flax.traverse_util.unflatten_dict(flat))
    y._forward = None
    return y


def natural(h, w, seed):
    """A smooth, photo-like RGB test image with some noise (as in tests/test_data.py)."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * xx + r.uniform(0, 6)) * 0.5 + 0.5, np.cos(12 * yy * xx + r.uniform(0, 6)) * 0.5 + 0.5,
                    (xx + yy) / 2 * r.uniform(0.2, 1)], -1) * 255 + r.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    """(6, 32, 32, 3) float32 NHWC in [0, 1]."""
    return np.stack([natural(IMGSZ, IMGSZ, s) for s in range(6)]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny image-folder dataset (3 classes; 4 train + 6 val images each) for int8 calibration."""
    root = tmp_path_factory.mktemp("calib") / "data"
    for split, n in (("train", 4), ("val", 6)):
        for c in range(3):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for j in range(n):
                Image.fromarray(natural(40, 48, 1000 * c + 10 * j + (split == "val"))).save(d / f"{j}.png")
    return root


@pytest.fixture(scope="module", params=ARCHS)
def model(request, tmp_path_factory):
    y = calibrate_bn(YOLO(f"{request.param}.yaml", nc=10), seed=ARCHS.index(request.param))
    y.names = dict(NAMES)
    y.overrides["imgsz"] = IMGSZ
    return request.param, y, tmp_path_factory.mktemp(request.param)


def jax_probs(y, x_nhwc):
    return np.asarray(y.module.apply(y.variables, x_nhwc, train=False))


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def check_meta(backend, fmt):
    assert backend.fmt == fmt
    assert backend.names == NAMES and backend.imgsz == (IMGSZ, IMGSZ)
    assert backend.meta["task"] == "classify" and backend.meta["input_layout"] == "NHWC"


# ----------------------------------------------------------------------------------------------------------------------
# TFLite
# ----------------------------------------------------------------------------------------------------------------------

def test_output_names():
    class Y:
        ckpt_path = "/w/best.pt"

    f = get_format("tflite")
    assert output_path(Y, f, None, {}).name == "best_float32.tflite"
    assert output_path(Y, f, None, {"half": True}).name == "best_float16.tflite"
    assert output_path(Y, f, None, {"half": True, "int8": True}).name == "best_int8.tflite"
    assert format_for_path("best_int8.tflite").arg == "tflite"
    assert format_for_path("best_edgetpu.tflite").arg == "edgetpu"
    assert format_for_path("best_saved_model/").arg == "saved_model" and format_for_path("best.pb").arg == "pb"


def conv_ops(path) -> list[str]:
    """The builtin op of every operator in a .tflite model, in graph order (``op_names`` lists each op code once)."""
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(Path(path).read_bytes(), 0))
    codes = tflite.op_names(path)
    return [codes[op.opcodeIndex] for g in m.subgraphs for op in g.operators]


def test_tflite_fp32_fp16(model, images):
    name, y, out = model
    ref = jax_probs(y, images)
    assert np.abs(ref[:, None] - ref[None]).max() > 0.05  # outputs really depend on the input
    for kw, tol in (({}, 1e-4), ({"half": True}, 1e-2)):
        f = Path(export(y, "tflite", imgsz=IMGSZ, out_dir=out, **kw))
        assert f.name == f"{name}_{'float16' if kw else 'float32'}.tflite"
        ops = tflite.op_names(f)
        assert not [o for o in ops if o.startswith("CUSTOM")], ops  # builtins only: no Flex, no custom ops
        assert {"CONV_2D", "LOGISTIC", "SOFTMAX", "FULLY_CONNECTED"} <= set(ops)
        # every Conv layer, 1x1 included (XLA:CPU runs those as matmuls, but exporters trace them as convolutions)
        convs = [k for p, k in jax.tree_util.tree_leaves_with_path(y.variables["params"])
                 if jax.tree_util.keystr(p).endswith("['conv']['kernel']")]
        per_op = conv_ops(f)
        assert per_op.count("CONV_2D") + per_op.count("DEPTHWISE_CONV_2D") == len(convs), per_op
        with zipfile.ZipFile(f) as z:  # Ultralytics' metadata.json, appended as a zip entry
            meta = json.loads(z.read("metadata.json"))
        assert meta["imgsz"] == [IMGSZ, IMGSZ] and meta["batch"] == 1 and meta["names"]["3"] == "cls_3"
        b = load_backend(f)
        check_meta(b, "tflite")
        assert b.batch == 1
        assert b.meta["args"].get("half", False) == bool(kw)
        it = tflite.make_interpreter(f)
        d = it.get_input_details()[0]
        assert list(d["shape"]) == [1, IMGSZ, IMGSZ, 3] and d["dtype"] == np.float32
        assert it.get_signature_list() == {"serving_default": {"inputs": ["images"], "outputs": ["output0"]}}
        got = b(nchw(images))  # fed one image at a time (static batch 1)
        assert np.abs(got - ref).max() <= tol, (kw, np.abs(got - ref).max())
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * tol  # a near-tie within the tolerance may rank either way
        assert clear.sum() >= len(ref) // 2, top2
        assert (got.argmax(1) == ref.argmax(1))[clear].all()


def val_images(dataset):
    from jaxyolo.data import eval_batches, load_dataset

    x = [img for imgs, _, m in eval_batches(load_dataset(str(dataset)), "val", imgsz=IMGSZ, batch_size=1)
         for img, ok in zip(imgs, m) if ok]
    return np.stack(x).astype(np.float32) / 255.0


def test_tflite_int8(model, dataset):
    name, y, out = model
    f = Path(export(y, "tflite", imgsz=IMGSZ, out_dir=out, int8=True, data=str(dataset)))
    assert f.name == f"{name}_int8.tflite"
    ops = tflite.op_names(f)
    assert not [o for o in ops if o.startswith("CUSTOM")], ops
    it = tflite.make_interpreter(f)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    assert i["dtype"] == np.int8 and o["dtype"] == np.int8  # full integer, int8 in and out
    assert i["quantization"][0] > 0 and o["quantization"][0] > 0
    tensors = it.get_tensor_details()
    assert all(t["dtype"] in (np.int8, np.int32) for t in tensors if t["name"] not in ("images",)), \
        {t["name"]: t["dtype"] for t in tensors if t["dtype"] not in (np.int8, np.int32)}
    b = load_backend(f)
    check_meta(b, "tflite")
    x = val_images(dataset)
    ref = jax_probs(y, x)
    got = b(nchw(x))
    # Random-weight nets are chaotic: 1% Gaussian weight noise alone flips ~28% of yolo11n's (and 0% of yolov8n's)
    # top-1s on these images, so int8 rounding (measured: 72-78% agreement, mean |dp| ~0.03) is held to a loose bound
    # here; the real accuracy check (trained digits model, int8 top-1 >= 95% of fp32) is in the trained-model tests.
    agree = (got.argmax(1) == ref.argmax(1)).mean()
    assert agree >= 0.6, (agree, np.abs(got - ref).max())
    assert np.abs(got - ref).mean() <= 0.06


def test_int8_needs_data(model):
    _, y, out = model
    with pytest.raises(ExportError, match="data="):
        export(y, "tflite", imgsz=IMGSZ, out_dir=out / "nodata", int8=True)
    assert not (out / "nodata").exists() or not list((out / "nodata").iterdir())


# ----------------------------------------------------------------------------------------------------------------------
# Edge TPU
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["yolov8n-cls"], indirect=True)  # one is enough: int8 is covered for both
def test_edgetpu(model, dataset, images):
    name, y, out = model
    d = out / "edgetpu"
    int8 = d / f"{name}_int8.tflite"
    if edgetpu.compiler() is None:
        with pytest.raises(ExportError) as e:
            export(y, "edgetpu", imgsz=IMGSZ, out_dir=d, data=str(dataset))
        msg = str(e.value)
        assert "edgetpu_compiler" in msg and "edgetpu-compiler" in msg and "x86-64" in msg and str(int8) in msg
        assert not (d / f"{name}_edgetpu.tflite").exists()
        assert sorted(p.name for p in d.iterdir()) == [int8.name]  # nothing half-written is left
    else:
        f = Path(export(y, "edgetpu", imgsz=IMGSZ, out_dir=d, data=str(dataset)))
        assert f.name == f"{name}_edgetpu.tflite" and tflite.read_metadata(f)["names"]["0"] == "cls_0"
    b = load_backend(int8)  # the compiler's input: a complete full-integer CPU model
    check_meta(b, "tflite")
    assert b.meta["args"]["int8"] is True
    assert (b(nchw(images)).argmax(1) == jax_probs(y, images).argmax(1)).mean() >= 0.5


# ----------------------------------------------------------------------------------------------------------------------
# SavedModel and GraphDef
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(model):
    name, y, out = model
    return Path(export(y, "saved_model", imgsz=IMGSZ, out_dir=out))


def test_saved_model(model, saved, images):
    import tensorflow as tf

    name, y, out = model
    assert saved.name == f"{name}_saved_model" and (saved / "metadata.yaml").is_file()
    b = load_backend(saved)
    check_meta(b, "saved_model")
    ref = jax_probs(y, images)
    got = b(nchw(images))
    assert np.abs(got - ref).max() <= 1e-4
    sm = tf.saved_model.load(str(saved))
    fn = sm.signatures["serving_default"]
    assert fn.structured_input_signature[1]["images"].shape.as_list() == [1, IMGSZ, IMGSZ, 3]
    ops = {n.op for f in fn.graph.as_graph_def().library.function for n in f.node_def}
    assert "XlaCallModule" not in ops and "Conv2D" in ops  # plain TensorFlow ops (the onnx2tf route)
    y0 = sm.serving_default(tf.constant(images[:1]))  # what Ultralytics' AutoBackend calls
    assert np.abs(np.asarray(y0) - ref[:1]).max() <= 1e-4


def test_graphdef(model, saved, images):
    name, y, out = model
    ref = jax_probs(y, images)
    if name == "yolo11n-cls":  # the full export path (ONNX -> onnx2tf -> SavedModel -> frozen graph)
        f = Path(export(y, "pb", imgsz=IMGSZ, out_dir=out / "pb"))
        assert f.name == f"{name}.pb"
    else:  # the freezing step alone, on the SavedModel above (saves one more onnx2tf run)
        f = out / "pb" / f"{name}.pb"
        f.parent.mkdir(exist_ok=True)
        pb.write(pb.freeze(saved), saved_model_meta(saved), f)
    gd = pb.read_graph(f)
    ops = {n.op for n in gd.node}
    assert "XlaCallModule" not in ops and "Conv2D" in ops and not gd.library.function  # frozen, inlined
    assert {"Placeholder", "Identity"} <= ops and any(n.name == "x" for n in gd.node)
    b = load_backend(f)
    check_meta(b, "pb")
    assert np.abs(b(nchw(images)) - ref).max() <= 1e-4


@pytest.mark.ultralytics
@pytest.mark.parametrize("model", ["yolov8n-cls"], indirect=True)
def test_ultralytics_reads_saved_model_and_pb(model, saved, images, tmp_path):
    """Ultralytics' AutoBackend runs our SavedModel (``serving_default``, NHWC) and frozen graph (``x:0``); it reads a
    ``.pb``'s metadata from the sibling ``*_saved_model/metadata.yaml``."""
    ultralytics = pytest.importorskip("ultralytics")
    name, y, out = model
    shutil.copytree(saved, tmp_path / saved.name)
    (tmp_path / f"{name}.pb").write_bytes(pb.freeze(saved).SerializeToString())
    files = []
    for s in range(3):
        files.append(tmp_path / f"{s}.png")
        Image.fromarray((images[s] * 255).round().astype(np.uint8)).save(files[-1])
    ours = y.forward(np.stack([np.asarray(Image.open(f)) for f in files]))
    for f in (tmp_path / saved.name, tmp_path / f"{name}.pb"):
        m = ultralytics.YOLO(str(f), task="classify")
        res = m.predict([str(p) for p in files], imgsz=IMGSZ, verbose=False)
        assert res[0].names == NAMES
        theirs = np.stack([r.probs.data.cpu().numpy() for r in res])
        assert np.abs(theirs - ours).max() <= 1e-3 and (theirs.argmax(1) == ours.argmax(1)).all()


def saved_model_meta(path):
    import yaml

    return yaml.safe_load((Path(path) / "metadata.yaml").read_text())


# ----------------------------------------------------------------------------------------------------------------------
# TF.js (tensorflowjs in its own environment; pure-JS @tensorflow/tfjs in Node)
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def node_tfjs():
    """A folder with node_modules/@tensorflow/tfjs (pure JS, no native add-on), installed once per tools dir."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed")
    d = tfjs.tools_dir() / "tfjs-node-test"
    if not (d / "node_modules" / "@tensorflow" / "tfjs" / "package.json").is_file():
        d.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(d),
                            "@tensorflow/tfjs@4.22.0"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    return d / "node_modules"


def run_node(web_model, x_nhwc, node_modules, tmp):
    xf, yf = tmp / "x.f32", tmp / "y.f32"
    x_nhwc.astype("<f4").tofile(xf)
    r = subprocess.run(["node", str(REPO / "tests" / "js" / "run_graph_model.js"), str(web_model), str(xf),
                        ",".join(map(str, x_nhwc.shape)), str(yf)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NODE_PATH": str(node_modules)})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    return np.fromfile(yf, "<f4").reshape(info["outputShape"]), info


@pytest.mark.slow  # the first run creates the converter's environment (about 1.5 minutes, cached afterwards)
def test_tfjs_node(model, saved, images, node_tfjs, tmp_path):
    name, y, out = model
    if name == "yolo11n-cls":  # the full export path (its SavedModel gets the grouped 'pe' conv split for TF.js)
        web = Path(export(y, "tfjs", imgsz=IMGSZ, out_dir=out))
        assert web.name == f"{name}_web_model" and (web / "metadata.yaml").is_file()
    else:  # tensorflowjs on the SavedModel above (yolov8 has no grouped convolutions)
        web = tmp_path / f"{name}_web_model"
        tfjs.convert_saved_model(saved, web, {**saved_model_meta(saved), "batch": 1})
    mj = json.loads((web / "model.json").read_text())
    assert mj["format"] == "graph-model" and "XlaCallModule" not in {n["op"] for n in mj["modelTopology"]["node"]}
    with pytest.raises(ExportError, match="JavaScript"):
        load_backend(web)
    got, info = run_node(web, images, node_tfjs, tmp_path)
    assert info["metadata"]["metadata"]["names"]["5"] == "cls_5"
    assert np.abs(got - jax_probs(y, images)).max() <= 1e-4


@pytest.mark.slow
def test_tfjs_env_is_separate():
    """tensorflowjs runs from its own environment under the tools dir; the running environment does not get it."""
    import importlib.util

    py = tfjs.converter_env()  # created by test_tfjs_node (or now), reused afterwards
    venv = (tfjs.tools_dir() / "tfjs-venv").absolute()
    assert py.absolute().is_relative_to(venv) and not Path(sys.executable).absolute().is_relative_to(venv)
    marker = json.loads((tfjs.tools_dir() / "tfjs-venv" / tfjs.MARKER).read_text())
    assert marker["spec"]["packages"] == tfjs.TOOL_PACKAGES
    r = subprocess.run([str(py), "-c", "import tensorflow, tensorflowjs; print(tensorflow.__version__)"],
                       capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "2.19.0", r.stderr[-2000:]
    assert importlib.util.find_spec("tensorflowjs") is None  # the exporter never installs it here


# ----------------------------------------------------------------------------------------------------------------------
# CLI on a .pt, and Ultralytics reading our .tflite
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_tflite(tmp_path_factory):
    """``python -m converters.export --to tflite --weights w.pt`` on a .pt written by ``YOLO.save``."""
    d = tmp_path_factory.mktemp("cli")
    y = calibrate_bn(YOLO("yolov8n-cls.yaml", nc=10), seed=3)
    y.names = dict(NAMES)
    y.overrides["imgsz"] = IMGSZ
    pt = y.save(d / "w.pt", half=False)
    r = subprocess.run([sys.executable, "-m", "converters.export", "--to", "tflite", "--weights", str(pt)],
                       capture_output=True, text=True, cwd=REPO, timeout=600,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert r.returncode == 0, r.stderr[-3000:]
    f = Path(r.stdout.strip().splitlines()[-1])
    assert f == d / "w_float32.tflite" and f.is_file()
    return pt, f


def test_cli_tflite_from_pt(cli_tflite, images):
    pt, f = cli_tflite
    y = YOLO(str(pt))
    b = load_backend(f)
    check_meta(b, "tflite")
    assert np.abs(b(nchw(images)) - y.forward(images)).max() <= 1e-4


@pytest.mark.ultralytics
def test_ultralytics_predicts_our_tflite(cli_tflite, tmp_path):
    ultralytics = pytest.importorskip("ultralytics")
    pytest.importorskip("ai_edge_litert")  # Ultralytics' LiteRT backend runs .tflite with ai-edge-litert only
    pt, f = cli_tflite
    files, arrays = [], []
    for s in range(6):
        a = natural(IMGSZ, IMGSZ, 100 + s)
        files.append(tmp_path / f"{s}.png")
        Image.fromarray(a).save(files[-1])
        arrays.append(a)
    ours = YOLO(str(pt)).forward(np.stack(arrays))
    m = ultralytics.YOLO(str(f))
    res = m.predict([str(p) for p in files], imgsz=IMGSZ, verbose=False)
    assert m.task == "classify" and res[0].names == NAMES  # names/task from the appended metadata.json
    theirs = np.stack([r.probs.data.cpu().numpy() for r in res])
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    assert np.abs(theirs - ours).max() <= 1e-3
