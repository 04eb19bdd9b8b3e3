"""TensorFlow SavedModel export: Flax -> ONNX (``converters.export.onnx``) -> onnx2tf -> a plain-op SavedModel.

Why this route. There are two ways from JAX to a SavedModel:

* ``jax2tf`` (what the TFLite export uses): the whole model becomes **one** ``XlaCallModule`` op holding StableHLO. It
  is exact and needs no extra package, but only TensorFlow >= 2.20 can run it (2.19 cannot deserialize jax 0.10's
  StableHLO), TF Serving builds must be as new, and every converter that reads TensorFlow graphs op by op --
  tensorflowjs, tf2onnx, coremltools' TF frontend -- rejects it. A GraphDef of it is not a graph anyone can inspect.
* ONNX -> ``onnx2tf`` (chosen; Ultralytics' own route): the transpose-free NCHW ONNX graph the ONNX exporter traces is
  rewritten op by op into NHWC TensorFlow ops (Conv2D, Sigmoid, Mul, Split/ConcatV2, AddV2, Mean, MatMul, Softmax,
  ...). Any TensorFlow >= 2.x can run it, and it is what the frozen ``.pb`` (``pb.py``) and the TF.js web model
  (``tfjs.py``) are made from. It costs the ``onnx2tf`` package (1.28.8: the last release that runs next to TF 2.21 and
  jax; 1.29+ pins TF 2.19) and one more conversion step, checked against JAX in the tests (max abs diff <= 1e-4).

onnx2tf runs in a child process (this file run as a script): importing it reseeds NumPy's and
Python's global RNGs, silences all warnings, sets ``TF_USE_LEGACY_KERAS`` and may call ``sys.exit`` on errors -- none
of which should happen to the exporting program. It is given its own sample-image ``.npy`` (20x128x128x3, the file it
otherwise downloads from GitHub), so the export works offline.

Grouped convolutions: onnx2tf writes YOLO11's depthwise attention conv (``pe``) as a grouped ``Conv2D`` (TensorFlow
runs it; TF.js cannot), so the TF.js export builds its SavedModel with ``group_conv=False`` (one ``Conv2D`` per group),
as Ultralytics does. YOLOv8 has no grouped convolutions.

Artifact ``<stem>_saved_model/``: ``saved_model.pb`` + ``variables/`` with signature ``serving_default``: input
``images`` float32 ``[batch, H, W, 3]`` **NHWC** RGB in [0, 1] (static batch, default 1), output ``output_0`` ``[batch,
nc]`` softmax probabilities; the restored object's ``serving_default`` attribute is the same function (what
Ultralytics' ``AutoBackend`` calls). ``metadata.yaml`` holds Ultralytics' metadata plus ``input_layout: NHWC``.
``int8=True, data=D`` also writes ``<stem>_int8.tflite`` (full-integer, see ``tflite.py``) inside the directory, as
Ultralytics puts its quantized TFLite files there.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("jaxyolo")

ONNX2TF_VERSION = "1.28.8"
SAMPLE_NPY = "calibration_image_sample_data_20x128x128x3_float32.npy"  # the name onnx2tf looks for in its cwd
INPUT_NAME = "images"


def _check_onnx2tf() -> None:
    import importlib.util

    from converters.export.core import ExportError

    missing = [m for m in ("onnx2tf", "onnx_graphsurgeon", "sng4onnx", "tf_keras", "onnx")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"formats saved_model/pb/tfjs need {', '.join(missing)} (the ONNX -> TensorFlow converter); "
                          f"install them with pip install 'jaxyolo[tf]' (onnx2tf=={ONNX2TF_VERSION} is installed "
                          f"without its dependencies: pip install --no-deps onnx2tf=={ONNX2TF_VERSION})")


def _tf_name(name: str) -> str:
    """A node name TensorFlow accepts as a root scope name (``^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$``)."""
    import re

    name = re.sub(r"[^A-Za-z0-9_./>-]", "_", name).lstrip("/_->")
    return name or "node"


def build(yolo, out: Path, *, imgsz: tuple[int, int], batch: int = 1, group_conv: bool = True) -> None:
    """Write a plain-op SavedModel of ``yolo`` at ``out`` (no metadata): ONNX -> onnx2tf in a child process.

    ``group_conv=False`` splits grouped convolutions that onnx2tf does not turn into ``DepthwiseConv2dNative`` (YOLO11's
    attention ``pe`` conv) into one ``Conv2D`` per group + ``ConcatV2``, for runtimes without grouped ``Conv2D``
    (TF.js), as Ultralytics does for its TF.js and Edge TPU exports."""
    _check_onnx2tf()
    from converters.export.core import ExportError
    from converters.export.onnx import build_onnx

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="onnx2tf_", dir=out.parent) as d:
        work = Path(d)
        proto = build_onnx(yolo, imgsz, int(batch), simplify=True, workdir=work)
        import onnx

        seen = set()
        for i, node in enumerate(proto.graph.node):  # TF variable names come from node names ('/model.0/conv/Conv'
            name = _tf_name(node.name)                # is not a valid one); keep them unique
            node.name = name if name not in seen else f"{name}_{i}"
            seen.add(node.name)

        onnx.save(proto, str(work / "model.onnx"))
        # onnx2tf's sample images (it checks its conversion on them): seeded noise, so nothing is downloaded
        np.save(work / SAMPLE_NPY, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
        # this file run as a script (its top level imports nothing of jaxyolo), in the work dir where the .npy is
        code = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        cmd = [sys.executable, "-c", code, str(Path(__file__).resolve()), str(work / "model.onnx"), str(out),
               "group" if group_conv else "split"]
        LOGGER.info("onnx2tf: converting the ONNX graph to a TensorFlow SavedModel (child process)")
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if r.returncode != 0 or not (out / "saved_model.pb").is_file():
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
            raise ExportError(f"onnx2tf could not convert the model to a SavedModel (exit code {r.returncode}):"
                              f"\n{tail}")


def _worker(onnx_path: str, out_dir: str, groups: str = "group") -> int:
    """Child process: onnx2tf -> Keras model -> SavedModel with a ``serving_default`` signature and attribute."""
    import contextlib
    import io

    import onnx2tf
    import tensorflow as tf

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        model = onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=str(Path(onnx_path).parent / "tf"),
                                not_use_onnxsim=True, disable_model_save=True, non_verbose=True, verbosity="error",
                                disable_group_convolution=groups == "split")
    if model is None:
        print(log.getvalue()[-4000:], file=sys.stderr)
        print("onnx2tf returned no model", file=sys.stderr)
        return 1
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        print(f"expected one input and one output, got {model.inputs} -> {model.outputs}", file=sys.stderr)
        return 1
    import tf_keras

    # Keras' ExportArchive (what onnx2tf itself uses): it also tracks the variables onnx2tf creates outside layers
    archive = tf_keras.export.ExportArchive()
    archive.add_endpoint(name="serving_default", fn=lambda images: model(images),
                         input_signature=[tf.TensorSpec(model.inputs[0].shape, tf.float32, name=INPUT_NAME)])
    with contextlib.redirect_stdout(log):
        archive.write_out(out_dir)
    return 0


def export(yolo, out: Path, *, imgsz, batch, meta, int8=False, data=None) -> None:
    from converters.export.metadata import write_metadata_yaml

    out = Path(out)
    build(yolo, out, imgsz=imgsz, batch=batch)
    write_metadata_yaml(out, {**meta, "input_layout": "NHWC"})
    if int8:
        from converters.export import tflite

        q = out / f"{Path(out).name.removesuffix('_saved_model')}_int8.tflite"
        q.write_bytes(tflite.convert(yolo, imgsz, int8=True, data=data))
        tflite.write_metadata(q, {**meta, "batch": 1, "input_layout": "NHWC", "args": {**meta.get("args", {}),
                                                                                       "batch": 1}})


def load(path: Path):
    import tensorflow as tf

    from converters.export.metadata import read_metadata_yaml
    from jaxyolo.engine.backends import Backend

    path = Path(path)
    meta = read_metadata_yaml(path)
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]  # `run` keeps `loaded` alive: the signature only references its variables
    (in_key, in_spec), = fn.structured_input_signature[1].items()
    out_key = next(iter(fn.structured_outputs))
    shape = [None if d is None else int(d) for d in in_spec.shape]
    nhwc = meta.get("input_layout", "NHWC") == "NHWC"

    def run(x, _keep=loaded):
        x = x.transpose(0, 2, 3, 1) if nhwc else x
        return fn(**{in_key: tf.constant(x)})[out_key].numpy()

    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or (shape[1:3] if nhwc else shape[2:4]))
    return Backend("saved_model", names, (int(imgsz[0]), int(imgsz[1])), run, batch=shape[0], meta=meta)


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:4]))
