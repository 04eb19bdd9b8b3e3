"""oneDNN's convolutions in XLA:CPU executables (jaxyolo/nn/onednn.py, onednn_conv.cc): built by the install, the
same values as XLA's convolution, used where cpu_conv.py says (kernel gradients in train steps, the forward pass of
inference executables), never in exported graphs, and a silent fallback to XLA's where unavailable."""

import logging
import platform
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxyolo import YOLO
from jaxyolo.nn import cpu_conv, onednn
from jaxyolo.nn.cpu_conv import export_graph, inference_jit

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu" or jax.device_count() != 1,
                                reason="XLA:CPU custom calls, single-device processes")
_DN = ("NHWC", "HWIO", "NHWC")
_CASES = [  # batch, h, w, cin, cout, k, strides, padding
    (5, 9, 8, 6, 7, 3, (1, 1), ((1, 1), (1, 1))),
    (2, 7, 6, 4, 5, 3, (2, 2), ((1, 1), (1, 1))),  # 7 rows, stride 2: the last band's bottom padding is read
    (1, 2, 5, 3, 4, 3, (1, 1), ((1, 1), (1, 1))),  # 2 output rows: a band each
    (1, 8, 6, 3, 4, 3, (2, 2), ((1, 1), (1, 1))),  # 8 rows, stride 2: the bottom padding is never read
    (3, 10, 11, 16, 8, 3, (2, 2), ((1, 1), (1, 1))),
    (2, 7, 10, 5, 4, 3, (2, 2), ((0, 1), (1, 0))),
    (1, 12, 9, 8, 24, 5, (3, 2), ((2, 1), (2, 2))),
]


def test_the_install_builds_and_loads_the_extension():
    """pip install builds jaxyolo/nn/_onednn_conv*.so (setup.py) and the onednn-cpu-gomp wheel provides libdnnl on
    Linux x86_64, so the speed-up is not silently lost to a missing build step."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the extension is built on Linux x86_64 only")
    assert onednn.available()


@pytest.mark.parametrize("case", _CASES)
def test_forward_and_kernel_gradient_are_the_convolutions(case):
    if not onednn.available():
        pytest.skip("oneDNN extension not available")
    n, h, w_, ci, co, k, strides, padding = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w_, ci)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, ci, co)), jnp.float32)
    want, vjp = jax.vjp(lambda b: lax.conv_general_dilated(x, b, strides, padding, dimension_numbers=_DN), w)
    g = jnp.asarray(rng.standard_normal(want.shape), jnp.float32)
    _, input_vjp = jax.vjp(lambda a: lax.conv_general_dilated(a, w, strides, padding, dimension_numbers=_DN), x)
    # one call on OpenMP's threads or on 1, or in batch slices (as many as the batch, or fewer and uneven)
    for threads, parts in ((0, 1), (1, 1), (1, 3), (1, n + 5)):
        got = jax.jit(lambda a, b, t=threads, p=parts: onednn.conv(a, b, strides, padding, t, p))(x, w)
        assert got.shape == want.shape and got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        dx = jax.jit(lambda c, b, t=threads, p=parts: onednn.input_grad(c, b, x.shape, strides, padding, t, p))(g, w)
        assert dx.shape == x.shape
        np.testing.assert_allclose(dx, input_vjp(g)[0], rtol=1e-5, atol=1e-4)
        dw = jax.jit(lambda a, c, t=threads, p=parts: onednn.kernel_grad(a, c, w.shape, strides, padding, t, p))(x, g)
        assert dw.shape == w.shape
        np.testing.assert_allclose(dw, vjp(g)[0], rtol=1e-5, atol=1e-4)
    # inference's forward pass (parts=0), sliced over XLA's pool: on 2+ cores batches of 2-5 in batch slices, one
    # image in bands of output rows (each reading its input rows, padded at the image's edges only)
    for m in sorted({n, 1}):
        got = jax.jit(lambda a, b: onednn.conv(a, b, strides, padding, 0, 0))(x[:m], w)
        np.testing.assert_allclose(got, want[:m], rtol=1e-5, atol=1e-4)


def _custom_calls(text: str) -> set[str]:
    return {t for t in onednn.TARGETS if t in text}


@pytest.fixture(scope="module")
def v8n():
    return YOLO("yolov8n-cls.yaml", nc=10)


def _loss_grads(m, x):
    def loss(params):
        logits, _ = m.module.apply({"params": params, "batch_stats": m.variables["batch_stats"]}, x, train=True,
                                   mutable=["batch_stats"])
        return jnp.sum(jax.nn.log_softmax(logits)[:, 3])

    return jax.jit(jax.value_and_grad(loss)), m.variables["params"]


def test_model_uses_onednn_where_cpu_conv_says_and_matches_xla(v8n, monkeypatch):
    """yolov8n-cls at 48 px: the train step's k x k convolutions (forward, input gradients, kernel gradients) and
    the inference forward pass (of convolutions of at least FORWARD_MIN_MACS) run on oneDNN (custom calls in the
    HLO), with XLA's values (within float32 reassociation); with oneDNN unavailable, none appear."""
    if not onednn.available():
        pytest.skip("oneDNN extension not available")
    monkeypatch.setenv("JAXYOLO_WINOGRAD", "off")  # oneDNN's direct convolutions here; Winograd's: test_winograd.py
    x = jnp.asarray(np.random.default_rng(1).random((3, 48, 48, 3), dtype=np.float32))
    monkeypatch.setattr(cpu_conv, "FORWARD_MIN_MACS", 10**9)
    small = inference_jit(lambda v, a: v8n.module.apply(v, a)).lower(v8n.variables, x).as_text()
    assert _custom_calls(small) == {"JaxyoloMatmul"}  # every convolution under FORWARD_MIN_MACS: XLA's
    monkeypatch.setattr(cpu_conv, "FORWARD_MIN_MACS", 0)
    fn, params = _loss_grads(v8n, x)
    train_hlo = fn.lower(params).as_text()
    assert _custom_calls(train_hlo) == set(onednn.TARGETS) - {"JaxyoloWinogradFwd", "JaxyoloWinogradKernelGrad",
                                                              "JaxyoloMatmul"}
    infer = inference_jit(lambda v, a: v8n.module.apply(v, a))
    infer_hlo = infer.lower(v8n.variables, x).as_text()
    assert _custom_calls(infer_hlo) == {"JaxyoloConvFwd", "JaxyoloMatmul"}
    # inference matmuls: the 1x1 convolutions (C2f's cv1 and cv2 x 4, the head's), the im2col one (the strided
    # 3x3 -> 2x2) and the head's Linear
    assert len(re.findall(r"@JaxyoloMatmul", infer_hlo)) == 11
    assert re.search(r"@JaxyoloMatmul[^\n]*\(tensor<3x1280xf32>, tensor<1280x10xf32>\)", infer_hlo)
    # the RGB stem too (a direct sum where oneDNN is not used): in the train step its forward pass and kernel
    # gradient (the image's gradient is never formed), in inference its forward pass
    def stem(text):
        return {re.search(r"@(\w+)", line).group(1) for line in text.splitlines()
                if "custom_call" in line and "tensor<3x48x48x3xf32>" in line}

    assert stem(train_hlo) == {"JaxyoloConvFwd", "JaxyoloConvBwdWeights"} and stem(infer_hlo) == {"JaxyoloConvFwd"}
    # maps of <= 4x4 pixels (im2col matmuls elsewhere): inference runs the stride-1 ones on oneDNN, the strided one
    # (3x3 -> 2x2) and the train step's keep the matmul
    small = [line for line in infer_hlo.splitlines() if "JaxyoloConvFwd" in line and re.search(
        r"tensor<3x[1-4]x[1-4]x\d+xf32>, tensor<3x3x", line)]
    assert len(small) == 6 and all("sh = 1 " in line for line in small)
    assert not re.search(r"@JaxyoloConvFwd[^\n]*tensor<3x[1-4]x[1-4]x\d+xf32>, tensor<3x3x", train_hlo)
    (loss, grads), out = fn(params), infer(v8n.variables, x)

    monkeypatch.setattr(onednn, "available", lambda: False)
    fn2, _ = _loss_grads(v8n, x)
    infer2 = inference_jit(lambda v, a: v8n.module.apply(v, a))
    assert not _custom_calls(fn2.lower(params).as_text())
    assert not _custom_calls(infer2.lower(v8n.variables, x).as_text())
    loss2, grads2 = fn2(params)
    np.testing.assert_allclose(loss, loss2, rtol=1e-5)
    np.testing.assert_allclose(out, infer2(v8n.variables, x), atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads2)):  # every convolution's sums reassociated, and
        # the differences carried back through ~20 layers: elements near zero may differ by ~1e-5 of the largest
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-5 * float(jnp.abs(b).max()) + 1e-7)


@pytest.mark.parametrize("m,k,n", [(64, 48, 32), (37, 20, 70), (1, 1280, 1000), (3, 64, 40), (2, 8, 20), (1, 5, 1)])
def test_matmul_is_the_product(m, k, n):
    """onednn.matmul over row slices (enough rows for every pool thread) or column slices (a few rows: a batch-1
    head), uneven ones included, and a leading batch shape."""
    if not onednn.available():
        pytest.skip("oneDNN extension not available")
    rng = np.random.default_rng(m * k + n)
    x = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, n)), jnp.float32)
    want = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    np.testing.assert_allclose(jax.jit(onednn.matmul)(x, w), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    got = jax.jit(onednn.matmul)(x.reshape(1, m, 1, k), w)
    assert got.shape == (1, m, 1, n)
    np.testing.assert_allclose(got.reshape(m, n), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_matmul_rejects_mismatched_operands():
    if not onednn.available():
        pytest.skip("oneDNN extension not available")
    call = jax.ffi.ffi_call("JaxyoloMatmul", jax.ShapeDtypeStruct((4, 5), jnp.float32))
    with pytest.raises(Exception, match="x \\[M, K\\], w \\[K, N\\]"):
        jax.jit(call)(jnp.ones((4, 3)), jnp.ones((2, 5))).block_until_ready()


def test_inference_convolutions_from_forward_min_macs_run_on_onednn():
    """An inference convolution of at least FORWARD_MIN_MACS multiply-adds runs on oneDNN, a smaller one stays XLA's,
    whatever the batch (slices of a batch, or bands of rows where the batch is smaller than XLA's pool)."""
    if not onednn.available():
        pytest.skip("oneDNN extension not available")
    conv = cpu_conv.conv_impl(3, 2, 1, 1, (32, 32), cin=16)
    w = jax.ShapeDtypeStruct((3, 3, 16, 16), jnp.float32)
    macs = 16 * 16 * 16 * 144  # per image: 3x3 stride 2, 16 -> 16, 32x32 -> 16x16
    for n in (1, 4, 32):
        infer = inference_jit(lambda a, b: conv(a, b, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN))
        text = infer.lower(jax.ShapeDtypeStruct((n, 32, 32, 16), jnp.float32), w).as_text()
        assert _custom_calls(text) == ({"JaxyoloConvFwd"} if n * macs >= cpu_conv.FORWARD_MIN_MACS else set()), n
    assert macs < cpu_conv.FORWARD_MIN_MACS <= 32 * macs


def test_exported_graphs_hold_no_custom_calls(v8n):
    """Converters trace inside export_graph(): every convolution stays a convolution op there."""
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    with export_graph():
        text = inference_jit(lambda v, a: v8n.module.apply(v, a)).lower(v8n.variables, x).as_text()
    assert not _custom_calls(text) and "convolution" in text


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("JAXYOLO_ONEDNN", "off")
    assert onednn._load.__wrapped__() is False


def test_a_missing_extension_is_a_warning(monkeypatch, caplog):
    """Where the extension should load (Linux x86_64) but does not, jaxyolo says so (once per process) and runs
    XLA's convolutions; it does not fail, and it does not go quiet."""
    def missing():
        raise FileNotFoundError("no _onednn_conv*.so here")

    monkeypatch.setattr(onednn, "_extension", missing)
    monkeypatch.setattr(onednn.platform, "system", lambda: "Linux")
    monkeypatch.setattr(onednn.platform, "machine", lambda: "x86_64")
    caplog.set_level(logging.WARNING)
    assert onednn._load.__wrapped__() is False
    assert "oneDNN extension is not available" in caplog.text and "no _onednn_conv*.so here" in caplog.text


def test_quick_traces_take_onednn_for_small_maps(v8n):
    """Inside ``quick_trace()`` (short training runs) the train step's convolutions of <= 4x4 maps are oneDNN calls
    instead of im2col matmuls (fewer XLA kernels to compile), with the same gradients."""
    if not onednn.available():
        pytest.skip("oneDNN extension not available")
    x = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32))
    calls, grads = {}, {}
    for quick in (False, True):
        f, params = _loss_grads(v8n, x)
        with cpu_conv.quick_trace(quick):
            low = f.lower(params)
        calls[quick] = sum(low.as_text().count(t) for t in onednn.TARGETS)
        grads[quick] = low.compile()(params)
    assert calls[True] > calls[False] > 0, calls
    for a, b in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(b).max())))
