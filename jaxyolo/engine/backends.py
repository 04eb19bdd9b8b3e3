"""Inference on any model behind one interface: the JAX model itself or an exported artifact (like Ultralytics'
AutoBackend). ``load_backend(path)`` dispatches on the artifact's name through ``converters.export.formats``.

A backend takes a batch of preprocessed images, float32 NCHW RGB in [0, 1] (Ultralytics' exported-model input), and
returns ``(B, nc)`` probabilities as numpy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Backend:
    fmt: str  # 'jax', 'onnx', 'openvino', ...
    names: dict[int, str]
    imgsz: tuple[int, int]
    run: Callable[[np.ndarray], np.ndarray]  # NCHW float32 [0,1] -> (B, nc) probabilities
    batch: int | None = None  # fixed batch size of a static-shape artifact; None = any
    meta: dict = field(default_factory=dict)

    def __call__(self, images_nchw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images_nchw, dtype=np.float32)
        if self.batch is None or len(x) == self.batch:
            return np.asarray(self.run(x), dtype=np.float32)
        outs = []  # static-batch artifact: feed it in chunks, padding the last one
        for i in range(0, len(x), self.batch):
            chunk = x[i:i + self.batch]
            n = len(chunk)
            if n < self.batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            outs.append(np.asarray(self.run(chunk), dtype=np.float32)[:n])
        return np.concatenate(outs)


def load_backend(path: str | Path) -> Backend:
    from converters.export.formats import format_for_path

    fmt = format_for_path(str(path))
    if fmt is None:
        raise ValueError(f"{path}: not a recognised exported model (expected one of the export suffixes: .onnx, "
                         f"_openvino_model/, .torchscript, .engine, .mlpackage, _saved_model/, .pb, .tflite, "
                         f"_web_model/, _paddle_model/, _ncnn_model/)")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    mod = importlib.import_module(f"converters.export.{fmt.module}")
    return mod.load(Path(path))
