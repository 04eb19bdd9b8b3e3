"""The export table: Ultralytics' format names and output names, and the module that implements each.

Adding a format = one new module in this package (with ``export`` and ``load``) + one row here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str  # human-readable, as in Ultralytics' table
    arg: str  # format=...
    suffix: str  # output name suffix appended to the weights stem ('.onnx', '_openvino_model', ...)
    module: str  # converters.export.<module>
    args: tuple[str, ...]  # export arguments the format accepts
    extra: str  # the pip extra that installs its back-end
    variants: tuple[tuple[str, str], ...] = ()  # (arg, suffix): the suffix when that arg is set (first match wins)

    def suffix_for(self, args: dict | None = None) -> str:
        """The output suffix for these export arguments (e.g. tflite: int8 -> '_int8.tflite')."""
        return next((s for a, s in self.variants if (args or {}).get(a)), self.suffix)

    @property
    def is_dir(self) -> bool:
        return not self.suffix.startswith(".") and not self.suffix.endswith((".tflite", ".pb"))


FORMATS = [
    Format("TorchScript", "torchscript", ".torchscript", "torchscript", ("imgsz", "batch", "optimize"), "pt"),
    Format("ONNX", "onnx", ".onnx", "onnx", ("imgsz", "batch", "half", "dynamic", "simplify", "opset"), "export"),
    Format("OpenVINO", "openvino", "_openvino_model", "openvino", ("imgsz", "batch", "half", "int8", "data", "dynamic"),
           "export"),
    Format("TensorRT", "engine", ".engine", "tensorrt", ("imgsz", "batch", "half", "dynamic", "simplify", "workspace"),
           "tensorrt"),
    Format("CoreML", "coreml", ".mlpackage", "coreml", ("imgsz", "half", "int8"), "export"),
    Format("TF SavedModel", "saved_model", "_saved_model", "saved_model", ("imgsz", "batch", "int8", "data"), "tf"),
    Format("TF GraphDef", "pb", ".pb", "pb", ("imgsz", "batch"), "tf"),
    Format("TF Lite", "tflite", "_float32.tflite", "tflite", ("imgsz", "half", "int8", "data"), "tf",
           (("int8", "_int8.tflite"), ("half", "_float16.tflite"))),
    Format("TF Edge TPU", "edgetpu", "_edgetpu.tflite", "edgetpu", ("imgsz", "data"), "tf"),
    Format("TF.js", "tfjs", "_web_model", "tfjs", ("imgsz",), "tfjs"),
    Format("PaddlePaddle", "paddle", "_paddle_model", "paddle", ("imgsz", "batch"), "paddle"),
    Format("ncnn", "ncnn", "_ncnn_model", "ncnn", ("imgsz", "batch", "half"), "export"),
]
BY_ARG = {f.arg: f for f in FORMATS}


def get_format(arg: str) -> Format:
    key = str(arg).lower().lstrip(".")
    key = {"tensorrt": "engine", "trt": "engine", "mlpackage": "coreml", "litert": "tflite", "savedmodel": "saved_model",
           "graphdef": "pb", "openvino_model": "openvino"}.get(key, key)
    if key not in BY_ARG:
        raise ValueError(f"format={arg!r} is not supported; choose one of {', '.join(BY_ARG)}")
    return BY_ARG[key]


def format_for_path(path: str) -> Format | None:
    """Which format an artifact path is (for inference on exported models), by its name."""
    p = str(path).rstrip("/")
    for f in sorted(FORMATS, key=lambda f: -len(f.suffix)):
        if p.endswith(f.suffix):
            return f
    return BY_ARG["tflite"] if p.endswith(".tflite") else None  # '_float16.tflite', '_int8.tflite', any other .tflite
