"""The ``YOLO`` facade: build or load a classification model and use it the way Ultralytics' ``YOLO`` is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxyolo.nn.build import ClassificationModel, build_model
from jaxyolo.nn.summary import model_info


def display_name(cfg: dict) -> str:
    """``yolov8n-cls.yaml`` -> ``YOLOv8n-cls`` as Ultralytics prints it."""
    stem = Path(str(cfg.get("yaml_file", "model"))).stem
    return stem.replace("yolo", "YOLO", 1) if stem.startswith("yolo") else stem


def init_variables(module: ClassificationModel, seed: int = 0, ch: int = 3) -> dict:
    """Initialise ``{'params', 'batch_stats'}`` with PyTorch-equivalent initialisers (params do not depend on imgsz)."""
    x = jnp.zeros((1, 32, 32, ch), jnp.float32)
    return jax.jit(lambda k: module.init(k, x))(jax.random.PRNGKey(seed))


class YOLO:
    """A YOLO classification model: ``YOLO('yolov8n-cls.yaml')`` builds and initialises one.

    Attributes: ``module`` (the Flax module), ``variables`` (``{'params', 'batch_stats'}``), ``cfg`` (the model dict),
    ``names`` (class index -> name), ``task`` (always ``'classify'``), ``overrides`` (e.g. the training ``imgsz``).
    """

    task = "classify"

    def __init__(self, model: str | Path = "yolov8n-cls.yaml", task: str | None = None, verbose: bool = False,
                 nc: int | None = None, seed: int = 0):
        if task not in (None, "classify"):
            raise ValueError(f"task={task!r}: jaxyolo supports only task='classify'")
        path = str(model)
        self.ckpt_path: str | None = None
        self.overrides: dict[str, Any] = {}
        if path.endswith((".yaml", ".yml")):
            self.module, self.cfg = build_model(path, nc=nc)
            self.variables = init_variables(self.module, seed, self.cfg["channels"])
            self.names = {i: str(i) for i in range(self.module.nc)}
            self.overrides["imgsz"] = 224  # Ultralytics' classification default
        else:
            raise ValueError(f"{path}: unsupported model source; expected a model YAML such as 'yolov8n-cls.yaml'")
        self._forward = None
        if verbose:
            self.info()

    @property
    def nc(self) -> int:
        return self.module.nc

    def info(self, detailed: bool = False, verbose: bool = True, imgsz=640):
        """Print the model summary (layers, parameters, GFLOPs at ``imgsz``, 640 like Ultralytics by default)."""
        return model_info(display_name(self.cfg), self.module, self.variables, imgsz, self.cfg["channels"],
                          detailed=detailed, verbose=verbose)

    def forward(self, images) -> np.ndarray:
        """Class probabilities ``(B, nc)`` for a batch of NHWC RGB images: uint8 in [0, 255] or float in [0, 1]."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != self.cfg["channels"]:
            raise ValueError(f"expected images shaped (B, H, W, {self.cfg['channels']}) (NHWC), got {x.shape}")
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if self._forward is None:
            self._forward = jax.jit(lambda v, a: self.module.apply(v, a, train=False))
        return np.asarray(self._forward(self.variables, x))

    __call__ = forward

    def __repr__(self) -> str:
        return f"YOLO({display_name(self.cfg)}, nc={self.nc}, task={self.task})"
