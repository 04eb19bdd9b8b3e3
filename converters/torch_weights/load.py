"""Read an Ultralytics classification ``.pt`` checkpoint into a jaxyolo model (no torch, ultralytics or torchvision
needed: ``arrays.read_checkpoint_arrays``).

``load_pt(path) -> (module, variables, meta)``: the pickled model (``ema`` if present, else ``model``; float16 or
float32) is read through the restricted unpickler, its state dict is taken from the inert module tree, the Flax model is
rebuilt from the checkpoint's own ``yaml`` with ``nc`` from the Linear layer, and every tensor's shape is checked
against that model before anything is converted. When the YAML width formula does not fit, the legacy Ultralytics rule
(layers whose YAML width equals ``nc`` left unscaled) is tried; if that does not fit either, loading fails and the error
lists the first mismatching tensors. Non-classification checkpoints are refused.
"""

from __future__ import annotations

import copy
import types
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from converters.torch_weights.mapping import SKIPPED_KEYS, flax_path_to_torch, state_dict_to_variables
from converters.torch_weights.arrays import read_checkpoint_arrays
from converters.torch_weights.unpickler import CheckpointFormatError, InertObject, origin_of

__all__ = ["CheckpointMismatchError", "NotAClassifierError", "load_pt", "read_model_state", "checkpoint_state_dict"]

# head class -> Ultralytics task, to say what a refused checkpoint is
_HEAD_TASKS = {"Detect": "detect", "v10Detect": "detect", "Segment": "segment", "Pose": "pose", "OBB": "obb",
               "WorldDetect": "detect", "RTDETRDecoder": "detect", "YOLOEDetect": "detect", "YOLOESegment": "segment"}


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the architecture its ``yaml`` describes (under either width rule)."""


class NotAClassifierError(ValueError):
    """The checkpoint holds a model for another task (detection, segmentation, ...)."""


def _is_module(obj: Any) -> bool:
    return isinstance(obj, InertObject) and isinstance(obj.__dict__.get("_modules"), Mapping)


def module_state_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``state_dict()`` of an inert (unpickled) ``nn.Module`` tree: parameters and persistent buffers, as tensors."""
    out = {}
    d = obj.__dict__
    skip = d.get("_non_persistent_buffers_set") or set()
    for name, t in (d.get("_parameters") or {}).items():
        if t is not None:
            out[prefix + name] = t
    for name, t in (d.get("_buffers") or {}).items():
        if t is not None and name not in skip:
            out[prefix + name] = t
    for name, child in (d.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def _plain(obj: Any) -> Any:
    """Inert namespaces (e.g. ``IterableSimpleNamespace``) -> dicts, recursively through dicts/lists."""
    if isinstance(obj, InertObject):
        return {k: _plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    if isinstance(obj, types.SimpleNamespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def read_model_state(path: str | Path) -> tuple[dict, Any, str]:
    """Read a checkpoint (tensors as numpy arrays, torch not imported); returns ``(ckpt_dict, model_object,
    'ema' | 'model')``; errors name the file."""
    ckpt = read_checkpoint_arrays(path)
    if _is_module(ckpt):  # torch.save(model): Ultralytics accepts it too
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, Mapping):
        raise CheckpointFormatError(f"{path}: holds a {origin_of(ckpt)}, not an Ultralytics checkpoint dict "
                                    f"with a 'model' entry")
    key = "ema" if ckpt.get("ema") is not None else "model"
    model = ckpt.get(key)
    if model is None:
        if ckpt and all(hasattr(v, "shape") and hasattr(v, "dtype") for v in ckpt.values()):
            raise CheckpointFormatError(
                f"{path}: a plain state_dict ({len(ckpt)} tensors), not an Ultralytics checkpoint (no pickled model, "
                f"so no architecture, class names or image size). Build the model from its YAML instead, e.g. "
                f"YOLO('yolov8n-cls.yaml', nc=...), and load the tensors with converters.torch_weights.mapping.")
        raise CheckpointFormatError(f"{path}: no 'model' or 'ema' entry (keys: {', '.join(map(str, ckpt))}); "
                                    f"not an Ultralytics checkpoint")
    if not _is_module(model):
        raise CheckpointFormatError(f"{path}: ckpt[{key!r}] is a {origin_of(model)}, not a pickled Ultralytics model")
    return dict(ckpt), model, key


def _layers(model: Any) -> list:
    seq = model.__dict__["_modules"].get("model")
    if not _is_module(seq):
        raise CheckpointFormatError(f"the pickled {origin_of(model)} has no 'model' layer sequence")
    return list(seq.__dict__["_modules"].values())


def checkpoint_state_dict(model: Any) -> dict[str, np.ndarray]:
    """State dict of an inert model as float32 numpy arrays (fp16/bf16 upcast), without ``num_batches_tracked``."""
    out = {}
    for k, t in module_state_dict(model).items():
        if k.rsplit(".", 1)[-1] in SKIPPED_KEYS:
            continue
        a = _array(t)
        out[k] = a.astype(np.float32) if _is_float(a) else a
    return out


def _array(t) -> np.ndarray:
    """A state-dict entry of a model read by ``read_checkpoint_arrays`` (tensors are numpy arrays there)."""
    if isinstance(t, np.ndarray):
        return t
    raise CheckpointFormatError(f"a state-dict entry is a {origin_of(t)}, not a tensor")


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or a.dtype.name == "bfloat16"


def _expected_shapes(module, ch: int) -> dict[str, tuple]:
    """{torch key: torch-layout shape} of a Flax model's variables, from shapes only (nothing is computed)."""
    import jax

    from jaxyolo.engine.model import variable_shapes

    shapes = variable_shapes(module, ch)
    out = {}
    for coll in ("params", "batch_stats"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes.get(coll, {}))[0]:
            names = tuple(p.key for p in path)
            s = tuple(leaf.shape)
            s = (s[3], s[2], s[0], s[1]) if len(s) == 4 else s[::-1] if len(s) == 2 else s
            out[flax_path_to_torch(coll, names)] = s
    return out


def _mismatches(sd: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> list[str]:
    out = []
    for k, s in expected.items():
        if k not in sd:
            out.append(f"{k}: missing from the checkpoint (expected {s})")
        elif tuple(sd[k].shape) != s:
            out.append(f"{k}: checkpoint {tuple(sd[k].shape)} vs expected {s}")
    out.extend(f"{k}: {tuple(sd[k].shape)} in the checkpoint but not in the model" for k in sd if k not in expected)
    return out


def _model_cfg(path, model: Any, train_args: Mapping) -> dict:
    from jaxyolo.nn.build import guess_scale, load_model_yaml

    cfg = _plain(model.__dict__.get("yaml"))
    if not isinstance(cfg, dict) or not cfg.get("backbone"):
        name = train_args.get("model")
        if not name:
            raise CheckpointFormatError(f"{path}: the pickled model has no 'yaml' (architecture) and train_args "
                                        f"names no model YAML; cannot rebuild it")
        cfg = load_model_yaml(Path(str(name)).with_suffix(".yaml").name)
    cfg = copy.deepcopy(cfg)
    if not cfg.get("scale") and cfg.get("scales"):
        cfg["scale"] = guess_scale(str(cfg.get("yaml_file", ""))) or None
        if cfg["scale"] is None:
            del cfg["scale"]
    return cfg


def load_pt(path: str | Path) -> tuple[Any, dict, dict]:
    """Load an Ultralytics classification checkpoint; returns ``(module, variables, meta)``.

    ``variables`` is ``{'params', 'batch_stats'}`` of float32 ``jax.Array``s. ``meta`` has ``names``, ``cfg`` (the
    model dict), ``train_args``, ``imgsz``, ``nc``, ``legacy_nc_width``, ``weights`` ('ema' or 'model'), ``dtype``
    (stored precision), ``path`` and ``info`` (date, version, epoch, best_fitness, train_metrics when present).
    """
    import jax
    import jax.numpy as jnp

    from jaxyolo.nn.build import ModelConfigError, build_model

    ckpt, model, key = read_model_state(path)
    train_args = _plain(ckpt.get("train_args")) or _plain(model.__dict__.get("args")) or {}
    if not isinstance(train_args, dict):
        train_args = {}
    layers = _layers(model)
    head = origin_of(layers[-1]).rsplit(".", 1)[-1] if layers else "nothing"
    if head != "Classify":
        task = _HEAD_TASKS.get(head) or train_args.get("task") or "unknown"
        raise NotAClassifierError(f"{path}: a {task} model (its head is {head}, not Classify); jaxyolo loads only "
                                  f"classification checkpoints such as yolov8n-cls.pt / yolo11n-cls.pt")

    sd = checkpoint_state_dict(model)
    last = len(layers) - 1
    lin = sd.get(f"model.{last}.linear.weight")
    if lin is None or lin.ndim != 2:
        raise CheckpointMismatchError(f"{path}: the Classify head has no linear layer weight "
                                      f"(model.{last}.linear.weight)")
    nc = int(lin.shape[0])
    cfg = _model_cfg(path, model, train_args)
    first = sd.get("model.0.conv.weight")
    if first is not None and first.ndim == 4 and "channels" not in cfg:
        cfg["channels"] = int(first.shape[1])
    dtypes = sorted({str(t.dtype) for t in module_state_dict(model).values() if _is_float(_array(t))})

    tried = []
    module = None
    for legacy in (False, True):
        try:
            candidate, built_cfg = build_model(cfg, nc=nc, legacy_nc_width=legacy)
        except ModelConfigError as e:
            raise CheckpointFormatError(f"{path}: cannot rebuild the architecture from the checkpoint's yaml: {e}") \
                from None
        if legacy and tried and candidate.specs == tried[0][0].specs:
            break  # nc is not a YAML width: the legacy rule builds the same model, nothing new to try
        bad = _mismatches(sd, _expected_shapes(candidate, built_cfg["channels"]))
        tried.append((candidate, bad))
        if not bad:
            module, cfg, legacy_nc_width = candidate, built_cfg, legacy
            break
    if module is None:
        bad = tried[0][1]
        hint = ""
        if any(k.endswith("conv.bias") for k in sd) and not any(".bn." in k for k in sd):
            hint = " The checkpoint looks fused (BatchNorm folded into the convs); use an unfused checkpoint."
        rules = "the YAML width formula" + (" or the legacy nc-width rule" if len(tried) > 1 else "")
        raise CheckpointMismatchError(
            f"{path}: the checkpoint's tensors do not fit the architecture in its yaml "
            f"({cfg.get('yaml_file', 'model')}, scale {cfg.get('scale', '?')}, nc={nc}) under {rules}; "
            f"{len(bad)} mismatch(es), first: " + "; ".join(bad[:6]) + "." + hint)

    variables = jax.tree.map(jnp.asarray, state_dict_to_variables(sd))
    names = _plain(model.__dict__.get("names"))
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    try:
        names = {int(k): str(v) for k, v in names.items()}
    except (AttributeError, TypeError, ValueError):
        names = None
    if names is None or sorted(names) != list(range(nc)):
        warnings.warn(f"{path}: the checkpoint's class names do not cover 0..{nc - 1}; using '0'..'{nc - 1}'",
                      stacklevel=2)
        names = {i: str(i) for i in range(nc)}
    names = dict(sorted(names.items()))
    imgsz = train_args.get("imgsz") or 224
    info = {k: _plain(ckpt[k]) for k in ("date", "version", "epoch", "best_fitness", "train_metrics", "writer")
            if k in ckpt}
    meta = {"names": names, "cfg": cfg, "train_args": train_args, "imgsz": imgsz, "nc": nc,
            "legacy_nc_width": legacy_nc_width, "weights": key, "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
            "path": str(path), "info": info}
    return module, variables, meta
