"""CPython's cyclic garbage collector during a training run: kept off the objects that live for the whole run.

A full (oldest-generation) collection walks every live container object: with JAX, TensorFlow and torch loaded that
is ~0.4-1 million objects, 0.1-0.45 s per collection with the GIL held, so every Python thread (the step dispatch,
the input pipeline, the writer) stops meanwhile. A 10-epoch digits run triggered eleven of them, eight while it set
up (the TensorFlow import, tracing the steps) and three later (torch's import for the first ``.pt``, the final
plots): ~2.4 s of a 22 s run; the young-generation collections add ~0.4 s.

``paused_for_set_up()`` therefore freezes (``gc.freeze``) what is alive when a run starts, keeps the collector off
while the run sets up (imports, model, tracing and compiling: allocation-heavy, with little garbage), and the
``set_up_done`` callback it yields freezes what set-up left alive and turns the collector back on for the epochs. On
exit everything is unfrozen and the collector is left as it was found (off stays off), so cycles that became garbage
while frozen are collected afterwards as usual; a process that had frozen objects itself keeps its freeze untouched
(the collector is then only paused during set-up). Measured on the digits run: collector time 2.4-2.7 s -> 0.7-0.8 s,
peak RSS unchanged (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def paused_for_set_up():
    """Context for one training run; yields ``set_up_done()``, to call once the steps are compiled (idempotent)."""
    was_enabled = gc.isenabled()
    freeze = gc.get_freeze_count() == 0  # a caller that froze objects itself keeps its own freeze as it is
    if freeze:
        gc.freeze()
    gc.disable()
    state = {"done": False}

    def set_up_done() -> None:
        if not state["done"]:
            state["done"] = True
            if freeze:
                gc.freeze()
            if was_enabled:
                gc.enable()

    try:
        yield set_up_done
    finally:
        if freeze:
            gc.unfreeze()
        if was_enabled:
            gc.enable()
