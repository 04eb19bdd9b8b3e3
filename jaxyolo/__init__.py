"""jaxyolo: Ultralytics YOLOv8/YOLO11 image classification in JAX/Flax."""

import os

__version__ = "0.1.0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (tf.data, TensorBoard) logs only errors

__all__ = ["YOLO", "__version__"]


def __getattr__(name):  # lazy, so `import jaxyolo` (e.g. for the version) does not start JAX
    if name == "YOLO":
        from jaxyolo.engine.model import YOLO

        return YOLO
    raise AttributeError(f"module 'jaxyolo' has no attribute {name!r}")
