"""jaxyolo's own XLA:CPU kernel (``nn/cpu_kernels.py``): BatchNorm's per-channel sums in one pass, against float64
numpy, deterministic, and used by train-mode BatchNorm on CPU (with XLA's reductions where it is unavailable)."""

import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxyolo.nn import cpu_kernels
from jaxyolo.nn.norm import batch_norm_train

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu" or jax.device_count() != 1,
                                reason="XLA:CPU, single-device processes only")


def test_the_install_builds_and_loads_the_extension():
    """pip install builds jaxyolo/nn/_cpu_kernels*.so (setup.py) on Linux, so the speed-up is not silently lost to a
    missing build step."""
    if platform.system() != "Linux":
        pytest.skip("the extension is built on Linux only")
    assert cpu_kernels.available()


@pytest.mark.parametrize("shape", [(1,), (3, 5), (5, 1, 1, 1), (2, 3, 5, 16), (9, 37, 41, 24), (4, 3, 3, 1000)])
def test_channel_sums_are_the_float64_sums(shape):
    """sum(a) and sum(a * b) over all axes but the last, for row counts below, at and across the kernel's 4-row
    steps and ~128 KiB chunks, one to 1000 channels; a's mean is 4x its spread (as BatchNorm's inputs can be)."""
    if not cpu_kernels.available():
        pytest.skip("CPU kernel extension not available")
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(shape) * 3 + 12).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    s1, s2 = jax.jit(cpu_kernels.channel_sums)(a, b)
    axes = tuple(range(a.ndim - 1))
    want1, want2 = a.astype(np.float64).sum(axes), (a.astype(np.float64) * b).sum(axes)
    assert s1.shape == s2.shape == shape[-1:] and s1.dtype == s2.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(s1), want1, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(s2), want2, rtol=2e-6, atol=2e-6 * np.abs(a * b).sum(axes).max())
    s1_sq, s2_sq = jax.jit(cpu_kernels.channel_sums)(a, a)
    np.testing.assert_allclose(np.asarray(s2_sq), (a.astype(np.float64) ** 2).sum(axes), rtol=2e-6)


def test_channel_sums_are_deterministic():
    """Chunks go to whichever thread takes them, but are added in chunk order: repeated calls agree to the bit."""
    if not cpu_kernels.available():
        pytest.skip("CPU kernel extension not available")
    a = np.random.default_rng(2).standard_normal((16, 64, 64, 16)).astype(np.float32)
    f = jax.jit(cpu_kernels.channel_sums)
    first = [np.asarray(s) for s in f(a, a)]
    for _ in range(5):
        assert all(np.array_equal(np.asarray(s), t) for s, t in zip(f(a, a), first))


def _step_hlo_and_grads(x, scale, bias):
    def loss(x, scale, bias):
        y, mean, var = batch_norm_train(x, scale, bias, 1e-5, True)
        return jnp.sum(y * jnp.cos(x)) + jnp.sum(mean) + jnp.sum(var)

    f = jax.jit(jax.value_and_grad(loss, (0, 1, 2)))
    return f.lower(x, scale, bias).as_text(), f(x, scale, bias)


def test_train_mode_batch_norm_sums_on_the_kernel(monkeypatch):
    """On CPU, BatchNorm's forward and backward pass each call the kernel once (statistics; sum(g), sum(g * x));
    with it unavailable they are XLA's reductions, and loss and gradients agree."""
    if not cpu_kernels.available():
        pytest.skip("CPU kernel extension not available")
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 10, 12, 8)) * 3 + 12, jnp.float32)
    scale, bias = jnp.linspace(0.5, 2.0, 8), jnp.linspace(-1.0, 1.0, 8)
    hlo, got = _step_hlo_and_grads(x, scale, bias)
    assert hlo.count("JaxyoloChannelSums") == 2
    monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    hlo_xla, want = _step_hlo_and_grads(x, scale, bias)
    assert "JaxyoloChannelSums" not in hlo_xla
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), (np.abs(a - b).max(), np.abs(b).max())
