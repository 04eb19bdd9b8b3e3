"""How ``nn.Conv`` convolves on XLA:CPU (``conv_impl``), and the jit of CPU inference executables (``inference_jit``;
their compiler options: ``nn/cpu_options.py``).

Same parameters and maths as ``lax.conv_general_dilated``, other XLA ops, chosen per convolution at trace time on
XLA:CPU only: GPUs and TPUs keep their native convolutions, and exporters trace inside ``export_graph()`` so every
Conv stays a convolution op (what converters map to CONV_2D). Each choice is measured in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxyolo.nn import winograd
from jaxyolo.nn.phase_grad import phase_input_grad
from jaxyolo.nn.cpu_options import inference_compiler_options
from jaxyolo.utils.host import host_cores

_EXPORT_GRAPH = contextvars.ContextVar("jaxyolo_export_graph", default=False)
_INFERENCE = contextvars.ContextVar("jaxyolo_inference_trace", default=False)
_QUICK = contextvars.ContextVar("jaxyolo_quick_trace", default=False)


@contextlib.contextmanager
def export_graph():
    """Trace the model for a converter: inside this block every convolution stays a convolution op (what converters
    map to CONV_2D), whatever the backend. Outside it, XLA:CPU runs some convolutions as matmuls (``conv_impl``)."""
    token = _EXPORT_GRAPH.set(True)
    try:
        yield
    finally:
        _EXPORT_GRAPH.reset(token)


@contextlib.contextmanager
def quick_trace(on: bool = True):
    """Trace for compile time (``cpu_options.quick_compile``: a short training run): inside this block the train
    step's convolutions of maps of <= 4x4 pixels run on oneDNN (``conv_impl``) where im2col matmuls compile ~60 XLA
    kernels more."""
    token = _QUICK.set(bool(on))
    try:
        yield
    finally:
        _QUICK.reset(token)


def inference_jit(fn, quick: bool = False, **jit_kwargs):
    """``jax.jit(fn)`` for an inference executable (eval steps, predict, benchmarks): compiled with
    ``inference_compiler_options(quick)``, and traced as inference, where XLA:CPU's k x k convolutions may run
    forward-only kernels (oneDNN's, ``_sliced_conv``) that have no gradient."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        token = _INFERENCE.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _INFERENCE.reset(token)

    return jax.jit(traced, compiler_options=inference_compiler_options(quick), **jit_kwargs)


def cpu_lowerings() -> bool:
    """Whether the model being traced takes jaxyolo's XLA:CPU forms of its ops (here and in ``cpu_pool``): on the CPU
    backend, outside ``export_graph()``."""
    return not _EXPORT_GRAPH.get() and jax.default_backend() == "cpu"


def conv_out_hw(hw, kernel_hw, strides, padding) -> tuple[int, int]:
    """The output map size of a convolution of an ``hw`` map with explicit ``((top, bottom), (left, right))``
    padding."""
    (h, w), (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = hw, kernel_hw, strides, padding
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def _is_nhwc(x, w, dimension_numbers) -> bool:
    """Whether ``dimension_numbers`` lay ``x`` and ``w`` out as NHWC/HWIO (-> NHWC)."""
    return (lax.conv_dimension_numbers(x.shape, w.shape, dimension_numbers)
            == lax.conv_dimension_numbers(x.shape, w.shape, _NHWC))


def _pointwise_matmul(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                      dimension_numbers=None, feature_group_count=1, precision=None):
    """A 1x1, stride-1, unpadded, ungrouped NHWC/HWIO convolution as the matmul it is, for ``nn.Conv``."""
    return _pointwise_dot(lhs, rhs[0, 0], precision)


def inference_dot(x, w, precision=None):
    """``x [..., K] @ w [K, N]``. Traced for inference (``inference_jit``) in float32 in single-device processes where
    oneDNN is available, on its sgemm in single-thread slices that every thread of XLA's pool takes
    (``onednn.matmul``): XLA:CPU's dot splits these few-row matmuls (1x1 convolutions of small maps, the head's
    Linear) less well. yolov8n/s-cls@64 batch 32 6-8%, batch 1 5-13% faster, 224 px batch 32 equal
    (benchmarks/RESULTS.md, session 31)."""
    if (_INFERENCE.get() and x.dtype == jnp.float32 and w.dtype == jnp.float32 and w.ndim == 2 and x.ndim >= 1
            and cpu_lowerings() and jax.device_count() == 1):
        from jaxyolo.nn import onednn

        if onednn.available():
            return onednn.matmul(x, w)
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general`` for ``nn.Dense``: its ``x [..., K] @ w [K, N]`` by ``inference_dot``."""
    if dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())) and preferred_element_type is None:
        return inference_dot(lhs, rhs, precision)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _pointwise_dot(x, w, precision=None):
    """``x [..., C] @ w [C, D]``, with its gradients written out (``_pointwise_dot_bwd``)."""
    return inference_dot(x, w, precision)


def _pointwise_dot_fwd(x, w, precision):
    return _pointwise_dot(x, w, precision), (x, w)


def _pointwise_dot_bwd(precision, res, g):
    """The same two products autodiff forms, but the kernel gradient as ``x2^T g2`` over the flattened pixels
    ([N*H*W, C] and [N*H*W, D], both contracted on their leading axis). Autodiff's own form of it made XLA:CPU emit
    the BatchNorm/SiLU backward pass that produces ``g`` in a transposed layout (a strided, unvectorised
    ``copy_bitcast_fusion``: 76 of the 510 ms of yolov8n-cls's train step at 224, batch 32); written like this the
    step is ~14% faster there (benchmarks/RESULTS.md), equal at 32-64 px, and the gradients are the same products."""
    x, w = res
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())), precision=precision)
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    dw = lax.dot_general(x2, g2, (((0,), (0,)), ((), ())), precision=precision)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_pointwise_dot.defvjp(_pointwise_dot_fwd, _pointwise_dot_bwd)


def _patches_matmul(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                    dimension_numbers=None, feature_group_count=1, precision=None):
    """An ungrouped NHWC/HWIO convolution as one matmul over its kernel taps (im2col), for ``nn.Conv``. Taps that
    only ever read padding are dropped, so a 3x3 convolution of a 1x1 map is the 1x1 convolution of its centre tap.
    In inference executables a stride-1 float32 one of at least ``FORWARD_MIN_MACS`` runs on oneDNN instead
    (``_inference_onednn``): its kernels skip the taps that read padding for each output pixel, where im2col
    multiplies zeros (5/9 of the work on a 2x2 map), and its OpenMP threads split these small matmuls better than
    XLA's (2 cores, batch 32: 4x4 128->128 2.1 -> 0.5 ms, 2x2 256->256 1.1 -> 0.7 ms): yolov8s-cls@64 inference
    batch 32 ~7% faster (benchmarks/RESULTS.md, session 29). Strided ones stay (4x4 256->512 s2: oneDNN 1.6x slower);
    so do train steps (on sliced oneDNN: yolov8s-cls@64 +7%)."""
    spec = _f32_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                     feature_group_count, precision)
    if spec is not None and max(window_strides) == 1 and _inference_onednn(lhs, rhs, spec):
        return _sliced_conv(lhs, rhs, spec)  # oneDNN's, as the other inference convolutions
    kh, kw, _, _ = rhs.shape
    (sh, sw), ((pt, pb), (pl, pr)) = window_strides, padding
    h, w = lhs.shape[1:3]
    ho, wo = conv_out_hw((h, w), (kh, kw), window_strides, padding)

    def live(i, stride, n_out, pad, n_in):  # does tap i read an input pixel (not only padding) for some output?
        return any(pad <= i + stride * o < pad + n_in for o in range(n_out))

    taps = [(i, j) for i in range(kh) for j in range(kw) if live(i, sh, ho, pt, h) and live(j, sw, wo, pl, w)]
    x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = jnp.concatenate([x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :] for i, j in taps], -1)
    if len(taps) == kh * kw:  # every tap: the kernel as it lies (a concatenation of its taps is copied every call)
        kernel = rhs.reshape(kh * kw * rhs.shape[2], rhs.shape[3])
    else:
        kernel = jnp.concatenate([rhs[i, j] for i, j in taps], axis=0)
    return inference_dot(cols, kernel, precision)


def _f32_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count, precision):
    """The hashable ``(strides, padding, dimension_numbers, precision)`` of an undilated, ungrouped float32
    convolution, the only kind the custom-VJP forms below take; None for any other (the plain convolution)."""
    if (any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))) or feature_group_count != 1
            or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32):
        return None
    return tuple(window_strides), tuple(tuple(p) for p in padding), dimension_numbers, precision


def kernel_grad_parts(batch: int) -> int:
    """Into how many batch slices ``_sliced_kernel_grad_conv`` cuts a kernel gradient: one per core, 2 to 8."""
    return min(batch, max(2, min(host_cores(), 8)))


def _sliced_kernel_grad_conv(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                             dimension_numbers=None, feature_group_count=1, precision=None):
    """An ungrouped float32 convolution whose kernel gradient is the sum of the kernel gradients of batch slices (one
    slice with several devices), for ``nn.Conv``; forward: the convolution's own; input gradient: the convolution's,
    or when strided its phase form (``_input_grad``). Other dtypes keep the plain convolution: a bfloat16 sum of
    rounded partial gradients would lose precision where the partial sums cancel."""
    spec = _f32_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                     feature_group_count, precision)
    if spec is None:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision)
    return _sliced_conv(lhs, rhs, spec)


def _plain_conv(x, w, spec):
    strides, padding, dimension_numbers, precision = spec
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dimension_numbers, precision=precision)


_NHWC = ("NHWC", "HWIO", "NHWC")
PHASE_GRAD = True  # strided convolutions' input gradients as stride-1 phase convolutions (``phase_grad``)


def _input_grad(x, w, spec, g):
    """The input gradient of ``_plain_conv(x, w, spec)`` for the cotangent ``g``: autodiff's, or for a strided NHWC
    convolution whose kernel is at least its stride, ``phase_grad.phase_input_grad``."""
    strides, padding, dimension_numbers, precision = spec
    kh, kw = w.shape[:2]
    if (PHASE_GRAD and max(strides) > 1 and kh >= strides[0] and kw >= strides[1]
            and _is_nhwc(x, w, dimension_numbers)):
        return phase_input_grad(g, w, x.shape, strides, padding, precision)
    _, input_vjp = jax.vjp(lambda a: _plain_conv(a, w, spec), x)
    return input_vjp(g)[0]


KERNEL_GRAD_THREADS = 1  # OpenMP threads of oneDNN's kernel gradients (``_sliced_conv_bwd``)
KERNEL_GRAD_PARTS = 4  # batch slices of a oneDNN kernel gradient, taken by whichever of XLA's threads are free
TRAIN_PARTS = 8  # batch slices of the train step's oneDNN forward convolutions and input gradients (one thread each)
FORWARD_THREADS = 0  # OpenMP threads of oneDNN's inference convolutions where XLA's pool has one thread; 0: all
FORWARD_MIN_MACS = 2_000_000  # smaller inference convolutions stay XLA's. oneDNN's run in slices on XLA's pool (batch
# slices, or bands of rows for batches smaller than the pool: ``onednn.conv``'s parts=0); on OpenMP's threads the
# floor was 20M, whose fork/join cost more below it (yolov8n-cls batch 1 at 224 px: 4.0 -> 4.4 ms). At 2M:
# yolov8n-cls@224 batch 1 ~7%, yolov8n-cls@64 batch 32 ~5% faster than at 20M (benchmarks/RESULTS.md, session 31)


def _onednn(x, w, spec) -> bool:
    """Whether this NHWC/HWIO convolution (``spec``: ``_f32_spec``'s) runs on oneDNN (``nn/onednn.py``): where
    ``_onednn_ready``."""
    return _is_nhwc(x, w, spec[2]) and _onednn_ready()


def _onednn_ready() -> bool:
    """Whether k x k convolutions may run on oneDNN here, whatever their shapes: in single-device processes on XLA:CPU
    (a custom call on a sharded batch would be gathered to one device) where the extension is installed, outside
    ``export_graph()``."""
    if jax.device_count() != 1 or not cpu_lowerings():
        return False
    from jaxyolo.nn import onednn

    return onednn.available()


def _macs(x, w, spec) -> int:
    """Multiply-adds of an NHWC/HWIO convolution (``spec``: ``_f32_spec``'s)."""
    (n, h, wd, ci), (kh, kw, _, co) = x.shape, w.shape
    ho, wo = conv_out_hw((h, wd), (kh, kw), spec[0], spec[1])
    return n * ho * wo * co * ci * kh * kw


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sliced_conv(x, w, spec):
    """The convolution. Traced for inference (``inference_jit``, no gradient) it runs on oneDNN where available:
    yolov8n-cls inference at 224 px, batch 32, 13-23% more images/s than on XLA's multi-threaded convolution
    (benchmarks/RESULTS.md, session 23). 3x3 stride-1 ones that ``winograd.applies`` to by Winograd's F(2x2, 3x3)
    (``onednn.winograd_conv``): 2.25x fewer multiply-adds, alone 1.1-1.4x faster than oneDNN's direct convolution on
    2 cores at batch 32; inference batch 32 yolov8n/s-cls@224 ~12% and @64 12-16% faster (benchmarks/RESULTS.md,
    session 30). The others on oneDNN's direct convolution in slices that every thread of XLA's pool takes, batch
    slices or, for batches smaller than the pool, bands of output rows (``parts=0``): on OpenMP's threads, its team
    spun beside XLA's threads, which run the ops around the call (yolov8n-cls@64 batch 32 ~11%, yolov8s-cls@224
    batch 1 ~10% faster, the other rows within 2%; benchmarks/RESULTS.md, session 31). In a train step, see
    ``_sliced_conv_fwd``."""
    if _inference_onednn(x, w, spec):
        from jaxyolo.nn import onednn

        if winograd.applies(x.shape, w.shape, spec[0], spec[1]):
            return onednn.winograd_conv(x, w)
        return onednn.conv(x, w, spec[0], spec[1], FORWARD_THREADS, parts=0)
    return _plain_conv(x, w, spec)


def _inference_onednn(x, w, spec) -> bool:
    """Whether this convolution, traced for inference (``inference_jit``), runs on oneDNN: where available
    (``_onednn``), when at least ``FORWARD_MIN_MACS`` or when Winograd's F(2x2, 3x3) ``winograd.applies`` to it."""
    if not _INFERENCE.get() or not _onednn(x, w, spec):
        return False
    return _macs(x, w, spec) >= FORWARD_MIN_MACS or winograd.applies(x.shape, w.shape, spec[0], spec[1])


def _sliced_conv_fwd(x, w, spec):
    """The train step's forward convolution: on oneDNN where available (``_onednn``), in ``TRAIN_PARTS`` batch
    slices that the calling thread and a task on XLA's thread pool take one at a time (``onednn_conv.cc``), so it
    takes the second core only while that one is free. Alone on 2 cores it is 1.1-2x faster than XLA's (the 16-channel
    layers of yolov8n-cls at 56 px: 4.5 -> 2.3 ms); with the input gradients below, train step yolov8n-cls@224 ~8-16%
    and yolov8s-cls@224 ~9% faster, @64 2-7% (benchmarks/RESULTS.md, session 28). Session 23's oneDNN forward pass
    with OpenMP threads gained nothing in the step: its threads spun beside XLA's. The 3x3 stride-1 ones that
    ``winograd.applies`` to by Winograd's F(2x2, 3x3), in blocks of output tiles taken the same way, as are their
    input gradients (``_onednn_input_grad``) and kernel gradients (``_sliced_conv_bwd``): with the former, train
    step yolov8n-cls@224 ~8%, yolov8s-cls@224 and @64 ~6% faster, yolov8n-cls@64 ~1% (benchmarks/RESULTS.md,
    session 30)."""
    if _onednn(x, w, spec):
        from jaxyolo.nn import onednn

        if winograd.applies(x.shape, w.shape, spec[0], spec[1]):
            return onednn.winograd_conv(x, w, helpers=1), (x, w)
        return onednn.conv(x, w, spec[0], spec[1], 1, TRAIN_PARTS), (x, w)
    return _plain_conv(x, w, spec), (x, w)


def _onednn_input_grad(x, w, spec, g):
    """The input gradient of ``_plain_conv(x, w, spec)`` for ``g`` on oneDNN, in ``TRAIN_PARTS`` batch slices like
    the forward pass: strided, oneDNN's backward-data convolution; stride 1, its forward convolution of ``g`` with
    the kernel flipped and transposed (alone 1.3x faster than its backward-data kernel at 28-56 px), by Winograd's
    F(2x2, 3x3) where ``winograd.applies`` (``_sliced_conv_fwd``)."""
    from jaxyolo.nn import onednn

    (sh, sw), ((pt, pb), (pl, pr)) = spec[0], spec[1]
    kh, kw = w.shape[:2]
    if sh == sw == 1:
        flipped = jnp.swapaxes(w[::-1, ::-1], 2, 3)  # [kh, kw, cout, cin]
        pad = ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr))
        if winograd.applies(g.shape, flipped.shape, (1, 1), pad):
            return onednn.winograd_conv(g, flipped, helpers=1)
        return onednn.conv(g, flipped, (1, 1), pad, 1, TRAIN_PARTS)
    return onednn.input_grad(g, w, x.shape, spec[0], spec[1], 1, TRAIN_PARTS)


def _sliced_conv_bwd(spec, res, g):
    """The input gradient on oneDNN where available (``_onednn_input_grad``), else as autodiff forms it
    (``_input_grad``). The kernel gradient on oneDNN where available (``_onednn``), one OpenMP thread per call, XLA
    running it beside the input gradient on the other cores: XLA:CPU's kernel gradients are a third of yolov8n-cls's
    train step at 224 px, oneDNN's are ~2.7x faster (train step yolov8n-cls@224 ~14% faster, yolov8s-cls@224 ~4%). Its
    ``KERNEL_GRAD_PARTS`` batch slices are taken one at a time by the calling thread and a task on XLA's thread pool
    (``onednn_conv.cc``): XLA reuses ``g``'s buffer two layers down, so the layer there waits for this kernel gradient,
    and on one core it held the step while the other core idled (yolov8n-cls@224: ~40 ms a step); sliced, an idle core
    takes part of it: train step yolov8n-cls@224 ~5-10% and yolov8s-cls@224 ~12% faster, @64 equal
    (benchmarks/RESULTS.md, session 28). 3x3 stride-1 ones that ``winograd.applies`` to by Winograd's F(2x2, 3x3)
    (``winograd_conv.cc``, its sums over slices of the output tiles taken the same way): alone 1.3-1.8x faster on 2
    cores, train step yolov8n-cls@224 ~4% and yolov8s-cls@224 ~1% faster (session 30). Otherwise XLA's, summed over
    ``kernel_grad_parts`` batch slices: XLA:CPU (jaxlib 0.10) runs each YNNPACK convolution on one core, and as
    independent slices its thread pool runs them side by side (yolov8n-cls at 224, batch 32, 2 cores: step 511 -> 453
    ms)."""
    x, w = res
    if _onednn(x, w, spec):
        from jaxyolo.nn import onednn

        if winograd.applies(x.shape, w.shape, spec[0], spec[1]):
            dw = onednn.winograd_kernel_grad(x, g, w.shape, KERNEL_GRAD_PARTS, helpers=1)
        else:
            dw = onednn.kernel_grad(x, g, w.shape, spec[0], spec[1], KERNEL_GRAD_THREADS, KERNEL_GRAD_PARTS)
        return _onednn_input_grad(x, w, spec, g), dw
    dx = _input_grad(x, w, spec, g)
    n = x.shape[0]
    parts = kernel_grad_parts(n) if jax.device_count() == 1 else 1  # a slice of a sharded batch would be resharded
    bounds = [n * i // parts for i in range(parts + 1)]
    dw = None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        _, kernel_vjp = jax.vjp(lambda b, lo=lo, hi=hi: _plain_conv(x[lo:hi], b, spec), w)
        (part,) = kernel_vjp(g[lo:hi])
        dw = part if dw is None else dw + part
    return dx, dw


_sliced_conv.defvjp(_sliced_conv_fwd, _sliced_conv_bwd)


def _direct_sum_conv(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                     dimension_numbers=None, feature_group_count=1, precision=None):
    """An ungrouped float32 NHWC/HWIO convolution of a few-channel input (an RGB stem) as the sum of its
    ``kh * kw * cin`` shifted, scaled copies of the input, for ``nn.Conv``: one elementwise loop over the output that
    XLA:CPU vectorises over the output channels (and fuses with the BatchNorm/SiLU after it). Its gradients are the
    convolution's (``_direct_conv_bwd``). Other dtypes keep the plain convolution: a bfloat16 running sum would round
    at every one of its terms. Where oneDNN is available the convolution runs there instead, as the other k x k
    ones do: differentiated (train steps) in batch slices (``_direct_conv_fwd``), in inference executables when at
    least ``FORWARD_MIN_MACS`` (``_inference_onednn``). There the sum would fuse with the BatchNorm/SiLU after it,
    but oneDNN pads the image itself: yolov8n-cls@224 batch 32, one core, 12.1 ms (sum, BatchNorm, SiLU) + 4.6 ms
    (XLA's pad of the 3-channel image) -> 4.9 + 6.2 ms (benchmarks/RESULTS.md, session 29)."""
    spec = _f32_spec(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                     feature_group_count, precision)
    if spec is None:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision)
    if _inference_onednn(lhs, rhs, spec):
        return _sliced_conv(lhs, rhs, spec)  # oneDNN's, as the other inference convolutions
    return _direct_conv(lhs, rhs, spec)


def _tap_sum(x, w, strides, padding):
    """``sum over (i, j, c) of x_padded[:, i::sh, j::sw, c:c+1] * w[i, j, c]``: the convolution, term by term."""
    kh, kw, cin, _ = w.shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    ho, wo = conv_out_hw(x.shape[1:3], (kh, kw), strides, padding)
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    acc = None
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
            for c in range(cin):
                term = tap[..., c:c + 1] * w[i, j, c]
                acc = term if acc is None else acc + term
    return acc


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _direct_conv(x, w, spec):
    return _tap_sum(x, w, spec[0], spec[1])


def _direct_conv_fwd(x, w, spec):
    """The train step's forward pass: oneDNN's convolution where available, in batch slices (``_sliced_conv_fwd``).
    With a train step's BatchNorm the sum fuses with nothing, and XLA:CPU vectorises its 16-channel output poorly
    (yolov8n-cls's stem at 224 px, batch 32, one core: 9.6 ms summed, 4.9 ms on oneDNN): train step yolov8n-cls@224
    ~1.4% faster (median of 10 processes per side), yolov8s-cls's 32-channel stem and 32-64 px equal
    (benchmarks/RESULTS.md, session 29)."""
    if _onednn(x, w, spec):
        return _sliced_conv_fwd(x, w, spec)
    return _direct_conv(x, w, spec), (x, w)


def _direct_conv_bwd(spec, res, g):
    """The convolution's gradients: the kernel gradient on oneDNN or over batch slices in single-device processes
    (``_sliced_conv_bwd``), autodiff's otherwise (a slice of a sharded batch would be resharded). Autodiff of the
    sum itself would form one reduction per term (~8x slower)."""
    if jax.device_count() == 1:
        return _sliced_conv_bwd(spec, res, g)
    x, w = res
    _, vjp = jax.vjp(lambda a, b: _plain_conv(a, b, spec), x, w)
    return vjp(g)


_direct_conv.defvjp(_direct_conv_fwd, _direct_conv_bwd)


FEW_CHANNELS = 4  # k x k convolutions of inputs with at most this many channels are direct sums on XLA:CPU
SMALL_MAP = 16  # input maps of at most this many pixels (4x4) are convolved as im2col matmuls on XLA:CPU


def conv_impl(k: int, s: int, p: int, g: int, hw: tuple[int, int], cin: int = 0):
    """The ``conv_general_dilated`` for ``nn.Conv`` on an ``hw`` input map of ``cin`` channels (None: Flax's default,
    ``lax.conv_general_dilated``). Same parameters, same maths, other XLA ops, on XLA:CPU only (GPUs and TPUs keep
    their native convolutions, and exporters trace inside ``export_graph()``):

    * 1x1 convolutions (a third of yolov8n-cls's) as one dot: ~2x faster forward and backward than XLA:CPU's
      convolution, which also transposes the activations for the kernel gradient. yolov8n-cls at 224: train step
      ~11% and inference ~10% faster.
    * Convolutions of maps of <= 4x4 pixels (the last stages at imgsz 32-64) as im2col matmuls: XLA:CPU swaps the
      operands of a convolution whose kernel is larger than its input and runs that on a slow generic path (two 3x3
      convolutions of 2x2 maps took half of yolov8s-cls's inference time at 64 px). yolov8s-cls at 64: train step 2x
      and inference 2.2x faster; yolov8n-cls at 32 (the digits recipe): 1.4x and 2x. Large stride-1 ones in
      inference executables: oneDNN's (``_patches_matmul``). Train steps traced inside ``quick_trace()`` (short
      runs) take oneDNN's, as the larger maps do, where it is available: their tap slices, concatenations and
      matmuls were ~60 of the digits step's ~310 distinct XLA kernels, and its compilation takes 35% less CPU
      (4.3 -> 2.8 s) for a step ~4.5% slower (benchmarks/RESULTS.md, session 34).
    * k x k convolutions of inputs with <= 4 channels (the RGB stem) as a sum of shifted, scaled inputs
      (``_direct_sum_conv``): XLA:CPU's convolution runs 3-channel inputs at a fraction of its speed (yolov8n-cls's
      stem, 224 px, batch 32: 13.4 -> 5.5 ms forward; yolov8s-cls's under YNNPACK 36.9 -> 9.2 ms); where oneDNN
      takes the other k x k convolutions (below), oneDNN's convolution instead.
    * The other (k x k) convolutions, in single-device processes where jaxyolo's oneDNN extension is installed
      (``nn/onednn.py``), in the train step on oneDNN: forward pass, input and kernel gradient, each in batch slices
      that XLA's threads take as they come free (``_sliced_conv_fwd``, ``_sliced_conv_bwd``: yolov8n-cls@224 train step
      ~14% faster for the kernel gradients, another ~15-20% for slicing them and the rest, session 28); in inference
      executables (``inference_jit``) their forward pass on oneDNN when at least ``FORWARD_MIN_MACS`` (yolov8n-cls@224,
      batch 32: 13-23% more images/s). 3x3 stride-1 ones of >= 32 channels by Winograd's F(2x2, 3x3) on oneDNN's matmul
      (``nn/winograd.py``: train steps 1-12%, inference 12-16% faster). Without oneDNN, their kernel gradient computed
      over batch slices that XLA runs side by side (``_sliced_conv_bwd``), in single-device processes (a slice of a
      sharded batch would be resharded; with several devices the kernel gradient is the convolution's own): yolov8n-cls
      at 224, train step ~11% faster under XLA's defaults; at 32-64 px within noise. The trainer's options
      (``train_compiler_options``: XLA's own multi-threaded convolutions) make them neutral there. Their input gradient,
      when strided, is one stride-1 convolution per output phase (``phase_grad``) instead of a convolution of the
      zero-dilated gradient: train step yolov8n-cls@224 ~4%, yolov8s-cls@224 ~14% faster (yolov8n-cls@224 data-parallel
      over 2 CPU devices ~3%).

    Measured in benchmarks/RESULTS.md.
    """
    if g != 1 or not cpu_lowerings():
        return None
    if k == 1 and s == 1 and p == 0:
        return _pointwise_matmul
    if k > 1 and 0 < cin <= FEW_CHANNELS:
        return _direct_sum_conv
    if hw[0] * hw[1] <= SMALL_MAP and not (_QUICK.get() and _onednn_ready()):
        return _patches_matmul
    return _sliced_kernel_grad_conv
