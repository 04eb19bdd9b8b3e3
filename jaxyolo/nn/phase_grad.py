"""The input gradient of a strided NHWC/HWIO convolution as stride-1 convolutions, one per output phase: what
``nn.cpu_conv`` uses on XLA:CPU in place of autodiff's convolution of the zero-dilated gradient."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")


def phase_input_grad(g, w, x_shape, strides, padding, precision):
    """The input gradient of a strided NHWC/HWIO convolution, one stride-1 convolution of ``g`` per output phase.

    With stride s, input pixel ``i = s*m + a`` receives ``g[o] w[t]`` for the taps ``t = a + pad_low - s*(o - m)``:
    phase ``a`` is a stride-1 convolution of ``g`` with the taps of its residue, and the ``s*s`` phases interleave
    into the gradient. Autodiff's form, a convolution of ``g`` dilated with zeros (``lhs_dilation``), does ``s*s``
    times the work, on a slow path of XLA:CPU's convolutions (yolov8n-cls@224's 112x112 16->32 layer: ~32 -> 13 ms)."""
    (sh, sw), ((plh, _), (plw, _)) = strides, padding
    n, h, wd, cin = x_shape
    ho, wo = g.shape[1:3]
    mh, mw = -(-h // sh), -(-wd // sw)
    wt = jnp.swapaxes(w, 2, 3)  # [kh, kw, cout, cin]: g's channels in, the input's out

    def taps(a, k, s, pad):  # (tap, offset of the g pixel feeding phase a's pixel m: o = m + offset)
        return [(t, (a + pad - t) // s) for t in range(k) if (a + pad - t) % s == 0]

    rows = []
    for a in range(sh):
        ta = taps(a, w.shape[0], sh, plh)
        lo_i, ni = min(o for _, o in ta), max(o for _, o in ta) - min(o for _, o in ta) + 1
        cols = []
        for b in range(sw):
            tb = taps(b, w.shape[1], sw, plw)
            lo_j, nj = min(o for _, o in tb), max(o for _, o in tb) - min(o for _, o in tb) + 1
            k = jnp.zeros((ni, nj) + wt.shape[2:], wt.dtype)
            for ti, oi in ta:
                for tj, oj in tb:
                    k = k.at[oi - lo_i, oj - lo_j].set(wt[ti, tj])
            pad = ((-lo_i, mh + ni - 1 - ho + lo_i), (-lo_j, mw + nj - 1 - wo + lo_j))
            cols.append(lax.conv_general_dilated(g, k, (1, 1), pad, dimension_numbers=NHWC, precision=precision))
        rows.append(jnp.stack(cols, 3))  # [n, mh, mw, sw, cin]
    dx = jnp.stack(rows, 2).reshape(n, mh * sh, mw * sw, cin)  # [n, mh, sh, mw, sw, cin] interleaved
    return dx[:, :h, :wd].astype(g.dtype)
