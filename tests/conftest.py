"""Test-wide settings: Ultralytics runs offline with its settings in a temp folder."""

import os
import tempfile

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_cfg_"))
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# triton (pulled in by torchvision and torch._dynamo) segfaults when TensorFlow was imported before it: load the torch
# side first for the whole suite, whatever order the test modules import things in.
try:
    import torch  # noqa: F401,E402
    import torchvision  # noqa: F401,E402
except ImportError:
    pass
