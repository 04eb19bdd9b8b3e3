"""TensorFlow Lite (LiteRT) export: Flax -> ``jax2tf`` -> ``tf.lite.TFLiteConverter`` with builtin ops only.

Route. ``jax2tf.convert`` turns the Flax forward pass into a ``tf.function`` whose body is one ``XlaCallModule`` op (the
model's StableHLO); the TFLite converter legalises StableHLO directly to TFLite builtins, so the ``.tflite`` holds no
Flex (``SELECT_TF_OPS``) or custom ops: BatchNorm is folded, SiLU is ``LOGISTIC`` + ``MUL``. No ONNX and no onnx2tf are
involved, so this format needs only TensorFlow (>= 2.20, the core requirement).

Graph. Static shape ``[1, H, W, 3]`` float32 NHWC RGB in [0, 1] named ``images`` -> ``output0`` ``[1, nc]`` softmax
probabilities: the layout of Ultralytics' own (onnx2tf) TFLite exports, which its ``AutoBackend`` recognises from the
input shape. Batch is always 1 (a polymorphic batch bloats the graph and breaks full-integer models at invoke time).

Precision (file name): ``*_float32.tflite``; ``half=True`` -> ``*_float16.tflite`` (fp16 weights, fp32 I/O);
``int8=True, data=D`` -> ``*_int8.tflite``: full-integer (every op int8, int8 input and output with their
scale/zero-point in the model), calibrated on up to ``CALIB_IMAGES`` images of ``D``'s validation split (training split
if there is none) after the validation transform (resize + centre crop), the images ``val`` sees.

Metadata. Ultralytics' metadata dict (names, imgsz, task, ...) as ``metadata.json`` in a zip archive appended to the
flatbuffer (the TFLite runtime ignores trailing bytes; Python's ``zipfile`` finds the archive from the end): what
Ultralytics' ``AutoBackend`` reads, and what ``read_metadata``/``load`` here read.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from converters.export.core import ExportError
from jaxyolo.nn.cpu_conv import export_graph

LOGGER = logging.getLogger("jaxyolo")

CALIB_IMAGES = 100  # representative images for int8 calibration (evenly spaced over the split)
INPUT_NAME, OUTPUT_NAME = "images", "output0"


# ----------------------------------------------------------------------------------------------------------------------
# Flax -> TensorFlow (shared with the Edge TPU exporter)
# ----------------------------------------------------------------------------------------------------------------------

def tf_module(yolo, imgsz: tuple[int, int], batch: int = 1):
    """``(tf.Module, concrete_function)`` computing the model's probabilities for NHWC float input via ``jax2tf``.

    Weights are baked in as constants; the StableHLO is lowered for CPU (the TFLite converter's input, whatever
    accelerator JAX runs on here)."""
    import jax
    import tensorflow as tf
    from jax.experimental import jax2tf

    variables = jax.device_get(yolo.variables)
    module = yolo.module
    ch = int(yolo.cfg.get("channels", 3))

    def forward(x):
        return module.apply(variables, x, train=False)

    converted = jax2tf.convert(forward, with_gradient=False, native_serialization_platforms=("cpu",))
    holder = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([batch, imgsz[0], imgsz[1], ch], tf.float32, name=INPUT_NAME)],
                 autograph=False)
    def serve(images):
        return {OUTPUT_NAME: tf.identity(converted(images), name=OUTPUT_NAME)}

    holder.serve = serve
    with export_graph():  # the JAX forward is traced here: keep every convolution a convolution (CONV_2D)
        return holder, serve.get_concrete_function()


def calibration_images(data, imgsz: tuple[int, int], n: int = CALIB_IMAGES, ch: int = 3) -> list[np.ndarray]:
    """Up to ``n`` images of dataset ``data`` as float32 ``[1, H, W, ch]`` arrays in [0, 1] (validation transform)."""
    from jaxyolo.data import DatasetError, eval_batches, load_dataset

    try:
        ds = load_dataset(str(data))
    except (DatasetError, FileNotFoundError) as e:
        raise ExportError(f"int8 calibration data={data!r} cannot be used: {e}") from None
    split = "val" if ds.splits.get("val") else "train"
    split_real = ds.resolve_split(split)
    if ds.kind == "folder":  # an evenly spaced subset, so every class is represented and nothing else is decoded
        recs = ds.records[split_real]
        if len(recs) > n:
            import copy

            ds = copy.copy(ds)
            ds.records = {**ds.records, split_real: recs.subset(np.linspace(0, len(recs) - 1, n, dtype=np.int64))}
            ds.splits = {**ds.splits, split_real: n}
            ds._cache = {}
    out = []
    for images, _, mask in eval_batches(ds, split, imgsz=tuple(imgsz), batch_size=1):
        for img, ok in zip(images, mask):
            if ok:
                a = img.astype(np.float32) / 255.0
                out.append((a.mean(-1, keepdims=True) if ch == 1 and a.shape[-1] != 1 else a)[None])
        if len(out) >= n:
            break
    if not out:
        raise ExportError(f"int8 calibration data={data!r}: no images in its {split!r} split")
    LOGGER.info(f"int8 calibration: {len(out)} images from the {split!r} split of {data}")
    return out[:n]


def calibration_source(yolo, data):
    """``data`` or, when it is not given, the dataset the checkpoint was trained on; ExportError if neither."""
    if data:
        return data
    ckpt = getattr(yolo, "ckpt", None) or {}
    trained_on = (ckpt.get("train_args") or {}).get("data") or (getattr(yolo, "overrides", {}) or {}).get("data")
    if trained_on:
        LOGGER.info(f"int8 calibration: no data= given, using the training dataset {trained_on!r}")
        return trained_on
    raise ExportError("int8 quantization needs calibration images: pass data=<dataset> (an image-folder dataset, "
                      "'digits' or 'tfds:<name>'; its validation split is used)")


def convert(yolo, imgsz: tuple[int, int], *, half: bool = False, int8: bool = False, data=None) -> bytes:
    """The ``.tflite`` flatbuffer (without metadata): fp32, fp16 weights (``half``) or full-integer int8 (``int8``)."""
    import tensorflow as tf

    holder, fn = tf_module(yolo, imgsz, batch=1)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], holder)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # builtins only: no Flex, no custom ops
    if int8:
        images = calibration_images(calibration_source(yolo, data), imgsz, ch=int(yolo.cfg.get("channels", 3)))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in images)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif half:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    try:
        return conv.convert()
    except Exception as e:  # the converter's errors are long MLIR dumps: keep the first line
        raise ExportError(f"TFLite conversion failed: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}") \
            from e


# ----------------------------------------------------------------------------------------------------------------------
# Metadata and inspection
# ----------------------------------------------------------------------------------------------------------------------

def write_metadata(path: Path, meta: dict) -> None:
    """Append Ultralytics' ``metadata.json`` zip entry to a ``.tflite`` file."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps(meta))


def read_metadata(path: Path) -> dict:
    """The metadata dict appended by ``write_metadata`` (or by Ultralytics); ``{}`` when there is none."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
    except (zipfile.BadZipFile, OSError, ValueError):
        return {}


def op_names(model: bytes | str | Path) -> list[str]:
    """Operator codes used by a ``.tflite`` model: builtin names (``CONV_2D``) or ``CUSTOM:<code>``."""
    from tensorflow.lite.python import schema_py_generated as schema

    buf = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for oc in m.operatorCodes:
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        if code == schema.BuiltinOperator.CUSTOM:
            cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
            out.append(f"CUSTOM:{cc}")
        else:
            out.append(names.get(code, str(code)))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Format module contract
# ----------------------------------------------------------------------------------------------------------------------

def export(yolo, out: Path, *, imgsz, batch, meta, half=False, int8=False, data=None) -> None:
    if int(batch) != 1:
        LOGGER.warning(f"format=tflite is exported with a static batch of 1 (batch={batch} ignored)")
    meta = {**meta, "batch": 1, "input_layout": "NHWC", "args": {**meta.get("args", {}), "batch": 1}}
    model = convert(yolo, imgsz, half=bool(half), int8=bool(int8), data=data)
    Path(out).write_bytes(model)
    write_metadata(Path(out), meta)


def make_interpreter(path: str | Path, delegates=None):
    """A LiteRT interpreter: ``ai_edge_litert`` when installed, else TensorFlow's (deprecated) ``tf.lite``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    kw = {"experimental_delegates": delegates} if delegates else {}
    it = Interpreter(model_path=str(path), **kw)
    it.allocate_tensors()
    return it


def interpreter_backend(path: Path, fmt: str, interpreter) -> "Backend":  # noqa: F821
    """A ``Backend`` around an allocated interpreter: NCHW float input, (B, nc) float probabilities out; int8/int16
    inputs are quantized and outputs dequantized with the tensors' own scale/zero-point."""
    from jaxyolo.engine.backends import Backend

    meta = read_metadata(path)
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    inp = interpreter.get_input_details()[0]
    outp = interpreter.get_output_details()[0]
    shape = [int(s) for s in inp["shape"]]
    ch = int(meta.get("channels", 3))
    nhwc = shape[-1] == ch
    imgsz = tuple(meta.get("imgsz") or (shape[1:3] if nhwc else shape[2:4]))
    if not names:
        names = {i: str(i) for i in range(int(outp["shape"][-1]))}

    def run(x):
        if nhwc:
            x = x.transpose(0, 2, 3, 1)
        if inp["dtype"] in (np.int8, np.int16, np.uint8):
            scale, zp = inp["quantization"]
            lim = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zp), lim.min, lim.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(x))
        interpreter.invoke()
        y = interpreter.get_tensor(outp["index"])
        if outp["dtype"] in (np.int8, np.int16, np.uint8):
            scale, zp = outp["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        return y.astype(np.float32)

    return Backend(fmt=fmt, names=names, imgsz=(int(imgsz[0]), int(imgsz[1])), run=run, batch=shape[0], meta=meta)


def load(path: Path):
    return interpreter_backend(Path(path), "tflite", make_interpreter(path))
