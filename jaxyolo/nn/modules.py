"""Flax Linen building blocks with Ultralytics YOLO classification semantics.

Tensors are NHWC. Submodule names mirror Ultralytics' state-dict keys with list indices joined by ``_``
(``model.2.m.0.cv1.conv.weight`` <-> ``model_2/m_0/cv1/conv/kernel``), so weight mapping is mechanical.
Every block takes ``c1`` (input channels) as its first field like Ultralytics does; Flax infers input shapes itself, but
``c1`` keeps the arguments, the model summary and the torch mirror identical to Ultralytics' ``parse_model`` output.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxyolo.nn.cpu_conv import conv_impl, dense_dot_general
from jaxyolo.nn.cpu_pool import global_avg_pool
from jaxyolo.nn.norm import BatchNorm

# PyTorch's default initialisers (kaiming_uniform(a=sqrt(5)) for weights, U(+-1/sqrt(fan_in)) for the Linear bias),
# so a model built here starts from the same distribution as an Ultralytics model built from YAML.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

BN_EPS = 1e-5  # Ultralytics classification models keep PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1)
BN_MOMENTUM = 0.9  # Flax momentum = 1 - PyTorch momentum


def _torch_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def autopad(k: int, p: int | None = None) -> int:
    """Ultralytics' symmetric 'same' padding: k // 2 (not Flax 'SAME', which pads (0, 1) for stride 2)."""
    return k // 2 if p is None else p


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU (or identity when ``act=False``)."""

    c1: int
    c2: int
    k: int = 1
    s: int = 1
    p: int | None = None
    g: int = 1
    act: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        p = autopad(self.k, self.p)
        x = nn.Conv(self.c2, (self.k, self.k), strides=(self.s, self.s), padding=((p, p), (p, p)),
                    feature_group_count=self.g, use_bias=False, dtype=self.dtype, kernel_init=torch_kernel_init,
                    conv_general_dilated=conv_impl(self.k, self.s, p, self.g, x.shape[1:3], x.shape[-1]),
                    name="conv")(x)
        return BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS, dtype=self.dtype,
                         silu=self.act, name="bn")(x)


class Bottleneck(nn.Module):
    """Two convs with an optional residual: ``x + cv2(cv1(x))`` when ``shortcut`` and ``c1 == c2``."""

    c1: int
    c2: int
    shortcut: bool = True
    g: int = 1
    k: Sequence[int] = (3, 3)
    e: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c_ = int(self.c2 * self.e)
        y = Conv(self.c1, c_, self.k[0], 1, dtype=self.dtype, name="cv1")(x, train)
        y = Conv(c_, self.c2, self.k[1], 1, g=self.g, dtype=self.dtype, name="cv2")(y, train)
        return x + y if self.shortcut and self.c1 == self.c2 else y


class C2f(nn.Module):
    """CSP bottleneck with two convs: split cv1's output in two, chain n bottlenecks on the second half, concat all."""

    c1: int
    c2: int
    n: int = 1
    shortcut: bool = False
    g: int = 1
    e: float = 0.5
    dtype: Any = None

    def inner(self, c: int, i: int) -> nn.Module:
        return Bottleneck(c, c, self.shortcut, self.g, k=(3, 3), e=1.0, dtype=self.dtype, name=f"m_{i}")

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = int(self.c2 * self.e)
        y = Conv(self.c1, 2 * c, 1, 1, dtype=self.dtype, name="cv1")(x, train)
        ys = [y[..., :c], y[..., c:]]
        for i in range(self.n):
            ys.append(self.inner(c, i)(ys[-1], train))
        return Conv((2 + self.n) * c, self.c2, 1, dtype=self.dtype, name="cv2")(jnp.concatenate(ys, axis=-1), train)


class C3(nn.Module):
    """CSP bottleneck with three convs; inner bottlenecks use kernels ``bottleneck_k`` and e=1.0."""

    c1: int
    c2: int
    n: int = 1
    shortcut: bool = True
    g: int = 1
    e: float = 0.5
    bottleneck_k: Sequence[int] = (1, 3)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c_ = int(self.c2 * self.e)
        a = Conv(self.c1, c_, 1, 1, dtype=self.dtype, name="cv1")(x, train)
        for i in range(self.n):
            a = Bottleneck(c_, c_, self.shortcut, self.g, k=tuple(self.bottleneck_k), e=1.0, dtype=self.dtype,
                           name=f"m_{i}")(a, train)
        b = Conv(self.c1, c_, 1, 1, dtype=self.dtype, name="cv2")(x, train)
        return Conv(2 * c_, self.c2, 1, dtype=self.dtype, name="cv3")(jnp.concatenate([a, b], axis=-1), train)


class C3k(C3):
    """C3 whose inner bottlenecks are 3x3/3x3 (Ultralytics' customizable-kernel C3)."""

    bottleneck_k: Sequence[int] = (3, 3)


class C3k2(C2f):
    """C2f whose inner blocks are C3k(n=2) when ``c3k`` else plain Bottlenecks with e=0.5 (hidden width c/2)."""

    c3k: bool = False
    e: float = 0.5
    shortcut: bool = True

    def inner(self, c: int, i: int) -> nn.Module:
        if self.c3k:
            return C3k(c, c, 2, self.shortcut, self.g, dtype=self.dtype, name=f"m_{i}")
        return Bottleneck(c, c, self.shortcut, self.g, dtype=self.dtype, name=f"m_{i}")


class Attention(nn.Module):
    """Multi-head self-attention over spatial positions with a depthwise positional conv on v.

    Ultralytics lays the qkv channels out head-major, ``[q(kd) k(kd) v(hd)]`` per head; this port reshapes the NHWC
    channel axis in that same order so imported weights mean the same thing.
    """

    dim: int
    num_heads: int = 8
    attn_ratio: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        B, H, W, C = x.shape
        nh = self.num_heads
        hd = self.dim // nh
        kd = int(hd * self.attn_ratio)
        qkv = Conv(self.dim, self.dim + 2 * kd * nh, 1, act=False, dtype=self.dtype, name="qkv")(x, train)
        qkv = qkv.reshape(B, H * W, nh, 2 * kd + hd)
        q, k, v = qkv[..., :kd], qkv[..., kd:2 * kd], qkv[..., 2 * kd:]
        attn = jnp.einsum("bnhd,bmhd->bhnm", q, k) * (kd ** -0.5)
        attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhnm,bmhd->bnhd", attn, v).reshape(B, H, W, C)
        pe = Conv(self.dim, self.dim, 3, 1, g=self.dim, act=False, dtype=self.dtype, name="pe")
        out = out + pe(v.reshape(B, H, W, C), train)
        return Conv(self.dim, self.dim, 1, act=False, dtype=self.dtype, name="proj")(out, train)


class PSABlock(nn.Module):
    """Position-sensitive attention block: ``x + attn(x)`` then ``x + ffn(x)``."""

    c: int
    attn_ratio: float = 0.5
    num_heads: int = 4
    shortcut: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        a = Attention(self.c, self.num_heads, self.attn_ratio, dtype=self.dtype, name="attn")(x, train)
        x = x + a if self.shortcut else a
        f = Conv(self.c, 2 * self.c, 1, dtype=self.dtype, name="ffn_0")(x, train)
        f = Conv(2 * self.c, self.c, 1, act=False, dtype=self.dtype, name="ffn_1")(f, train)
        return x + f if self.shortcut else f


class C2PSA(nn.Module):
    """C2f-style block with PSABlocks on the second half of cv1's output (requires c1 == c2)."""

    c1: int
    c2: int
    n: int = 1
    e: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = int(self.c1 * self.e)
        y = Conv(self.c1, 2 * c, 1, 1, dtype=self.dtype, name="cv1")(x, train)
        a, b = y[..., :c], y[..., c:]
        for i in range(self.n):
            b = PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1), dtype=self.dtype, name=f"m_{i}")(b, train)
        return Conv(2 * c, self.c1, 1, dtype=self.dtype, name="cv2")(jnp.concatenate([a, b], axis=-1), train)


class Classify(nn.Module):
    """Classification head: 1x1 Conv to 1280 -> global average pool -> dropout -> Dense(nc).

    Returns logits when ``train`` (or ``logits=True``), softmax probabilities (float32) otherwise, as Ultralytics'
    exported graphs do.
    """

    c1: int
    c2: int
    k: int = 1
    s: int = 1
    p: int | None = None
    g: int = 1
    dropout: float = 0.0
    dtype: Any = None
    c_: int = 1280

    @nn.compact
    def __call__(self, x, train: bool = False, logits: bool | None = None):
        x = Conv(self.c1, self.c_, self.k, self.s, self.p, self.g, dtype=self.dtype, name="conv")(x, train)
        x = global_avg_pool(x)
        x = nn.Dropout(self.dropout, deterministic=not train, name="drop")(x)
        x = nn.Dense(self.c2, dtype=self.dtype, kernel_init=torch_kernel_init, bias_init=_torch_bias_init(self.c_),
                     dot_general=dense_dot_general, name="linear")(x)
        x = x.astype(jnp.float32)
        return x if (train if logits is None else logits) else jax.nn.softmax(x, axis=-1)


# Modules the model YAML may name, by their Ultralytics names.
MODULES = {m.__name__: m for m in (Conv, Bottleneck, C2f, C3, C3k, C3k2, C2PSA, Classify)}
# Modules whose YAML `repeats` become their `n` argument (Ultralytics inserts n at args[2]).
REPEAT_MODULES = {"C2f", "C3", "C3k", "C3k2", "C2PSA"}
