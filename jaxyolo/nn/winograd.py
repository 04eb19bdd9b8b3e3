"""Winograd's F(2x2, 3x3) convolution on XLA:CPU (``winograd_conv.cc``): a 3x3, stride-1, 1-padded convolution, and
its kernel gradient, in 16 matmuls over 2x2 output tiles, 2.25x fewer multiply-adds than the direct convolution.
This module says which convolutions it computes (the calls: ``onednn.winograd_conv``, ``winograd_kernel_grad``);
``nn/cpu_conv.py`` decides where it is used (inference and train steps where jaxyolo's oneDNN extension is,
``nn/onednn.py``). ``JAXYOLO_WINOGRAD=off`` turns it off (for A/B comparisons)."""

from __future__ import annotations

from jaxyolo.utils.jax_cache import switched_off

MIN_CHANNELS = 32  # narrower convolutions stay direct: their transforms cost more than the matmuls save
MIN_TILES = 32  # 2x2 output tiles (all images) below which the kernel transform of every call costs more than it saves


def applies(x_shape, w_shape, strides, padding) -> bool:
    """Whether an NHWC/HWIO convolution is one jaxyolo computes by Winograd's F(2x2, 3x3): 3x3, stride 1, padding 1
    on every side, at least ``MIN_CHANNELS`` input and output channels and ``MIN_TILES`` output tiles; none where
    ``JAXYOLO_WINOGRAD`` is switched off (``utils.jax_cache.OFF``)."""
    if len(x_shape) != 4 or len(w_shape) != 4 or switched_off("JAXYOLO_WINOGRAD"):
        return False
    (n, h, w, _), (kh, kw, cin, cout) = x_shape, w_shape
    return ((kh, kw) == (3, 3) and tuple(strides) == (1, 1) and tuple(map(tuple, padding)) == ((1, 1), (1, 1))
            and min(cin, cout) >= MIN_CHANNELS and n * -(-h // 2) * -(-w // 2) >= MIN_TILES)
