"""Foundation: the model zoo's parameter counts, FLOPs, state-dict layout, shapes and modes."""

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from converters.torch_weights.mapping import flax_path_to_torch, torch_key_to_flax
from jaxyolo import YOLO
from jaxyolo.nn.build import build_model
from jaxyolo.nn.summary import gflops

PARAMS = {
    "yolov8n": 2_719_288, "yolov8s": 6_361_736, "yolov8m": 17_053_336, "yolov8l": 37_480_744, "yolov8x": 57_422_840,
    "yolo11n": 2_812_104, "yolo11s": 6_724_008, "yolo11m": 11_634_216, "yolo11l": 14_115_624, "yolo11x": 29_637_064,
}
GFLOPS_224 = {
    "yolov8n": 0.414, "yolov8s": 1.544, "yolov8m": 5.134, "yolov8l": 12.145, "yolov8x": 18.905,
    "yolo11n": 0.402, "yolo11s": 1.491, "yolo11m": 4.856, "yolo11l": 6.103, "yolo11x": 13.604,
}
KEYS_FILE = Path(__file__).parent / "data" / "ultralytics-state-dict-keys.txt"


def shapes(model, size=32):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda a: model.init(jax.random.PRNGKey(0), a), x)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_nc1000(name):
    model, _ = build_model(f"{name}-cls.yaml")
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes(model)["params"]))
    assert n == PARAMS[name]


@pytest.mark.parametrize("name", sorted(GFLOPS_224))
def test_gflops_224_within_3_percent(name):
    model, _ = build_model(f"{name}-cls.yaml")
    assert gflops(model, 224) == pytest.approx(GFLOPS_224[name], rel=0.03)


def reference_state_dict(yaml_name):
    """{key: shape} from Ultralytics' state-dict dump for one model (num_batches_tracked excluded)."""
    text = KEYS_FILE.read_text().split(f"===== {yaml_name}")[1].split("=====")[0]
    out = {}
    for key, shape in re.findall(r"^(model\.\S+) \(([\d, ]*)\)", text, re.M):
        if not key.endswith("num_batches_tracked"):
            out[key] = tuple(int(s) for s in shape.replace(" ", "").split(",") if s)
    return out


def flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from flat(v, (*prefix, k))
        else:
            yield (*prefix, k), v.shape


@pytest.mark.parametrize("yaml_name", ["yolov8n-cls.yaml", "yolo11n-cls.yaml"])
def test_state_dict_keys_match_one_to_one(yaml_name):
    ref = reference_state_dict(yaml_name)
    assert len(ref) > 100
    model, _ = build_model(yaml_name)
    var = shapes(model)
    ours = {}
    for coll in ("params", "batch_stats"):
        for path, shape in flat(var[coll]):
            ours[flax_path_to_torch(coll, path)] = shape
    assert set(ours) == set(ref)
    for key, shape in ref.items():
        coll, path = torch_key_to_flax(key, len(shape))
        expected = shape
        if len(shape) == 4:  # OIHW -> HWIO
            expected = (shape[2], shape[3], shape[1], shape[0])
        elif len(shape) == 2:
            expected = shape[::-1]
        node = var[coll]
        for p in path:
            node = node[p]
        assert node.shape == expected, key


@pytest.fixture(scope="module")
def v8n10():
    return YOLO("yolov8n-cls.yaml", nc=10)


@pytest.fixture(scope="module")
def y11n10():
    return YOLO("yolo11n-cls.yaml", nc=10)


@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (224, 224), (160, 192)])
@pytest.mark.parametrize("which", ["v8n10", "y11n10"])
def test_output_shape_and_probabilities(which, hw, request):
    m = request.getfixturevalue(which)
    x = np.random.default_rng(0).random((2, *hw, 3), dtype=np.float32)
    probs = m.forward(x)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs >= 0).all()


def test_uint8_input_is_scaled(v8n10):
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(v8n10.forward(x), v8n10.forward(x.astype(np.float32) / 255), atol=1e-6)


def test_train_mode_returns_logits_and_updates_batch_stats(y11n10):
    x = jnp.asarray(np.random.default_rng(2).random((4, 64, 64, 3), dtype=np.float32))
    logits, updates = y11n10.module.apply(y11n10.variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, 10)
    assert not np.allclose(np.asarray(logits).sum(1), 1.0)
    old = jax.tree.leaves(y11n10.variables["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert len(old) == len(new) and all(not np.allclose(a, b) for a, b in zip(old, new))
    # eval probabilities are the softmax of eval logits
    probs = y11n10.module.apply(y11n10.variables, x)
    ev_logits = y11n10.module.apply(y11n10.variables, x, logits=True)
    np.testing.assert_allclose(probs, jax.nn.softmax(ev_logits), atol=1e-6)


def _eqns(jaxpr) -> list:
    """Every equation in a jaxpr, sub-jaxprs (jit, custom_jvp, ...) included."""
    out = []
    for eqn in jaxpr.eqns:
        out.append(eqn)
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    out += _eqns(sub)
    return out


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="these lowerings are XLA:CPU's only")
def test_cpu_convolutions_run_as_matmuls_but_export_as_convolutions(y11n10):
    """On CPU, 1x1 convolutions and convolutions of <= 4x4 maps are traced as dots (faster on XLA:CPU, forward and
    backward); inside ``export_graph()`` (what the TFLite exporter traces in) every Conv stays a convolution op.
    Both give the same outputs and gradients."""
    from jaxyolo.nn.cpu_conv import SMALL_MAP, export_graph

    m = y11n10
    kernels = [k for p, k in jax.tree_util.tree_leaves_with_path(m.variables["params"])
               if jax.tree_util.keystr(p).endswith("['conv']['kernel']")]
    x = jnp.asarray(np.random.default_rng(3).random((4, 64, 64, 3), dtype=np.float32))  # maps down to 2x2

    def loss(params):
        logits, _ = m.module.apply({**m.variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(logits * jnp.arange(10.0))

    def trace():
        eqns = _eqns(jax.make_jaxpr(lambda v: m.module.apply(v, x))(m.variables).jaxpr)
        convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
        return convs, m.forward(x), jax.grad(loss)(m.variables["params"])

    convs, probs, grads = trace()
    with export_graph():
        e_convs, e_probs, e_grads = trace()
    assert len(e_convs) == len(kernels)
    # what is left on CPU: the grouped (depthwise) ones, and k x k ones of maps larger than 4x4; at least one 1x1 and
    # one small-map convolution went
    for e in convs:
        n, h, w, c = e.invars[0].aval.shape
        kh, kw = e.invars[1].aval.shape[:2]
        assert e.params["feature_group_count"] > 1 or ((kh, kw) != (1, 1) and h * w > SMALL_MAP), (e.invars, e.params)
    n_1x1 = sum(k.shape[:2] == (1, 1) for k in kernels)
    assert len(convs) < len(kernels) - n_1x1
    np.testing.assert_allclose(probs, e_probs, atol=1e-6)
    g, e = (np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)]) for t in (grads, e_grads))
    assert np.abs(g - e).max() <= 1e-4 * np.abs(e).max()  # float32 sums in another order


@pytest.mark.parametrize("hw,stride,taps", [((4, 4), 2, 9), ((2, 2), 1, 9), ((1, 1), 1, 1), ((2, 2), 2, 4)])
def test_small_map_matmul_is_the_convolution_and_copies_no_kernel(hw, stride, taps):
    """A 3x3 convolution of a <= 4x4 map as one matmul over its live taps: the convolution's output, and the
    kernel copied (concatenated) only when some taps read padding alone; with every tap live it is the kernel
    reshaped, which costs nothing (session 27: a [1152, 256] kernel concatenation per call was ~30% of yolov8n-cls's
    batch-1 inference at 64 px)."""
    from jax import lax

    from jaxyolo.nn.cpu_conv import _patches_matmul

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, *hw, 8), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, 8, 16), dtype=np.float32))
    args = ((stride, stride), ((1, 1), (1, 1)))
    got = _patches_matmul(x, w, *args)
    want = lax.conv_general_dilated(x, w, *args, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    jaxpr = jax.make_jaxpr(lambda a, b: _patches_matmul(a, b, *args))(x, w).jaxpr
    (dot,) = [e for e in _eqns(jaxpr) if e.primitive.name == "dot_general"]
    assert dot.invars[1].aval.shape == (taps * 8, 16)
    kernel_copies = [e for e in _eqns(jaxpr) if e.primitive.name == "concatenate"
                     and e.outvars[0].aval.shape[-1] == 16]
    assert len(kernel_copies) == (0 if taps in (1, 9) else 1)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pointwise_matmul_gradients_are_the_convolutions(dtype):
    """The 1x1 convolution as a dot has its own backward pass (``_pointwise_dot``: the kernel gradient as x^T g over
    the flattened pixels); values, dtypes and shapes of both gradients are the convolution's."""
    from jax import lax

    from jaxyolo.nn.cpu_conv import _pointwise_matmul

    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((3, 5, 4, 6)), dtype)
    w = jnp.asarray(rng.standard_normal((1, 1, 6, 7)), dtype)

    def loss(impl, x, w):
        y = impl(x, w, (1, 1), ((0, 0), (0, 0)))
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * jnp.arange(7.0))

    def conv(x, w, strides, padding):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    want = jax.grad(functools.partial(loss, conv), (0, 1))(x, w)
    got = jax.jit(jax.grad(functools.partial(loss, _pointwise_matmul), (0, 1)))(x, w)
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("stride,dtype", [(1, jnp.float32), (2, jnp.float32), (2, jnp.bfloat16)])
def test_sliced_kernel_gradient_is_the_convolutions(stride, dtype, monkeypatch):
    """k x k float32 convolutions on CPU keep their forward pass and input gradient, and where oneDNN is unavailable
    (tests/test_onednn.py covers it) sum the kernel gradient over batch slices (``_sliced_conv_bwd``): with an odd
    batch (unequal slices) both gradients have the convolution's values, dtypes and shapes, and the backward pass
    holds one kernel-gradient convolution per slice. bfloat16 keeps the convolution's one kernel gradient (rounded partial sums would cancel badly)."""
    from jax import lax

    from jaxyolo.nn import onednn
    from jaxyolo.nn.cpu_conv import _sliced_kernel_grad_conv, conv_impl, kernel_grad_parts

    monkeypatch.setattr(onednn, "available", lambda: False)
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((5, 9, 8, 6)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, 6, 7)), dtype)
    dn = ("NHWC", "HWIO", "NHWC")

    def loss(impl, x, w):
        y = impl(x, w, (stride, stride), ((1, 1), (1, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                 dimension_numbers=dn)
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * jnp.arange(7.0))

    want = jax.jit(jax.grad(functools.partial(loss, lax.conv_general_dilated), (0, 1)))(x, w)
    got = jax.jit(jax.grad(functools.partial(loss, _sliced_kernel_grad_conv), (0, 1)))(x, w)
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        # absolute error relative to the gradient's scale: the kernel gradient's entries reach ~170, sums of 360
        # products whose float32 rounding depends on the CPU's kernels (4e-5 on a Zen 3 without AVX-512)
        scale = max(1.0, float(np.abs(np.asarray(b, np.float32)).max())) if dtype == jnp.float32 else 1.0
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol * scale)
    jaxpr = jax.make_jaxpr(jax.grad(functools.partial(loss, _sliced_kernel_grad_conv), (0, 1)))(x, w).jaxpr
    kernel_grads = [e for e in _eqns(jaxpr) if e.primitive.name == "conv_general_dilated"
                    and e.outvars[0].aval.shape == w.shape]
    parts = kernel_grad_parts(5) if dtype == jnp.float32 else 1
    assert kernel_grad_parts(5) >= 2 and len(kernel_grads) == parts
    assert sum(e.invars[0].aval.shape[0] for e in kernel_grads) == 5  # slices that cover the batch once
    if jax.default_backend() == "cpu":  # what nn.Conv uses there for a 9x8 map (one kernel slice with >1 device)
        assert conv_impl(3, stride, 1, 1, (9, 8)) is _sliced_kernel_grad_conv


@pytest.mark.parametrize("k,stride,padding,hw", [(3, (2, 2), ((1, 1), (1, 1)), (9, 8)),
                                                  (3, (2, 2), ((0, 1), (1, 0)), (7, 10)),
                                                  (2, (2, 2), ((0, 0), (0, 0)), (8, 8)),
                                                  (3, (3, 2), ((1, 1), (2, 1)), (10, 11)),
                                                  (5, (2, 2), ((2, 2), (2, 2)), (9, 9))])
def test_phase_input_gradient_is_the_convolutions(k, stride, padding, hw):
    """A strided convolution's input gradient as one stride-1 convolution per output phase (``_input_grad``, used
    by the custom VJP of nn.Conv's k x k convolutions on CPU) equals autodiff's for odd and even maps, asymmetric
    padding, unequal strides and kernels larger than the stride, and holds no zero-dilated convolution."""
    from jax import lax

    from jaxyolo.nn.cpu_conv import _input_grad, _plain_conv

    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((3, *hw, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 5, 4)), jnp.float32)
    spec = (stride, padding, lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC")), None)
    y, vjp = jax.vjp(lambda a: _plain_conv(a, w, spec), x)
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    got = jax.jit(lambda g: _input_grad(x, w, spec, g))(g)
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(vjp(g)[0]), rtol=1e-5, atol=1e-5)
    convs = [e for e in _eqns(jax.make_jaxpr(lambda g: _input_grad(x, w, spec, g))(g).jaxpr)
             if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == stride[0] * stride[1]
    assert all(e.params["window_strides"] == (1, 1) and set(e.params["lhs_dilation"]) == {1} for e in convs)


@pytest.mark.parametrize("stride,cin,dtype", [(2, 3, jnp.float32), (1, 1, jnp.float32), (2, 3, jnp.bfloat16)])
def test_few_channel_direct_sum_is_the_convolution(stride, cin, dtype):
    """k x k convolutions of <= 4-channel inputs (the RGB stem) are sums of shifted, scaled inputs on CPU
    (``_direct_sum_conv``): outputs and both gradients have the convolution's values, dtypes and shapes (odd batch,
    uneven map, asymmetric padding), the float32 forward pass holds no convolution, and bfloat16 keeps it."""
    from jax import lax

    from jaxyolo.nn.cpu_conv import _direct_sum_conv, conv_impl

    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((5, 11, 8, cin)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, cin, 6)), dtype)
    dn = ("NHWC", "HWIO", "NHWC")

    def apply(impl, x, w):
        return impl(x, w, (stride, stride), ((1, 2), (0, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                    dimension_numbers=dn)

    def loss(impl, x, w):
        return jnp.sum(jnp.sin(apply(impl, x, w).astype(jnp.float32)) * jnp.arange(6.0))

    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    want_y = apply(lax.conv_general_dilated, x, w)
    got_y = jax.jit(functools.partial(apply, _direct_sum_conv))(x, w)
    assert got_y.dtype == want_y.dtype and got_y.shape == want_y.shape
    np.testing.assert_allclose(np.asarray(got_y, np.float32), np.asarray(want_y, np.float32), rtol=tol, atol=tol)
    want = jax.jit(jax.grad(functools.partial(loss, lax.conv_general_dilated), (0, 1)))(x, w)
    got = jax.jit(jax.grad(functools.partial(loss, _direct_sum_conv), (0, 1)))(x, w)
    for a, b in zip(got, want):  # float32 sums of 100s of terms in another order (oneDNN's kernel gradient): tol of max
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = max(1.0, float(jnp.abs(b.astype(jnp.float32)).max()))
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol * scale)
    forward = [e.primitive.name for e in _eqns(jax.make_jaxpr(functools.partial(apply, _direct_sum_conv))(x, w).jaxpr)]
    assert ("conv_general_dilated" in forward) == (dtype != jnp.float32)
    if jax.default_backend() == "cpu":
        assert conv_impl(3, stride, 1, 1, (224, 224), cin) is _direct_sum_conv
        assert conv_impl(3, stride, 1, 1, (224, 224), 5) is not _direct_sum_conv


@pytest.mark.parametrize("shape,dtype", [((3, 7, 5, 6), jnp.float32), ((2, 1, 1, 4), jnp.float32),
                                         ((3, 7, 5, 6), jnp.bfloat16)])
def test_head_pool_is_the_mean(shape, dtype):
    """The head's global average pool (``cpu_pool.global_avg_pool``): the mean over the spatial axes, value, dtype
    and gradient, as a batched dot on CPU for float32 (no reduction in the jaxpr), a mean for bfloat16 and inside
    ``export_graph()`` (what converters map to GlobalAveragePool / MEAN)."""
    from jaxyolo.nn.cpu_conv import export_graph
    from jaxyolo.nn.cpu_pool import global_avg_pool

    x = jnp.asarray(np.random.default_rng(8).standard_normal(shape), dtype)
    want = jnp.mean(x, axis=(1, 2))
    got = jax.jit(global_avg_pool)(x)
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    assert got.dtype == want.dtype and got.shape == want.shape == (shape[0], shape[3])
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=tol, atol=tol)
    weights = jnp.arange(shape[3], dtype=jnp.float32)
    g_want, g_got = (jax.grad(lambda a, f=f: jnp.sum(f(a).astype(jnp.float32) * weights))(x)
                     for f in (lambda a: jnp.mean(a, axis=(1, 2)), global_avg_pool))
    np.testing.assert_allclose(np.asarray(g_got, np.float32), np.asarray(g_want, np.float32), rtol=tol, atol=tol)

    def primitives():  # a new function each time: JAX caches traces by function, not by export_graph()
        return {e.primitive.name for e in _eqns(jax.make_jaxpr(lambda a: global_avg_pool(a))(x).jaxpr)}

    prims = primitives()
    with export_graph():
        exported = primitives()
    assert "reduce_sum" in exported and "dot_general" not in exported
    as_dot = jax.default_backend() == "cpu" and dtype == jnp.float32
    assert ("dot_general" in prims) == as_dot and ("reduce_sum" in prims) != as_dot


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_cpu_inference_compiles_convolutions_without_ynnpack(v8n10):
    """Inference executables on CPU (``inference_compiler_options``: predict, val, benchmarks) compile the 3x3
    convolutions as XLA's own convolutions, not YNNPACK fusions (one core each in jaxlib 0.10), with the same
    outputs; XLA's defaults keep YNNPACK."""
    from jaxyolo.nn.cpu_options import inference_compiler_options

    m = v8n10
    opts = inference_compiler_options()
    assert opts == {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_prefer_vector_width": 512}
    x = jnp.asarray(np.random.default_rng(4).random((2, 64, 64, 3), dtype=np.float32))

    def fwd(v, a):
        return m.module.apply(v, a)

    default = jax.jit(fwd).lower(m.variables, x).compile()
    ours = jax.jit(fwd, compiler_options=opts).lower(m.variables, x).compile()
    assert "__ynn_fusion" in default.as_text() and "__ynn_fusion" not in ours.as_text()
    assert " convolution(" in ours.as_text()
    np.testing.assert_allclose(ours(m.variables, x), default(m.variables, x), atol=1e-6)
    np.testing.assert_allclose(m.forward(np.asarray(x)), default(m.variables, x), atol=1e-6)  # YOLO.forward: ours


def test_info_prints_summary(v8n10, capsys):
    layers, n_p, _, gf = v8n10.info()
    out = capsys.readouterr().out
    assert "YOLOv8n-cls summary: 56 layers" in out and f"{n_p:,} parameters" in out
    assert layers == 56 and n_p == 1_451_098  # Ultralytics' yolov8n-cls at nc=10
    assert v8n10.names == {i: str(i) for i in range(10)}
    assert v8n10.task == "classify"
