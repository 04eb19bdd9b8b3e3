"""oneDNN's convolution kernels inside XLA:CPU executables, as XLA FFI custom calls (``onednn_conv.cc``),
jaxyolo's Winograd convolution on oneDNN's matmul (``winograd_conv.cc``) and inference matmuls on it
(``matmul.cc``).

XLA:CPU's own 3x3 convolutions are the largest part of yolov8n-cls's train step and inference at 224 px; oneDNN
(Intel's CPU deep-learning library, the ``onednn-cpu-gomp`` wheel: oneDNN 3.2 with GNU OpenMP) computes the kernel
gradient ~2.7x and the forward pass ~1.7x faster on the same CPU (``benchmarks/RESULTS.md``). ``nn/cpu_conv.py``
decides where they are used. The extension is built when jaxyolo is installed (``setup.py``; Linux x86_64); where
it or the oneDNN library is missing, ``available()`` is False and every convolution stays XLA's.
``JAXYOLO_ONEDNN=off`` turns it off (for A/B comparisons).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
import threading
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from jaxyolo.utils.jax_cache import switched_off

log = logging.getLogger(__name__)

# the FFI targets, by the names traced programs call them
TARGETS = ("JaxyoloConvFwd", "JaxyoloConvBwdData", "JaxyoloConvBwdWeights", "JaxyoloWinogradFwd",
           "JaxyoloWinogradKernelGrad", "JaxyoloMatmul")
_RUNTIME = "onednn-cpu-gomp"  # the distribution holding libdnnl.so.3


def _runtime_library() -> Path:
    dist = metadata.distribution(_RUNTIME)
    for f in dist.files or ():
        if f.name == "libdnnl.so.3":
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"{_RUNTIME} is installed without lib/libdnnl.so.3")


def _extension() -> Path:
    found = sorted(Path(__file__).parent.glob("_onednn_conv*.so"))
    if not found:
        raise FileNotFoundError(f"jaxyolo's oneDNN extension (_onednn_conv*.so) is not built in {Path(__file__).parent}")
    return found[0]


_LOCK = threading.Lock()  # models may be traced on several threads (the trainer lowers steps ahead on one)


def available() -> bool:
    """Whether the oneDNN custom calls are registered with XLA:CPU (loaded on first use; False where the extension
    or libdnnl is missing or fails to load, or ``JAXYOLO_ONEDNN`` is switched off: ``utils.jax_cache.OFF``)."""
    with _LOCK:
        return _load()


@functools.cache
def _load() -> bool:
    if switched_off("JAXYOLO_ONEDNN"):
        return False
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    try:
        ctypes.CDLL(str(_runtime_library()), mode=ctypes.RTLD_GLOBAL)  # resolves the extension's dnnl_* symbols
        lib = ctypes.CDLL(str(_extension()))
        for name in TARGETS:
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    except (OSError, metadata.PackageNotFoundError, AttributeError, RuntimeError) as e:  # RuntimeError: XLA refused
        # the registration (jaxlib's XlaRuntimeError), e.g. an FFI API version this jaxlib does not accept
        log.warning("jaxyolo's oneDNN extension is not available (%s): convolutions run on XLA's own, slower on "
                    "CPU. Reinstall jaxyolo (pip install -e .) where a C++ compiler is present, or set "
                    "JAXYOLO_ONEDNN=0 to choose XLA's and silence this.", e)
        return False
    return True


def trace_key() -> tuple:
    """What a traced XLA:CPU program's use of these kernels depends on (``utils/trace_cache.py``): whether they are
    available, which build of the extension, and whether Winograd's convolution is switched off (``nn/winograd.py``).
    Loads them (so a deserialized program's calls resolve)."""
    if not available():
        return (False,)
    st = _extension().stat()
    return (True, st.st_size, st.st_mtime_ns, switched_off("JAXYOLO_WINOGRAD"))


def _attrs(strides, padding, threads):
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    return {k: np.int64(v) for k, v in dict(sh=sh, sw=sw, pt=pt, pb=pb, pl=pl, pr=pr, threads=threads).items()}


def conv(x, w, strides, padding, threads: int = 0, parts: int = 1):
    """``lax.conv_general_dilated(x, w, strides, padding)`` for float32 NHWC ``x`` and HWIO ``w`` (explicit
    ``((top, bottom), (left, right))`` padding), on oneDNN with ``threads`` OpenMP threads (0: OpenMP's default), in
    ``parts`` batch slices that the calling thread and a task on XLA's thread pool take one at a time
    (``onednn_conv.cc``). ``parts=0`` (inference executables): single-thread slices that every thread of XLA's pool
    takes, one per thread: batch slices, or where the batch is smaller than the pool bands of output rows of each
    image; with a one-thread pool, one call on ``threads`` threads."""
    from jaxyolo.nn.cpu_conv import conv_out_hw

    ho, wo = conv_out_hw(x.shape[1:3], w.shape[:2], strides, padding)
    out = jax.ShapeDtypeStruct((x.shape[0], ho, wo, w.shape[3]), x.dtype)
    return jax.ffi.ffi_call("JaxyoloConvFwd", out, vmap_method="sequential")(
        x, w, **_attrs(strides, padding, threads), parts=np.int64(parts))


def input_grad(g, w, x_shape, strides, padding, threads: int = 1, parts: int = 1):
    """The gradient of ``conv(x, w, strides, padding)`` with respect to ``x`` (NHWC ``x_shape``) for the output
    cotangent ``g``, on oneDNN like ``conv``."""
    out = jax.ShapeDtypeStruct(tuple(x_shape), g.dtype)
    return jax.ffi.ffi_call("JaxyoloConvBwdData", out, vmap_method="sequential")(
        g, w, **_attrs(strides, padding, threads), parts=np.int64(parts))


def kernel_grad(x, g, w_shape, strides, padding, threads: int = 1, parts: int = 1):
    """The gradient of ``conv(x, w, strides, padding)`` with respect to ``w`` (HWIO ``w_shape``) for the output
    cotangent ``g``, on oneDNN like ``conv``: the sum of the batch slices' gradients."""
    out = jax.ShapeDtypeStruct(tuple(w_shape), x.dtype)
    return jax.ffi.ffi_call("JaxyoloConvBwdWeights", out, vmap_method="sequential")(
        x, g, **_attrs(strides, padding, threads), parts=np.int64(parts))


def winograd_conv(x, w, helpers: int = -1):
    """The 3x3, stride-1, 1-padded convolution of float32 NHWC ``x`` with HWIO ``w`` by Winograd's F(2x2, 3x3)
    (``winograd_conv.cc``), in blocks of output tiles that the calling thread and ``helpers`` tasks on XLA's thread
    pool take one at a time (-1: one per other pool thread; 0: the calling thread alone)."""
    out = jax.ShapeDtypeStruct((*x.shape[:3], w.shape[3]), x.dtype)
    return jax.ffi.ffi_call("JaxyoloWinogradFwd", out, vmap_method="sequential")(x, w, helpers=np.int64(helpers))


def winograd_kernel_grad(x, g, w_shape, parts: int = 1, helpers: int = -1):
    """The kernel gradient (HWIO ``w_shape``, 3x3) of ``winograd_conv(x, w)`` for the output cotangent ``g``, by
    Winograd's F(2x2, 3x3) (``winograd_conv.cc``): the sum over ``parts`` slices of the output tiles, taken like
    ``winograd_conv``'s blocks."""
    out = jax.ShapeDtypeStruct(tuple(w_shape), x.dtype)
    return jax.ffi.ffi_call("JaxyoloWinogradKernelGrad", out, vmap_method="sequential")(
        x, g, parts=np.int64(parts), helpers=np.int64(helpers))


def matmul(x, w):
    """``x @ w`` for float32 ``x [..., K]`` and ``w [K, N]`` on oneDNN's sgemm (``matmul.cc``), in single-thread
    slices that every thread of XLA's pool takes: rows of ``x``, or for a few rows columns of ``w``."""
    x2 = x.reshape(-1, x.shape[-1])
    out = jax.ShapeDtypeStruct((x2.shape[0], w.shape[1]), x.dtype)
    return jax.ffi.ffi_call("JaxyoloMatmul", out, vmap_method="sequential")(x2, w).reshape(*x.shape[:-1], w.shape[1])
