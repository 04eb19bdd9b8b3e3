"""Test-wide settings: Ultralytics runs offline with its settings in a temp folder."""

import os
import tempfile

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_cfg_"))
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
