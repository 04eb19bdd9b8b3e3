"""TensorFlow for the input pipeline, imported without its eager Keras load (about 1.5 s of every start-up).

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

__all__ = ["tf"]
