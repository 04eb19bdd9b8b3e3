"""Keep XLA:CPU's per-step buffers in reused memory instead of fresh, page-faulting mappings.

Every execution of a compiled step allocates its outputs and one temporary arena (hundreds of MB for a train step at
224 px) and frees them at the end. With glibc's defaults each of those buffers is a fresh ``mmap``: above glibc's
32 MB dynamic mmap ceiling, and, with JAX's asynchronous CPU dispatch, allocated by a PJRT worker thread whose malloc
arena is a 64 MB heap that cannot hold it. So every step touches its whole working set as new pages: the kernel
zeroes and maps ~5,800 4-KiB pages per yolov8n-cls@224 train step, about a third of the step on the 2-core VM of
benchmarks/RESULTS.md.

Two settings make the buffers reusable:

* JAX's CPU client dispatches synchronously (``jax_cpu_enable_async_dispatch=False``): a step runs on the thread that
  calls it, so its buffers come from that thread's malloc arena (the main thread's is the ``brk`` heap, which can
  grow without limit). The trainer, validator and predictor call their steps from the main thread and keep their
  input pipelines on background threads, so nothing they overlap is lost.
* glibc's ``mallopt``: no block is ``mmap``'ed (``M_MMAP_MAX=0``; a 1 GiB threshold instead still left
  yolov8s-cls@224's larger temporaries mapped anew each step) and the heap is never trimmed
  (``M_TRIM_THRESHOLD=-1``), so the next step reuses the same pages.

Limiting malloc to one arena for all threads also works for the asynchronous dispatch, but made the digits run ~12%
slower (lock contention between the input pipeline's threads); this does not. The trade: memory the process frees
stays mapped (its RSS does not shrink back after a peak; it is reused by later allocations). ``JAXYOLO_MALLOC=0``
keeps the defaults.
Applied when ``jaxyolo.engine`` is first imported (every entry point: CLI, ``YOLO``, ``python -m jaxyolo.train``,
the exporters); the dispatch setting takes effect only if JAX's CPU backend has not started yet, and
``JAX_CPU_ENABLE_ASYNC_DISPATCH=true`` keeps JAX's asynchronous dispatch. Other C libraries and platforms: no-op.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from jaxyolo.utils import jax_cache

OFF = jax_cache.OFF + ("default",)  # the words that turn the compilation cache off, and "default"

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))  # no mmap'ed blocks; never trim the heap
ASYNC_ENV = "JAX_CPU_ENABLE_ASYNC_DISPATCH"

state: str = "not applied"  # what tune() did, for logs and benchmark rows


def _sync_cpu_dispatch() -> str:
    import jax

    setting = os.environ.get(ASYNC_ENV, "").strip().lower()  # JAX reads this flag only from absl flags: we do
    keep_async = setting in ("1", "true", "yes", "on")
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return "CPU dispatch unchanged (JAX had started)"
        jax.config.update("jax_cpu_enable_async_dispatch", keep_async)
    except (ImportError, AttributeError, KeyError):  # another JAX version's internals or flags: leave JAX as it is
        return "CPU dispatch unchanged"
    return f"asynchronous CPU dispatch ({ASYNC_ENV})" if keep_async else "synchronous CPU dispatch"


def tune() -> bool:
    """Apply ``SETTINGS`` with glibc's ``mallopt`` and synchronous CPU dispatch; True when the mallopt calls took."""
    global state
    setting = os.environ.get("JAXYOLO_MALLOC", "").strip().lower()
    if setting and setting in OFF:
        state = "off (JAXYOLO_MALLOC)"
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        state = "not glibc"
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        state = "no mallopt"
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all([mallopt(param, value) == 1 for param, value in SETTINGS])
    state = ("heap only, never trimmed" if ok else "mallopt partly rejected") + \
        f", {_sync_cpu_dispatch()}"
    return ok
