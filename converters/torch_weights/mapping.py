"""Mechanical mapping between Ultralytics state-dict keys/tensors and jaxyolo's Flax variables.

Names: ``model.2.m.0.cv1.conv.weight`` <-> ``params/model_2/m_0/cv1/conv/kernel`` (a list index joins the name before
it with ``_``). Layouts: conv OIHW <-> HWIO (depthwise (C,1,k,k) <-> (k,k,1,C) by the same rule), Linear (out, in) <->
Dense (in, out), BatchNorm weight/bias/running_mean/running_var <-> scale/bias (params) and mean/var (batch_stats).
``num_batches_tracked`` has no Flax counterpart (BatchNorm momentum mode never reads it).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

# torch leaf name -> (Flax collection, Flax leaf name); 'weight' depends on the tensor rank (see below)
_LEAVES = {"bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_FLAX_LEAVES = {("params", "bias"): "bias", ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
                ("batch_stats", "var"): "running_var", ("params", "kernel"): "weight"}
SKIPPED_KEYS = ("num_batches_tracked",)


def torch_key_to_flax(key: str, ndim: int) -> tuple[str, tuple[str, ...]]:
    """``'model.9.linear.weight'`` (ndim 2) -> ``('params', ('model_9', 'linear', 'kernel'))``."""
    *mods, leaf = key.split(".")
    path: list[str] = []
    for part in mods:
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    if leaf == "weight":
        coll, name = ("params", "kernel") if ndim in (2, 4) else ("params", "scale")
    elif leaf in _LEAVES:
        coll, name = _LEAVES[leaf]
    else:
        raise KeyError(f"state-dict key {key!r}: unknown tensor name {leaf!r}")
    return coll, (*path, name)


def flax_path_to_torch(collection: str, path: Iterable[str]) -> str:
    """``('params', ('model_9', 'linear', 'kernel'))`` -> ``'model.9.linear.weight'``."""
    *mods, leaf = path
    parts = []
    for m in mods:
        head, _, idx = m.rpartition("_")
        parts.extend([head, idx] if head and idx.isdigit() else [m])
    return ".".join([*parts, _FLAX_LEAVES[(collection, leaf)]])


def torch_to_flax_array(a: np.ndarray) -> np.ndarray:
    """Tensor layout torch -> Flax: OIHW -> HWIO, (out, in) -> (in, out), vectors unchanged."""
    if a.ndim == 4:
        return np.transpose(a, (2, 3, 1, 0))
    if a.ndim == 2:
        return a.T
    return a


def flax_to_torch_array(a: np.ndarray) -> np.ndarray:
    if a.ndim == 4:
        return np.transpose(a, (3, 2, 0, 1))
    if a.ndim == 2:
        return a.T
    return a


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    if path[-1] in tree:
        raise KeyError(f"duplicate Flax path {'/'.join(path)}")
    tree[path[-1]] = value


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray]) -> dict:
    """A torch-style state dict (numpy arrays) -> nested ``{'params': ..., 'batch_stats': ...}``."""
    out: dict = {"params": {}, "batch_stats": {}}
    for key, value in state_dict.items():
        if key.rsplit(".", 1)[-1] in SKIPPED_KEYS:
            continue
        a = np.asarray(value)
        coll, path = torch_key_to_flax(key, a.ndim)
        _set(out[coll], path, np.ascontiguousarray(torch_to_flax_array(a)))
    return out


def _walk(tree: Mapping, prefix: tuple[str, ...] = ()):
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _walk(v, (*prefix, k))
        else:
            yield (*prefix, k), v


def variables_to_state_dict(variables: Mapping) -> dict[str, np.ndarray]:
    """Flax variables -> torch-style state dict of numpy arrays (without ``num_batches_tracked``)."""
    sd = {}
    for coll in ("params", "batch_stats"):
        for path, value in _walk(variables.get(coll, {})):
            sd[flax_path_to_torch(coll, path)] = np.ascontiguousarray(flax_to_torch_array(np.asarray(value)))
    return sd
