"""OpenVINO export: the ONNX graph (``converters/export/onnx.py``) -> ``ov.convert_model`` -> ``ov.save_model``.

Output directory ``<stem>_openvino_model/`` holding ``<stem>.xml`` + ``<stem>.bin`` (OpenVINO IR) and ``metadata.yaml``
(Ultralytics' metadata dict; its ``AutoBackend`` and ``load`` here read names/imgsz from it). The IR also carries
``rt_info`` for OpenVINO's Model API (model type, class labels, the [0, 255] -> [0, 1] scale).

Precision: fp32 IR by default (``ov.save_model`` would compress weights to fp16 unless told not to); ``half=True``
stores fp16 weights (``compress_to_fp16``); ``int8=True`` quantizes with NNCF post-training quantization, calibrated on
up to 300 images of ``data``'s validation split after the validation transform (training split if there is none;
the checkpoint's training dataset when ``data`` is not given). ``dynamic=True`` keeps batch/height/width symbolic.

``load`` compiles for CPU with ``INFERENCE_PRECISION_HINT=f32``: by default OpenVINO runs bf16 on CPUs with AMX/AVX512
bf16, which costs ~1e-3 of accuracy; f32 keeps parity with the JAX model (fp16 IRs are still computed in f32).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from pathlib import Path

import numpy as np

from converters.export.core import ExportError, require
from converters.export.metadata import read_metadata_yaml, write_metadata_yaml
from jaxyolo.engine.backends import Backend

LOGGER = logging.getLogger("jaxyolo")
SUFFIX = "_openvino_model"
INT8_CALIB_IMAGES = 300  # NNCF's default subset size


_TELEMETRY_LOCK = threading.Lock()


@contextlib.contextmanager
def telemetry_off():
    """No usage telemetry from OpenVINO/NNCF during our calls.

    ``ov.convert_model`` and ``nncf`` report usage to Google Analytics (from a forked child process, and writing a
    client id under ``~/intel``) unless the user opted out with ``opt_in_out --opt_out``. Inside this block their shared
    ``openvino_telemetry.Telemetry`` singleton has no consent (an instance created here keeps none); a consent given
    before is restored afterwards. Nothing is written to the user's configuration.
    """
    try:
        import openvino_telemetry.main as tm
    except ImportError:
        yield
        return
    with _TELEMETRY_LOCK:
        checker = tm.OptInChecker

        class Declined(checker):
            def check(self, *args, **kwargs):
                return tm.ConsentCheckResult.DECLINED

        existing = getattr(tm.Telemetry, "_SingletonMetaClass__single_instance", None)
        before = getattr(existing, "consent", None)
        tm.OptInChecker = Declined
        if existing is not None:
            existing.consent = False
        try:
            yield
        finally:
            tm.OptInChecker = checker
            if existing is not None:
                existing.consent = before


def _stem(out: Path) -> str:
    name = Path(out).name
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name


def calibration_nchw(yolo, data, imgsz, n: int) -> list[np.ndarray]:
    """Calibration images as float32 NCHW [1, C, H, W] arrays in [0, 1] (dataset handling shared with TFLite)."""
    from converters.export.tflite import calibration_images, calibration_source

    imgs = calibration_images(calibration_source(yolo, data), imgsz, n=n, ch=int(yolo.cfg.get("channels", 3)))
    return [np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32) for a in imgs]


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, half: bool = False, int8: bool = False, data=None,
           dynamic: bool = False, **_) -> None:
    with telemetry_off():
        _export(yolo, out, imgsz=imgsz, batch=batch, meta=meta, half=half, int8=int8, data=data, dynamic=dynamic)


def _export(yolo, out: Path, *, imgsz, batch, meta, half, int8, data, dynamic) -> None:
    ov = require("openvino", "openvino", "export")
    onnx = require("onnx", "openvino", "export")
    from converters.export.onnx import build_onnx

    if int8:
        nncf = require("nncf", "openvino int8", "export")
        calib = calibration_nchw(yolo, data, imgsz, INT8_CALIB_IMAGES)
    proto = build_onnx(yolo, imgsz, batch, dynamic=bool(dynamic), simplify=True)
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent) as d:
        src = Path(d) / "model.onnx"
        onnx.save(proto, str(src))
        model = ov.convert_model(str(src))
    if int8:
        if not dynamic and batch != 1:  # calibration feeds one image at a time
            calib = [np.repeat(a, batch, axis=0) for a in calib]
        model = nncf.quantize(model, nncf.Dataset(calib), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(calib))
    names = meta.get("names") or {}
    model.set_rt_info("YOLO", ["model_info", "model_type"])
    model.set_rt_info(True, ["model_info", "reverse_input_channels"])
    model.set_rt_info(255.0, ["model_info", "scale_values"])
    model.set_rt_info(" ".join(str(names[k]).replace(" ", "_") for k in sorted(names)), ["model_info", "labels"])
    out.mkdir(parents=True)
    ov.save_model(model, str(out / f"{_stem(out)}.xml"), compress_to_fp16=bool(half) and not int8)
    write_metadata_yaml(out, meta)


def load(path: Path) -> Backend:
    ov = require("openvino", "openvino", "export")
    path = Path(path)
    xmls = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    if not xmls:
        raise FileNotFoundError(f"{path}: no OpenVINO .xml model inside")
    meta = read_metadata_yaml(xmls[0].parent)
    core = ov.Core()
    model = core.read_model(str(xmls[0]))
    ps = model.inputs[0].get_partial_shape()
    batch = ps[0].get_length() if ps[0].is_static else None
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out_port = compiled.outputs[0]
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or (224, 224))

    def run(x):
        return np.array(request.infer({0: x})[out_port])

    return Backend("openvino", names, (int(imgsz[0]), int(imgsz[1])), run, batch=batch, meta=meta)
