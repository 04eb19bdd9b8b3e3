"""Model summary in the shape of Ultralytics' ``model.info()``: layer table, parameter count and GFLOPs.

FLOPs are counted like Ultralytics (thop): 2 x multiply-accumulates of every conv and dense layer plus BatchNorm's
per-element affine, at the real input size. Everything is traced with ``jax.eval_shape``, so no weights are computed.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxyolo.nn.build import ClassificationModel
from jaxyolo.nn.norm import BatchNorm


@dataclasses.dataclass
class Profile:
    flops: float  # FLOPs for one image (2 x MACs)
    leaves: int  # leaf layers, counted as Ultralytics counts torch leaf modules


def _as_hw(imgsz) -> tuple[int, int]:
    if isinstance(imgsz, (int, np.integer)):
        return int(imgsz), int(imgsz)
    h, w = imgsz
    return int(h), int(w)


def profile(model: ClassificationModel, imgsz=224, ch: int = 3) -> Profile:
    """Count FLOPs of one forward pass at ``imgsz`` and the number of leaf layers."""
    h, w = _as_hw(imgsz)
    macs, leaves, seen = 0.0, 0, set()

    def interceptor(next_fun, args, kwargs, context):
        nonlocal macs, leaves
        out = next_fun(*args, **kwargs)
        mod = context.module
        if context.method_name != "__call__" or mod.path in seen:
            return out
        seen.add(mod.path)
        if isinstance(mod, nn.Conv):
            cin = args[0].shape[-1] // mod.feature_group_count
            macs += np.prod(out.shape[1:]) * cin * np.prod(mod.kernel_size)
            leaves += 1
        elif isinstance(mod, nn.Dense):
            macs += args[0].shape[-1] * out.shape[-1]
            leaves += 1
        elif isinstance(mod, BatchNorm):
            macs += np.prod(out.shape[1:])
            leaves += 1
        elif isinstance(mod, nn.Dropout):
            leaves += 1
        elif type(mod).__name__ == "Conv" and not mod.act:
            leaves += 1  # torch keeps one Identity module per activation-free Conv
        return out

    x = jax.ShapeDtypeStruct((1, h, w, ch), jnp.float32)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda a: model.init(jax.random.PRNGKey(0), a), x)
    # + the shared SiLU and the adaptive pool, which are torch modules but plain functions here
    return Profile(flops=2.0 * macs, leaves=leaves + 2)


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def layer_table(model: ClassificationModel, params) -> list[str]:
    """Per-layer rows like Ultralytics' parse_model printout: index, from, n, params, module, arguments."""
    rows = [f"{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}{'arguments':<30}"]
    for s in model.specs:
        n_p = count_params(params.get(f"model_{s.i}", {}))
        rows.append(f"{s.i:>3}{str(s.f):>20}{s.n:>3}{n_p:10,.0f}  {'jaxyolo.nn.modules.' + s.module:<45}"
                    f"{str(list(s.args)):<30}")
    return rows


def _fmt_gflops(g: float) -> str:
    return f"{g:.1f}" if g >= 0.95 else f"{g:.3f}"


def summary_line(name: str, model: ClassificationModel, params, imgsz=640, ch: int = 3,
                 trainable: bool = True) -> str:
    prof = profile(model, imgsz, ch)
    n_p = count_params(params)
    h, w = _as_hw(imgsz)
    size = f"{h}" if h == w else f"{h}x{w}"
    return (f"{name} summary: {prof.leaves} layers, {n_p:,} parameters, {n_p if trainable else 0:,} gradients, "
            f"{_fmt_gflops(prof.flops / 1e9)} GFLOPs (at imgsz {size})")


def model_info(name: str, model: ClassificationModel, variables, imgsz=640, ch: int = 3, detailed: bool = False,
               verbose: bool = True) -> tuple[int, int, int, float]:
    """Print (when ``verbose``) and return ``(layers, parameters, gradients, GFLOPs)`` like Ultralytics' info()."""
    params = variables["params"]
    prof = profile(model, imgsz, ch)
    n_p = count_params(params)
    if verbose:
        lines = layer_table(model, params) if detailed else []
        lines.append(summary_line(name, model, params, imgsz, ch))
        print("\n".join(lines))
    return prof.leaves, n_p, n_p, prof.flops / 1e9


def gflops(model: ClassificationModel, imgsz: int | Sequence[int] = 224, ch: int = 3) -> float:
    return profile(model, imgsz, ch).flops / 1e9
