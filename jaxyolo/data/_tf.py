"""TensorFlow for the input pipeline, imported without its eager Keras load (about 1.5 s of every start-up), and the
tf.data settings every pipeline here uses (``parallel_calls``, ``dataset_options``).

``import tensorflow`` (2.20/2.21) ends with ``importlib.import_module("keras.src.optimizers")`` inside ``try: ...
except ImportError``, only to register Keras optimizers for SavedModel loading; tf.data and the image ops never use
Keras. When TensorFlow is not imported yet, this module hides ``keras`` for the duration of that import, so the
guarded load is skipped, then un-hides it: ``tf.keras`` and ``import keras`` still work later (lazily). Other
TensorFlow versions, ``TF_USE_LEGACY_KERAS`` and a process that already imported TensorFlow or Keras get a plain
import.
"""

from __future__ import annotations

import os
import sys

_CHECKED_TF = ("2.20.", "2.21.")  # versions whose __init__ guards the Keras load as described above


def _skip_keras_ok() -> bool:
    if "tensorflow" in sys.modules or "keras" in sys.modules or os.environ.get("TF_USE_LEGACY_KERAS"):
        return False
    try:
        from importlib.metadata import version

        return version("tensorflow").startswith(_CHECKED_TF)
    except Exception:  # noqa: BLE001 - tensorflow-cpu or another distribution name: plain import
        return False


if _skip_keras_ok():
    sys.modules["keras"] = None  # "import keras" raises ImportError while TensorFlow initialises
    try:
        import tensorflow as tf
    finally:
        if "keras" in sys.modules and sys.modules["keras"] is None:
            del sys.modules["keras"]
else:
    import tensorflow as tf

from jaxyolo.data.dataset import parallel_calls  # noqa: E402  (TF-free; also used by host_eval)

__all__ = ["tf", "parallel_calls", "dataset_options", "PREFETCH_BATCHES"]

PREFETCH_BATCHES = 2  # batches (or decoded images) every pipeline prefetches


def dataset_options(workers=0) -> "tf.data.Options":
    """Deterministic order, a private pool of ``parallel_calls(workers)`` threads, one intra-op thread per call, and
    tf.data's autotuner off: with it, tearing an iterator down stalled the process ~2.5 s, idle (its model thread),
    in 4 of 20 to 4 of 30 epochs, up to half the wall time of a short epoch; fixed sizes ran as fast."""
    opts = tf.data.Options()
    opts.deterministic = True
    opts.autotune.enabled = False
    opts.threading.max_intra_op_parallelism = 1
    opts.threading.private_threadpool_size = parallel_calls(workers)
    return opts
