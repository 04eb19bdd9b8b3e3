"""BatchNorm over NHWC channels with PyTorch ``BatchNorm2d`` semantics, as Ultralytics trains it.

Flax's ``nn.BatchNorm`` differs from torch in one place: it moves the running variance towards the *biased* batch
variance, torch towards the unbiased one (times n/(n-1), n = batch x height x width). At the last stage of a digits
run (1x1 maps, batch 64) that is 1.6% per update. This module keeps torch's rule, and Flax's variable layout
(``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var``, float32), so checkpoints and the ``.pt`` mapping
are unchanged.

Train mode normalises with the batch mean and the biased batch variance (torch does the same), computed in float32
from one pass (E[x^2] - E[x]^2, clipped at 0, as Flax's default); its backward pass is written out
(``batch_norm_train``), with the SiLU that follows every Conv's BatchNorm (``silu=True``) inside it. Under
``jax.jit`` with the batch sharded over a mesh the sums are global, so the statistics are the whole batch's (SyncBN).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero


class BatchNorm(nn.Module):
    """``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` per channel (last axis).

    ``momentum`` is Flax's (the weight of the old running value), i.e. 1 - torch's ``momentum``. ``silu``: return
    ``silu(y)`` (Ultralytics' Conv: Conv2d -> BatchNorm2d -> SiLU), in train mode with one written-out backward pass
    for both (``batch_norm_train``); no parameters of its own, so the variables are BatchNorm's alone."""

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None
    silu: bool = False

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        f32 = jnp.float32
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), f32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), f32)
        scale = self.param("scale", nn.initializers.ones, (c,), f32)
        bias = self.param("bias", nn.initializers.zeros, (c,), f32)
        if self.use_running_average:  # (the SiLU after the cast, in the graph exporters trace, as it always was)
            y = (x.astype(f32) - ra_mean.value) * (scale * lax.rsqrt(ra_var.value + self.epsilon)) + bias
            y = y if self.dtype is None else y.astype(self.dtype)  # dtype None: float32, like Flax's
            return nn.silu(y) if self.silu else y
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, self.silu)
        if not self.is_initializing():
            n = math.prod(x.shape[:-1])
            m = self.momentum
            ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
            ra_var.value = m * ra_var.value + (1.0 - m) * var * (n / max(n - 1, 1))
        return y if self.dtype is None else y.astype(self.dtype)


def _batch_stats(x):
    """``x`` in float32, and its per-channel mean and biased variance (one pass: E[x^2] - E[x]^2, clipped at 0)."""
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    xf = x.astype(jnp.float32)
    mean = jnp.sum(xf, axes) / n
    var = jnp.maximum(jnp.sum(lax.square(xf), axes) / n - lax.square(mean), 0.0)
    return xf, mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x, scale, bias, epsilon, silu=False):
    """Train-mode BatchNorm, and with ``silu`` the SiLU after it: ``(y, mean, var)``, y in float32.

    Its backward pass is written out: two per-channel sums, ``sum(g)`` and ``sum(g * x)`` (``sum(g * xhat)`` is
    ``rstd * (sum(g * x) - mean * sum(g))``, so no normalised copy of x is formed to be summed), then one elementwise
    pass. The SiLU's derivative is recomputed there from x (behind an optimisation barrier, so XLA does not keep the
    forward pass's sigmoid instead): the forward pass writes y alone, and BatchNorm+SiLU's backward pass is one
    elementwise loop before the sums and one after, where autodiff of ``silu(batch_norm(x))`` forms 8 reductions
    and keeps 3 maps per layer. yolov8n-cls train step on CPU, 224 px, batch 32: the written-out BatchNorm ~4% faster
    than autodiff's (session 12), SiLU inside it and these sums another ~5% (session 24; benchmarks/RESULTS.md).

    The cotangents of the returned mean and variance arrive as symbolic zeros when only the running statistics use
    them (always, in a train step), and their terms are then not formed: among them a division by the std that XLA
    cannot fold away (0 / x is not 0 for every x), one kernel per layer that computed zeros."""
    (y, mean, var), _ = _forward(x, scale, bias, epsilon, silu)
    return y, mean, var


def _affine(xf, mean, a, bias):
    """BatchNorm's output before the SiLU, ``(x - mean) * a + bias`` (a = scale * rstd): the forward pass's, and the
    backward pass's recomputation of it, one formula."""
    return (xf - mean) * a + bias


def _forward(x, scale, bias, epsilon, silu):
    xf, mean, var = _batch_stats(x)
    rstd = lax.rsqrt(var + epsilon)
    y = _affine(xf, mean, scale * rstd, bias)
    return (y * jax.nn.sigmoid(y) if silu else y, mean, var), (x, mean, rstd, scale, bias)


def _batch_norm_train_fwd(x, scale, bias, epsilon, silu):
    """The forward rule: with ``symbolic_zeros`` the differentiable arguments arrive as ``CustomVJPPrimal``s."""
    return _forward(x.value, scale.value, bias.value, epsilon, silu)


def _batch_norm_train_bwd(epsilon, silu, res, cotangents):
    """dx = a*g + b*xhat + c with per-channel a, b, c (g: the cotangent of the BatchNorm's output, through the SiLU's
    derivative ``sigmoid(z) * (1 + z * (1 - sigmoid(z)))`` when ``silu``); the cotangents of the returned mean and
    variance, where not symbolic zeros, enter through b and c (d var / dx = 2 (x - mean) / n)."""
    x, mean, rstd, scale, bias = res
    g, ct_mean, ct_var = cotangents
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    a = scale * rstd
    xf = x.astype(jnp.float32)
    g = jnp.zeros(x.shape, jnp.float32) if isinstance(g, SymbolicZero) else g.astype(jnp.float32)
    if silu:
        z = _affine(lax.optimization_barrier(xf), mean, a, bias)
        sig = jax.nn.sigmoid(z)
        g = g * (sig * (1.0 + z * (1.0 - sig)))
    dbias = jnp.sum(g, axes)
    dscale = (jnp.sum(g * xf, axes) - mean * dbias) * rstd
    b = (-(a * dscale) if isinstance(ct_var, SymbolicZero) else 2.0 * ct_var / rstd - a * dscale) / n
    c = (-(a * dbias) if isinstance(ct_mean, SymbolicZero) else ct_mean - a * dbias) / n
    return (a * g + (b * rstd) * (xf - mean) + c).astype(x.dtype), dscale, dbias


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd, symbolic_zeros=True)
