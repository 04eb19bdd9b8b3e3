"""BatchNorm's (and BatchNorm+SiLU's) written-out backward pass (``nn.norm.batch_norm_train``) against autodiff of
its forward formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxyolo.nn.norm import _batch_stats, batch_norm_train


def _autodiff_form(x, scale, bias, eps, silu):
    xf, mean, var = _batch_stats(x)
    y = (xf - mean) * (scale * lax.rsqrt(var + eps)) + bias
    return jax.nn.silu(y) if silu else y, mean, var


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_backward_is_autodiff(dtype, silu):
    """Outputs, and the gradients of x, scale and bias for cotangents on all three outputs (y, and the mean and
    variance that feed the running statistics), equal autodiff's, with and without the SiLU; dtypes follow the
    inputs. x's mean is 4x its spread: the backward pass's sum(g * x) - mean * sum(g) must not lose it."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 5, 6, 8)) * 3 + 12, dtype)
    scale, bias = jnp.linspace(0.5, 2.0, 8), jnp.linspace(-1.0, 1.0, 8)
    cts = (jnp.asarray(rng.standard_normal((4, 5, 6, 8)), jnp.float32), jnp.linspace(-1, 1, 8), jnp.linspace(2, 0, 8))

    def grads(f):
        out, vjp = jax.vjp(lambda *a: f(*a, 1e-5, silu), x, scale, bias)
        return out, vjp(cts)

    (out, g), (want_out, want_g) = jax.jit(lambda: grads(batch_norm_train))(), jax.jit(lambda: grads(_autodiff_form))()
    tol = 1e-5 if dtype == jnp.float32 else 1e-2
    for a, b in zip(jax.tree.leaves((out, g)), jax.tree.leaves((want_out, want_g))):
        assert a.dtype == b.dtype and a.shape == b.shape
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.abs(a - b).max() <= tol * np.abs(b).max(), (np.abs(a - b).max(), np.abs(b).max())
    assert g[0].dtype == dtype


@pytest.mark.parametrize("silu", [False, True])
def test_batch_norm_backward_without_statistics_cotangents(silu):
    """In a train step only y reaches the loss (the mean and variance feed the running statistics), so their
    cotangents arrive as symbolic zeros and the backward pass leaves their terms out: the gradients still equal
    autodiff's."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 5, 6, 8)) * 3 + 12, jnp.float32)
    scale, bias = jnp.linspace(0.5, 2.0, 8), jnp.linspace(-1.0, 1.0, 8)
    w = jnp.asarray(rng.standard_normal((4, 5, 6, 8)), jnp.float32)

    def loss(f, *a):
        y, mean, var = f(*a, 1e-5, silu)
        return jnp.sum(y * w), (mean, var)  # the statistics leave as aux: not differentiated

    got = jax.jit(jax.grad(lambda *a: loss(batch_norm_train, *a), argnums=(0, 1, 2), has_aux=True))(x, scale, bias)
    want = jax.jit(jax.grad(lambda *a: loss(_autodiff_form, *a), argnums=(0, 1, 2), has_aux=True))(x, scale, bias)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), (np.abs(a - b).max(), np.abs(b).max())
