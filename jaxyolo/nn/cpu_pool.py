"""The classification head's global average pool on XLA:CPU, as a batched matrix-vector product.

XLA:CPU fuses the head's BatchNorm and SiLU into ``jnp.mean``'s reduction over the spatial axes and runs that loop
~6x slower than the two apart: yolov8n-cls's head at 224 px, batch 32 (``f32[32,7,7,1280]``), 3.5 ms against 0.6 ms
for the BatchNorm/SiLU pass and 0.5 ms for the mean of a ready array. A dot is never fused with its operands'
producers, so ``mean`` as ``dot_general`` of a ``(batch, pixels)`` matrix of ``1 / pixels`` with the activations
(batched over the images) keeps the SiLU pass a plain vectorised loop: 3.5 -> 0.7 ms for both. Same maths, another
summation order. GPUs and TPUs keep ``jnp.mean``, and so do exports (``export_graph()``: converters map it to
GlobalAveragePool / MEAN) and non-float32 inputs.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxyolo.nn.cpu_conv import cpu_lowerings


def global_avg_pool(x):
    """The mean of NHWC ``x`` over its two spatial axes: ``(N, C)``."""
    if x.dtype != jnp.float32 or not cpu_lowerings():
        return jnp.mean(x, axis=(1, 2))
    n, h, w, c = x.shape
    weights = jnp.full((n, h * w), 1.0 / (h * w), jnp.float32)
    return lax.dot_general(weights, x.reshape(n, h * w, c), (((1,), (1,)), ((0,), (0,))))
