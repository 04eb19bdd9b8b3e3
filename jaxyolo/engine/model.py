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
        elif path.endswith(".pt"):
            from converters.torch_weights.load import load_pt

            self.module, self.variables, meta = load_pt(path)
            if nc is not None and nc != self.module.nc:
                raise ValueError(f"{path}: the checkpoint has nc={self.module.nc}, not nc={nc}; to fine-tune with "
                                 f"another class count use YOLO('<model>.yaml', nc={nc}).load('{path}')")
            self.cfg, self.names, self.ckpt = meta["cfg"], meta["names"], meta
            self.overrides["imgsz"] = meta["imgsz"]
            self.ckpt_path = str(model)
        else:
            raise ValueError(f"{path}: unsupported model source; expected a model YAML such as 'yolov8n-cls.yaml' "
                             f"or an Ultralytics classification checkpoint such as 'yolov8n-cls.pt'")
        self._forward = None
        if verbose:
            self.info()

    def load(self, weights: str | Path, verbose: bool = True) -> "YOLO":
        """Transfer weights from an Ultralytics ``.pt`` checkpoint, like Ultralytics' ``YOLO('x.yaml').load('x.pt')``.

        Every tensor whose name and shape match is copied (e.g. all but the Linear layer when ``nc`` differs); a first
        conv with another input-channel count is filled from the source filters (summed over RGB for one channel).
        When everything transfers and this model still has placeholder names, it takes the checkpoint's names.
        """
        import flax

        from converters.torch_weights.load import load_pt

        _, src_vars, meta = load_pt(weights)
        src = flax.traverse_util.flatten_dict(jax.device_get(src_vars))
        dst = flax.traverse_util.flatten_dict(jax.device_get(self.variables))
        out, n = {}, 0
        for k, v in dst.items():
            s = src.get(k)
            if s is not None and s.shape == v.shape:
                out[k], n = np.asarray(s, dtype=np.asarray(v).dtype), n + 1
            else:
                out[k] = v
        first = ("params", "model_0", "conv", "kernel")  # HWIO
        if first in dst and first in src and out[first] is dst[first] and dst[first].shape[:2] == src[first].shape[:2]:
            w, s = np.array(dst[first]), np.asarray(src[first])
            c_in, c_out = min(w.shape[2], s.shape[2]), min(w.shape[3], s.shape[3])
            s = s[..., :c_out]
            w[:, :, :c_in, :c_out] = s.sum(2, keepdims=True) if c_in == 1 else s[:, :, :c_in]
            out[first], n = w, n + 1
        self.variables = jax.tree.map(jnp.asarray, flax.traverse_util.unflatten_dict(out))
        if n == len(dst) and self.names == {i: str(i) for i in range(self.nc)} and len(meta["names"]) == self.nc:
            self.names = dict(meta["names"])
        self.ckpt_path = str(weights)
        self._forward = None
        if verbose:
            print(f"Transferred {n}/{len(dst)} items from pretrained weights")
        return self

    def save(self, path: str | Path, half: bool = True, **extra) -> Path:
        """Write an Ultralytics-loadable classification checkpoint (``ultralytics.YOLO(path)`` loads and predicts)."""
        from converters.torch_weights.save import save_pt

        ckpt = getattr(self, "ckpt", None) or {}
        train_args = {**ckpt.get("train_args", {}), "imgsz": self.overrides.get("imgsz", 224)}
        return save_pt(path, self.module, self.variables, self.cfg, self.names, train_args=train_args, half=half,
                       **extra)

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
