"""A model's initial variables drawn on the host (numpy) by the rules of modules.py's initialisers.

Jitting Flax's ``module.init`` compiles an XLA executable of ~260 fusions to draw ~1.5M numbers once: 2-2.6 s of a
first run's set-up on 2 cores (yolov8n-cls; the executable then runs for ~20 ms). The same distributions drawn by
numpy take milliseconds. Every variable of the models built from YAML is one of:

- a convolution's or the head Linear's ``kernel`` (``torch_kernel_init``: PyTorch's kaiming_uniform(a=sqrt(5)),
  U(+-1/sqrt(fan_in)), fan_in = every axis but the last);
- the head Linear's ``bias`` (a ``bias`` beside a ``kernel``: ``_torch_bias_init``, U(+-1/sqrt(in_features)));
- BatchNorm's ``scale`` (ones) and ``bias`` (zeros), its ``batch_stats`` ``mean`` (zeros) and ``var`` (ones).

``host_variables`` returns None for a tree with any other variable, and the caller initialises with Flax instead.
tests/test_host_init.py checks these rules against Flax's own init of every model family.
"""

from __future__ import annotations

import math

import numpy as np


def _bound(kernel_shape: tuple) -> float:
    fan_in = math.prod(kernel_shape[:-1])
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def _rule(collection: str, siblings: dict, name: str):
    """``('uniform', bound)`` or ``('fill', value)`` for one variable, or None for one these rules do not know."""
    if collection == "batch_stats":
        return {"mean": ("fill", 0.0), "var": ("fill", 1.0)}.get(name)
    if collection != "params":
        return None
    if name == "kernel":
        return ("uniform", _bound(tuple(siblings["kernel"].shape)))
    if name == "bias":
        if "kernel" in siblings:  # the head's Linear
            return ("uniform", _bound(tuple(siblings["kernel"].shape)))
        return ("fill", 0.0) if "scale" in siblings else None
    if name == "scale" and set(siblings) == {"scale", "bias"}:
        return ("fill", 1.0)
    return None


def _leaf_dicts(tree: dict, path=()):
    """``(path, dict of leaves)`` for every dict in ``tree`` that holds leaves, depth-first in sorted key order."""
    leaves = {k: v for k, v in tree.items() if not isinstance(v, dict)}
    if leaves:
        yield path, leaves
    for k in sorted(tree):
        if isinstance(tree[k], dict):
            yield from _leaf_dicts(tree[k], path + (k,))


def host_variables(shapes: dict, seed: int) -> dict | None:
    """``{'params', 'batch_stats'}`` of numpy arrays shaped like ``shapes`` (``variable_shapes``' tree of
    ``ShapeDtypeStruct``s), drawn from ``numpy.random.default_rng(seed)`` in the tree's sorted order (the same values
    on every host of a run); None when a variable has no rule here."""
    if set(shapes) - {"params", "batch_stats"}:
        return None
    rng = np.random.default_rng(int(seed))
    out: dict = {}
    for collection in sorted(shapes):
        for path, leaves in _leaf_dicts(shapes[collection]):
            node = out.setdefault(collection, {})
            for k in path:
                node = node.setdefault(k, {})
            for name in sorted(leaves):
                rule = _rule(collection, leaves, name)
                if rule is None:
                    return None
                shape, dtype = tuple(leaves[name].shape), np.dtype(leaves[name].dtype)
                kind, value = rule
                if kind == "fill":
                    node[name] = np.full(shape, value, dtype)
                else:
                    draws = rng.random(shape, dtype=np.float32)  # U[0, 1), scaled in place to U[-b, b)
                    draws *= np.float32(2 * value)
                    draws -= np.float32(value)
                    node[name] = draws.astype(dtype, copy=False)
    return out
