"""Winograd's F(2x2, 3x3) convolution and kernel gradient (jaxyolo/nn/winograd.py, winograd_conv.cc): XLA's values,
where cpu_conv.py uses them (inference and train-step forward passes, stride-1 input gradients, kernel gradients),
the switch that turns them off, and a clear error for operands they do not take."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxyolo import YOLO
from jaxyolo.nn import onednn, winograd
from jaxyolo.nn.cpu_conv import inference_jit

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu" or jax.device_count() != 1 or not onednn.available(),
                                reason="XLA:CPU custom calls of jaxyolo's extension, single-device processes")
_DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN, precision="highest")


@pytest.mark.parametrize("shape", [
    (2, 8, 8, 32, 40),    # even map, C != O
    (3, 7, 5, 33, 32),    # odd and non-square: the last tiles half outside the map
    (1, 1, 1, 48, 64),    # one pixel: every tap but the centre reads padding
    (70, 4, 4, 32, 32),   # more tiles than one block (256 at 32 channels): two blocks
    (1, 30, 2, 40, 36),   # a tall strip
    (9, 16, 16, 128, 64),  # 576 tiles: five uneven blocks of 128
])
@pytest.mark.parametrize("helpers", [-1, 0, 1, 3])  # all pool threads, the calling thread alone, 1, more than cores
def test_values_are_the_convolutions(shape, helpers):
    """The forward pass and the kernel gradient (summed over 1 or more slices of the tiles)."""
    n, h, w_, ci, co = shape
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.standard_normal((n, h, w_, ci)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci), jnp.float32)
    got = jax.jit(lambda a, b: onednn.winograd_conv(a, b, helpers))(x, w)
    want = _conv(x, w)
    assert got.shape == want.shape and got.dtype == jnp.float32
    # the transforms reassociate the sums: float32 rounding, ~1e-6 of the outputs' scale
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * float(jnp.abs(want).max()))
    g = jnp.asarray(rng.standard_normal((n, h, w_, co)), jnp.float32)
    _, vjp = jax.vjp(lambda b: _conv(x, b), w)
    want_dw = vjp(g)[0]
    for parts in (1, 3, n * h * w_ + 7):  # one sum, uneven slices, more slices than tiles
        dw = jax.jit(lambda a, c, p=parts: onednn.winograd_kernel_grad(a, c, w.shape, p, helpers))(x, g)
        assert dw.shape == w.shape
        np.testing.assert_allclose(dw, want_dw, rtol=0, atol=2e-5 * float(jnp.abs(want_dw).max()))


def test_repeated_calls_of_other_shapes_on_the_same_threads():
    """Each call transforms its own kernel into a buffer of the calling thread: calls of different shapes after one
    another (the buffers grow and shrink) keep their own kernels."""
    rng = np.random.default_rng(3)
    for ci, co, h in ((64, 32, 6), (32, 96, 9), (64, 32, 6), (40, 40, 12)):
        x = jnp.asarray(rng.standard_normal((4, h, h, ci)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci), jnp.float32)
        want = _conv(x, w)
        np.testing.assert_allclose(onednn.winograd_conv(x, w), want, rtol=0, atol=2e-5 * float(jnp.abs(want).max()))


def test_operands_it_does_not_take_are_a_clear_error():
    x = jnp.zeros((1, 4, 4, 8), jnp.float32)
    with pytest.raises(Exception, match=r"Winograd convolution: expected x \[N, H, W, C\], w \[3, 3, C, O\]"):
        jax.block_until_ready(onednn.winograd_conv(x, jnp.zeros((5, 5, 8, 8), jnp.float32)))
    with pytest.raises(Exception, match="Winograd convolution: expected"):
        jax.block_until_ready(onednn.winograd_conv(x, jnp.zeros((3, 3, 6, 8), jnp.float32)))  # channels disagree
    with pytest.raises(Exception, match=r"Winograd kernel gradient: expected x \[N, H, W, C\], g \[N, H, W, O\]"):
        jax.block_until_ready(onednn.winograd_kernel_grad(x, jnp.zeros((1, 4, 5, 8), jnp.float32), (3, 3, 8, 8)))


def test_which_convolutions_it_applies_to(monkeypatch):
    same = ((1, 1), (1, 1))
    assert winograd.applies((32, 8, 8, 64), (3, 3, 64, 64), (1, 1), same)
    assert winograd.applies((8, 7, 7, 32), (3, 3, 32, 32), (1, 1), same)  # 8 x 4 x 4 = 128 tiles
    assert not winograd.applies((32, 8, 8, 64), (3, 3, 64, 64), (2, 2), same)  # strided
    assert not winograd.applies((32, 8, 8, 64), (3, 3, 64, 64), (1, 1), ((0, 0), (0, 0)))  # unpadded
    assert not winograd.applies((32, 8, 8, 16), (3, 3, 16, 64), (1, 1), same)  # narrow input
    assert not winograd.applies((32, 8, 8, 64), (3, 3, 64, 16), (1, 1), same)  # narrow output
    assert not winograd.applies((32, 8, 8, 64), (5, 5, 64, 64), (1, 1), ((2, 2), (2, 2)))  # 5x5
    assert not winograd.applies((1, 7, 7, 128), (3, 3, 128, 128), (1, 1), same)  # 16 tiles < MIN_TILES
    monkeypatch.setenv("JAXYOLO_WINOGRAD", "off")
    assert not winograd.applies((32, 8, 8, 64), (3, 3, 64, 64), (1, 1), same)


def _calls(text: str, target: str = "JaxyoloWinogradFwd") -> list[str]:
    return [line for line in text.splitlines() if target in line and "custom_call" in line]


def test_model_runs_it_where_cpu_conv_says_with_xla_values(monkeypatch):
    """yolov8n-cls at 64 px, batch 4: the four 3x3 convolutions of the 32-channel C2f (8x8 maps, 64 tiles) run by
    Winograd in inference and in the train step (forward passes and input gradients: 8 calls, kernel gradients: 4),
    the 16-channel ones and the <= 4x4 maps' do not; inference and loss gradients agree with JAXYOLO_WINOGRAD=off."""
    m = YOLO("yolov8n-cls.yaml", nc=10)
    x = jnp.asarray(np.random.default_rng(1).random((4, 64, 64, 3), dtype=np.float32))

    def loss_grads():
        def loss(params):
            logits, _ = m.module.apply({"params": params, "batch_stats": m.variables["batch_stats"]}, x, train=True,
                                       mutable=["batch_stats"])
            return jnp.sum(jax.nn.log_softmax(logits)[:, 3])

        return jax.jit(jax.value_and_grad(loss))

    infer = inference_jit(lambda v, a: m.module.apply(v, a))
    infer_calls = _calls(infer.lower(m.variables, x).as_text())
    assert len(infer_calls) == 4 and all(re.search(r"tensor<4x8x8x32xf32>", line) for line in infer_calls)
    fn = loss_grads()
    train_hlo = fn.lower(m.variables["params"]).as_text()
    assert len(_calls(train_hlo)) == 8
    assert len(_calls(train_hlo, "JaxyoloWinogradKernelGrad")) == 4
    out, (loss, grads) = infer(m.variables, x), fn(m.variables["params"])

    monkeypatch.setenv("JAXYOLO_WINOGRAD", "off")
    infer_off, fn_off = inference_jit(lambda v, a: m.module.apply(v, a)), loss_grads()
    assert not _calls(infer_off.lower(m.variables, x).as_text())
    off_hlo = fn_off.lower(m.variables["params"]).as_text()
    assert not _calls(off_hlo) and not _calls(off_hlo, "JaxyoloWinogradKernelGrad")
    np.testing.assert_allclose(out, infer_off(m.variables, x), atol=1e-5)
    loss_off, grads_off = fn_off(m.variables["params"])
    np.testing.assert_allclose(loss, loss_off, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_off)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-5 * float(jnp.abs(b).max()) + 1e-7)


def test_switch_changes_the_trace_key(monkeypatch):
    """A traced program cached on disk (utils/trace_cache.py) with Winograd's calls is not reused with it off."""
    on = onednn.trace_key()
    monkeypatch.setenv("JAXYOLO_WINOGRAD", "off")
    assert onednn.trace_key() != on
