"""jaxyolo's own XLA:CPU kernel (``cpu_kernels.cc``, an XLA FFI custom call): BatchNorm's per-channel sums in one pass.

Train-mode BatchNorm sums ``x`` and ``x^2`` per channel, and its backward pass ``g`` and ``g * x``; XLA:CPU (jaxlib
0.10, YNNPACK) runs each pair as two single-output reductions, two passes over maps of up to 25 MB.
``channel_sums(a, b)`` returns ``(sum(a), sum(a * b))`` from one multi-threaded pass, 1.5-3x faster than the pair
alone; yolov8n-cls's train step 2-5% faster (benchmarks/RESULTS.md, session 25). It needs only jaxlib's FFI headers
and is built when jaxyolo is installed (``setup.py``; Linux). Where it is missing ``available()`` is False and
``nn/norm.py`` keeps XLA's reductions. ``JAXYOLO_CPU_KERNELS=off`` turns it off (for A/B comparisons).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxyolo.utils.jax_cache import switched_off

log = logging.getLogger(__name__)

TARGETS = ("JaxyoloChannelSums",)  # the FFI targets, by the names traced programs call them


def _extension() -> Path:
    found = sorted(Path(__file__).parent.glob("_cpu_kernels*.so"))
    if not found:
        raise FileNotFoundError(f"jaxyolo's CPU kernel extension (_cpu_kernels*.so) is not built in "
                                f"{Path(__file__).parent}")
    return found[0]


_LOCK = threading.Lock()  # models may be traced on several threads (the trainer lowers steps ahead on one)


def available() -> bool:
    """Whether the kernels are registered with XLA:CPU (loaded on first use; False where the extension is missing
    or fails to load, or ``JAXYOLO_CPU_KERNELS`` is switched off: ``utils.jax_cache.OFF``)."""
    with _LOCK:
        return _load()


@functools.cache
def _load() -> bool:
    if switched_off("JAXYOLO_CPU_KERNELS") or platform.system() != "Linux":
        return False
    try:
        lib = ctypes.CDLL(str(_extension()))
        for name in TARGETS:
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    except (OSError, AttributeError, RuntimeError) as e:  # RuntimeError: XLA refused the registration
        log.debug("jaxyolo's CPU kernels unavailable, XLA's reductions are used: %s", e)
        return False
    return True


def trace_key() -> tuple:
    """What a traced XLA:CPU program's use of these kernels depends on (``utils/trace_cache.py``): whether they are
    available, and which build of the extension. Loads them (so a deserialized program's calls resolve)."""
    if not available():
        return (False,)
    st = _extension().stat()
    return (True, st.st_size, st.st_mtime_ns)


def usable(x) -> bool:
    """Whether ``channel_sums`` runs on the kernel for float32 ``x`` being traced: on XLA:CPU outside
    ``export_graph()``, in single-device processes (a custom call on a sharded batch would be gathered to one
    device), where the extension is available."""
    from jaxyolo.nn.cpu_conv import cpu_lowerings

    return (x.dtype == jnp.float32 and x.ndim >= 1 and jax.device_count() == 1 and cpu_lowerings()
            and available())


def channel_sums(a, b):
    """``(sum(a), sum(a * b))`` over all axes but the last, for float32 ``a`` and ``b`` of one shape, in one pass
    (call where ``usable(a)``)."""
    out = jax.ShapeDtypeStruct(a.shape[-1:], jnp.float32)
    return jax.ffi.ffi_call("JaxyoloChannelSums", (out, out), vmap_method="sequential")(a, b)
