"""Edge TPU export: the full-integer int8 TFLite model (``tflite.py``: jax2tf -> TFLiteConverter, int8 in and out,
batch 1, static shape, builtin ops only, calibrated on ``data``) compiled by Coral's ``edgetpu_compiler``.

Two outputs, each written atomically under its own final name:

* ``<stem>_int8.tflite`` -- the compiler's input, a complete CPU model in its own right (identical to
  ``format=tflite, int8=True``); it is written first and kept whatever happens next;
* ``<stem>_edgetpu.tflite`` -- the compiled model, when ``edgetpu_compiler`` is on ``PATH``.

``edgetpu_compiler`` exists only for Debian/Ubuntu on x86-64 (Coral's apt repository); where it is missing the export
stops with an ExportError that says how to install it and where the ready int8 model is. Both files carry Ultralytics'
metadata as an appended ``metadata.json`` zip entry. Running the compiled model needs an Edge TPU and ``libedgetpu``.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from converters.export import tflite
from converters.export.core import ExportError, atomic_output

LOGGER = logging.getLogger("jaxyolo")

INSTALL_HINT = (
    "Coral's Edge TPU compiler, which is only built for Debian/Ubuntu on x86-64: "
    "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo gpg --dearmor -o "
    "/usr/share/keyrings/coral-edgetpu.gpg && echo 'deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] "
    "https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list "
    "&& sudo apt-get update && sudo apt-get install edgetpu-compiler"
)


def compiler() -> str | None:
    return shutil.which("edgetpu_compiler")


def export(yolo, out: Path, *, imgsz, batch, meta, data=None, final: Path | None = None) -> None:
    out = Path(out)
    final = Path(final) if final else out
    if int(batch) != 1:
        LOGGER.warning(f"format=edgetpu is exported with a static batch of 1 (batch={batch} ignored)")
    meta = {**meta, "batch": 1, "input_layout": "NHWC", "args": {**meta.get("args", {}), "batch": 1, "int8": True}}
    model = tflite.convert(yolo, imgsz, int8=True, data=data)
    int8_path = final.with_name(final.name.removesuffix("_edgetpu.tflite") + "_int8.tflite")
    with atomic_output(int8_path) as tmp:
        tmp.write_bytes(model)
        tflite.write_metadata(tmp, meta)
    LOGGER.info(f"Edge TPU: full-integer int8 model written to {int8_path}")
    exe = compiler()
    if exe is None:
        machine = f"{platform.system()} {platform.machine()}"
        raise ExportError(f"format=edgetpu needs 'edgetpu_compiler' on PATH (not found on this {machine} machine). "
                          f"Install {INSTALL_HINT}. The full-integer int8 model it compiles is ready at {int8_path}: "
                          f"compile it later with: edgetpu_compiler -s -d -k 10 --out_dir {int8_path.parent} "
                          f"{int8_path}")
    with tempfile.TemporaryDirectory(prefix="edgetpu_", dir=out.parent) as d:
        src = Path(d) / int8_path.name
        src.write_bytes(model)  # the bare flatbuffer (no appended metadata) for the compiler
        cmd = [exe, "-s", "-d", "-k", "10", "--out_dir", d, str(src)]
        LOGGER.info(f"Edge TPU: {' '.join(cmd)}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        compiled = Path(d) / f"{src.stem}_edgetpu.tflite"
        if r.returncode != 0 or not compiled.is_file():
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
            raise ExportError(f"edgetpu_compiler failed (exit code {r.returncode}); the int8 model is at "
                              f"{int8_path}:\n{tail}")
        LOGGER.info("\n".join(r.stdout.strip().splitlines()[-8:]))
        shutil.move(str(compiled), out)
    tflite.write_metadata(out, meta)


def load(path: Path):
    """The compiled model on an Edge TPU (``libedgetpu`` delegate); a ``*_int8.tflite`` loads with ``tflite.load``."""
    try:
        from ai_edge_litert.interpreter import load_delegate
    except ImportError:
        import tensorflow as tf

        load_delegate = tf.lite.experimental.load_delegate
    lib = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}[platform.system()]
    try:
        delegate = load_delegate(lib)
    except (ValueError, OSError, RuntimeError) as e:
        raise ExportError(f"{path}: running an Edge TPU model needs an Edge TPU and Coral's runtime ({lib}: {e}); "
                          f"the *_int8.tflite next to it runs on the CPU") from None
    return tflite.interpreter_backend(Path(path), "edgetpu", tflite.make_interpreter(path, delegates=[delegate]))
