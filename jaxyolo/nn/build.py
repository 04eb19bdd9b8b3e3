"""Ultralytics-schema model YAML -> resolved layer specs -> one Flax Linen ``ClassificationModel``.

The YAML schema is Ultralytics' (``nc``, ``scales``, ``backbone``/``head`` lists of ``[from, repeats, module, args]``).
``parse_model`` applies the same rules as Ultralytics: repeats ``max(round(n * depth), 1)`` when ``n > 1``; widths
``make_divisible(min(c2, max_channels) * width, 8)`` for every module but ``Classify``; ``n`` inserted as the third
argument of repeat modules; ``C3k2`` forced to C3k inner blocks on the m/l/x scales.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import flax.linen as nn
import yaml

from jaxyolo.nn import modules as M

MODELS_DIR = Path(__file__).resolve().parents[1] / "cfg" / "models"


class ModelConfigError(ValueError):
    """A model YAML (or dict) that cannot be built; the message names the file and the problem."""


# Ultralytics' positional argument order for each module, after parse_model has resolved [c1, c2, (n,) ...].
ARG_NAMES = {
    "Conv": ("c1", "c2", "k", "s", "p", "g", "d", "act"),
    "Bottleneck": ("c1", "c2", "shortcut", "g", "k", "e"),
    "C2f": ("c1", "c2", "n", "shortcut", "g", "e"),
    "C3": ("c1", "c2", "n", "shortcut", "g", "e"),
    "C3k": ("c1", "c2", "n", "shortcut", "g", "e", "k"),
    "C3k2": ("c1", "c2", "n", "c3k", "e", "attn", "g", "shortcut"),
    "C2PSA": ("c1", "c2", "n", "e"),
    "Classify": ("c1", "c2", "k", "s", "p", "g"),
}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One resolved layer: index, input index ``f``, repeats after depth scaling, module name and its arguments."""

    i: int
    f: int
    n: int
    module: str
    args: tuple

    @property
    def kwargs(self) -> dict:
        return dict(zip(ARG_NAMES[self.module], self.args))

    @property
    def c2(self) -> int:
        return self.args[1]


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round up to a multiple of ``divisor`` (Ultralytics' rule)."""
    return int(math.ceil(x / divisor) * divisor)


def guess_scale(name: str) -> str | None:
    """``yolov8n-cls.yaml`` -> ``'n'``, ``yolo11x-cls.yaml`` -> ``'x'`` (Ultralytics' file-name regex)."""
    m = re.search(r"yolo(e-)?[v]?\d+([a-z])", Path(str(name)).stem)
    return m.group(2) if m else None


def _unscaled_name(path: Path) -> Path:
    """``yolov8n-cls.yaml`` -> ``yolov8-cls.yaml`` (drop the scale letter), as Ultralytics' yaml_model_load does."""
    return path.with_name(re.sub(r"(\d+)([a-z])(-.+)?$", r"\1\3", path.stem) + path.suffix)


def resolve_model_yaml(model: str | Path) -> tuple[Path, str | None]:
    """Find the YAML file for ``model`` (a path, or a shipped name like ``yolov8n-cls.yaml``) and the scale in its name."""
    p = Path(model)
    scale = guess_scale(p.name)
    candidates = [p, _unscaled_name(p), MODELS_DIR / p.name, MODELS_DIR / _unscaled_name(p).name]
    for c in candidates:
        if c.is_file():
            return c, scale
    shipped = ", ".join(sorted(f.name for f in MODELS_DIR.glob("*.yaml")))
    raise ModelConfigError(f"{model}: model YAML not found (looked for {', '.join(str(c) for c in candidates[:2])}; "
                           f"shipped models: {shipped}, each with a scale letter n/s/m/l/x, e.g. yolov8n-cls.yaml)")


def load_model_yaml(model: str | Path) -> dict:
    """Read a model YAML into a dict with ``yaml_file`` and ``scale`` set; errors name the file."""
    path, scale = resolve_model_yaml(model)
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ModelConfigError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"{path}: expected a mapping with 'nc', 'scales', 'backbone' and 'head', "
                               f"got {type(cfg).__name__}")
    cfg["yaml_file"] = Path(model).name if not Path(model).is_file() else str(model)
    if scale:
        cfg["scale"] = scale
    return cfg


def _arg(value: Any, nc: int) -> Any:
    if isinstance(value, str):
        if value == "nc":
            return nc
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def parse_model(cfg: dict, nc: int | None = None, ch: int = 3, legacy_nc_width: bool = False) -> tuple[LayerSpec, ...]:
    """Resolve a model dict into layer specs with Ultralytics' rules.

    ``legacy_nc_width`` reproduces the width rule of Ultralytics releases before PR #25297, which left every layer whose
    YAML width equals ``nc`` unscaled; it exists only to read checkpoints written by those releases.
    """
    src = cfg.get("yaml_file", "<model dict>")
    for key in ("backbone", "head"):
        if not isinstance(cfg.get(key), list):
            raise ModelConfigError(f"{src}: missing or invalid '{key}' (expected a list of [from, repeats, module, args])")
    nc = int(nc if nc is not None else cfg.get("nc", 1000))
    if nc < 1:
        raise ModelConfigError(f"{src}: nc must be a positive integer, got {nc}")
    scales = cfg.get("scales")
    depth, width, max_channels = cfg.get("depth_multiple", 1.0), cfg.get("width_multiple", 1.0), float("inf")
    if scales:
        scale = cfg.get("scale") or next(iter(scales))
        if scale not in scales:
            raise ModelConfigError(f"{src}: unknown scale '{scale}' (this YAML defines {', '.join(scales)})")
        try:
            depth, width, max_channels = scales[scale]
        except (TypeError, ValueError):
            raise ModelConfigError(f"{src}: scale '{scale}' must be [depth, width, max_channels], "
                                   f"got {scales[scale]}") from None
    else:
        scale = cfg.get("scale")

    chans = [ch]
    specs = []
    for i, layer in enumerate(cfg["backbone"] + cfg["head"]):
        if not (isinstance(layer, (list, tuple)) and len(layer) == 4):
            raise ModelConfigError(f"{src}: layer {i} must be [from, repeats, module, args], got {layer!r}")
        f, n, name, args = layer
        if name not in M.MODULES:
            raise ModelConfigError(f"{src}: layer {i}: unknown module '{name}' "
                                   f"(supported: {', '.join(sorted(M.MODULES))})")
        if not isinstance(f, int) or isinstance(f, bool):
            raise ModelConfigError(f"{src}: layer {i}: 'from' must be a single layer index for {name}, got {f!r}")
        if not (f == -1 or (f < -1 and i + f >= 0) or 0 <= f < i):
            valid = f"-1..-{i} or 0..{i - 1}" if i else "-1 (the input image)"
            raise ModelConfigError(f"{src}: layer {i}: 'from' index {f} does not name an earlier layer (valid: {valid})")
        c1 = chans[f] if f < 0 else chans[f + 1]
        if not isinstance(n, int) or n < 1:
            raise ModelConfigError(f"{src}: layer {i}: repeats must be a positive integer, got {n!r}")
        if not isinstance(args, list):
            raise ModelConfigError(f"{src}: layer {i}: args must be a list, got {args!r}")
        args = [_arg(a, nc) for a in args]
        n = max(round(n * depth), 1) if n > 1 else n
        if name == "Classify":
            args = [c1, *args]
            c2 = args[1]
        else:
            if not args or not isinstance(args[0], int):
                raise ModelConfigError(f"{src}: layer {i}: {name} needs its output channels as the first argument, "
                                       f"got {args!r}")
            c2 = args[0]
            if not (legacy_nc_width and c2 == nc):
                c2 = make_divisible(min(c2, max_channels) * width, 8)
            args = [c1, c2, *args[1:]]
            if name in M.REPEAT_MODULES:
                args.insert(2, n)
                n = 1
            if name == "C3k2" and scale in ("m", "l", "x"):
                args[3:4] = [True]
            if name == "C2PSA" and c1 != c2:
                raise ModelConfigError(f"{src}: layer {i}: C2PSA needs equal input and output channels "
                                       f"({c1} != {c2})")
        if len(args) > len(ARG_NAMES[name]):
            raise ModelConfigError(f"{src}: layer {i}: too many arguments for {name}: {args!r} "
                                   f"(takes {', '.join(ARG_NAMES[name])})")
        if n != 1:
            raise ModelConfigError(f"{src}: layer {i}: repeats > 1 are only supported for "
                                   f"{', '.join(sorted(M.REPEAT_MODULES))}, not {name}")
        specs.append(LayerSpec(i, f, n, name, tuple(tuple(a) if isinstance(a, list) else a for a in args)))
        chans.append(c2)
    if specs[-1].module != "Classify":
        raise ModelConfigError(f"{src}: the last layer must be a Classify head, got {specs[-1].module}")
    return tuple(specs)


def make_layer(spec: LayerSpec, dtype: Any = None, dropout: float = 0.0) -> nn.Module:
    """Instantiate the Flax module for one spec, named ``model_{i}`` like Ultralytics' ``model.{i}``."""
    kw = spec.kwargs
    name = f"model_{spec.i}"
    if spec.module == "Conv":
        if kw.pop("d", 1) != 1:
            raise ModelConfigError(f"layer {spec.i}: dilated Conv is not supported")
    if spec.module == "C3k2" and kw.pop("attn", False):
        raise ModelConfigError(f"layer {spec.i}: C3k2 with attn=True (YOLO12-style) is not supported")
    if spec.module == "C3k" and "k" in kw:
        k = kw.pop("k")
        kw["bottleneck_k"] = (k, k)
    if spec.module == "Bottleneck" and "k" in kw:
        kw["k"] = tuple(kw["k"])
    if spec.module == "Classify":
        kw["dropout"] = dropout
    return M.MODULES[spec.module](**kw, dtype=dtype, name=name)


class ClassificationModel(nn.Module):
    """A YOLO classification network built from resolved layer specs.

    ``__call__(x, train=False)``: ``x`` is NHWC float RGB in [0, 1]. Returns logits when ``train`` (or ``logits=True``),
    softmax probabilities otherwise. ``dtype`` is the compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
    """

    specs: tuple[LayerSpec, ...]
    dtype: Any = None
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False, logits: bool | None = None):
        outputs = []
        for spec in self.specs:
            if spec.f != -1:
                x = outputs[spec.f]
            layer = make_layer(spec, self.dtype, self.dropout)
            x = layer(x, train, logits) if spec.module == "Classify" else layer(x, train)
            outputs.append(x)
        return x

    @property
    def nc(self) -> int:
        return self.specs[-1].c2


def build_model(model: str | Path | dict, nc: int | None = None, ch: int = 3, dtype: Any = None,
                dropout: float = 0.0, legacy_nc_width: bool = False) -> tuple[ClassificationModel, dict]:
    """Build a model from a YAML path/name or an already-loaded dict; returns ``(module, cfg)``."""
    cfg = dict(model) if isinstance(model, dict) else load_model_yaml(model)
    if nc is not None:
        cfg["nc"] = int(nc)
    ch = int(cfg.get("channels", ch))
    cfg["channels"] = ch
    specs = parse_model(cfg, cfg.get("nc"), ch, legacy_nc_width=legacy_nc_width)
    return ClassificationModel(specs, dtype=dtype, dropout=dropout), cfg
