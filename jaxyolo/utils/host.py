"""Facts about the host machine that sizing decisions share (no JAX or TensorFlow import)."""

from __future__ import annotations

import os


def host_cores() -> int:
    """The cores this process may run on (its CPU affinity; XLA:CPU sizes its thread pool by them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
