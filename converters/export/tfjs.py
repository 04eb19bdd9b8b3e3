"""TF.js export: the plain-op SavedModel (``saved_model.py``: ONNX -> onnx2tf) -> ``tensorflowjs`` -> a graph model.

The converter's environment. ``tensorflowjs`` 4.22 (the release verified here) cannot be installed next to jaxyolo: it
pins TensorFlow 2.19 (through tensorflow-decision-forests, which it imports unconditionally and which loads custom ops
built for exactly TF 2.19), while jax 0.10's ``jax2tf`` output needs TF >= 2.20. So the converter runs in **its own
virtual environment**, which this module creates the first time ``format=tfjs`` is used and reuses afterwards:

* location: ``$JAXYOLO_TOOLS_DIR/tfjs-venv`` (default ``${XDG_CACHE_HOME:-~/.cache}/jaxyolo/tfjs-venv``);
* interpreter: the running Python (3.9-3.12, the versions TF 2.19 has wheels for), or ``$JAXYOLO_TFJS_PYTHON``;
* contents (``TOOL_PACKAGES``): ``tensorflow==2.19.0`` with its dependencies, then -- ``--no-deps``, so nothing else
  tensorflowjs declares (flax, optax, orbax, ...) is pulled in -- exactly the packages the converter imports:
  tensorflowjs, tf-keras, tensorflow-hub, tensorflow-decision-forests, ydf (0.15.0: newer ones need protobuf 6,
  which TF 2.19 cannot load), pandas (TF-DF imports it), jax/jaxlib (tensorflowjs imports ``jax2tf``). About 0.8 GB
  to download (2.7 GB on disk), 1.5 minutes on a fast network; each pip step is logged before it runs. The user's
  environment is never touched.
  (``tensorflow-cpu`` 2.19 is not used: TF-DF's two op libraries fail to load together with it.)

The web model has the SavedModel's signature (input ``images`` ``[1, H, W, 3]`` float32 NHWC RGB in [0, 1], output
``output_0`` ``[1, nc]`` softmax probabilities); ``model.json`` carries Ultralytics' metadata dict (plus
``input_layout``) as ``userDefinedMetadata.metadata`` and the directory has the same dict as ``metadata.yaml`` (where
Ultralytics writes it). In Node, pure-JS ``@tensorflow/tfjs`` loads it with ``tf.loadGraphModel(handler)`` where
``handler.load()`` reads ``model.json`` and the shards with ``fs`` (``file://`` URLs need ``@tensorflow/tfjs-node``);
see ``tests/js/run_graph_model.js``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from converters.export.core import ExportError

LOGGER = logging.getLogger("jaxyolo")

TOOL_TF = "tensorflow==2.19.0"  # installed with its dependencies; tensorflow-decision-forests 1.12 is built for it
TOOL_PACKAGES = [  # installed --no-deps: what `import tensorflowjs` needs and nothing more
    "tensorflowjs==4.22.0",
    "tf-keras==2.19.0",  # must match TF's minor version
    "tensorflow-hub==0.16.1",
    "tensorflow-decision-forests==1.12.0",  # the TF-DF release for TF 2.19 (tensorflowjs imports it unconditionally)
    "ydf==0.15.0",  # TF-DF's proto modules; 0.16+ are generated for protobuf 6 (TF 2.19 ships protobuf 5)
    "pandas==2.2.3",  # imported by TF-DF
    "python-dateutil==2.9.0.post0",  # pandas
    "pytz==2025.2",  # pandas 2.2
    "tzdata==2025.2",  # pandas 2.2
    "jax==0.10.2",  # tensorflowjs imports jax.experimental.jax2tf at import time
    "jaxlib==0.10.2",
]
MARKER = "jaxyolo-tool.json"


def tools_dir() -> Path:
    if os.environ.get("JAXYOLO_TOOLS_DIR"):
        return Path(os.environ["JAXYOLO_TOOLS_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "jaxyolo"


def _spec() -> dict:
    return {"tensorflow": TOOL_TF, "packages": TOOL_PACKAGES}


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if platform.system() == "Windows" else "bin/python")


def _base_python() -> str:
    exe = os.environ.get("JAXYOLO_TFJS_PYTHON")
    if exe:
        return exe
    if not (3, 9) <= sys.version_info[:2] <= (3, 12):
        raise ExportError(f"format=tfjs runs tensorflowjs 4.22 in its own environment with TensorFlow 2.19, which has "
                          f"no wheels for Python {sys.version_info[0]}.{sys.version_info[1]}; set "
                          f"JAXYOLO_TFJS_PYTHON to a Python 3.9-3.12 interpreter (e.g. /usr/bin/python3.12)")
    return sys.executable


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock file so two exports do not build the environment at the same time (POSIX; no-op elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:
            pass
        yield


def _run(cmd: list[str], what: str) -> None:
    LOGGER.warning(f"TF.js converter environment: {what}: {' '.join(cmd)}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-20:])
        raise ExportError(f"creating the TF.js converter environment failed at '{what}' (exit code {r.returncode}):\n"
                          f"{tail}")


def converter_env() -> Path:
    """The tensorflowjs tool environment's Python, creating the environment on first use (logged, pinned)."""
    venv = tools_dir() / "tfjs-venv"
    spec = _spec()
    marker = venv / MARKER
    with _lock(tools_dir() / "tfjs-venv.lock"):
        if marker.is_file():
            try:
                if json.loads(marker.read_text()).get("spec") == spec and _venv_python(venv).exists():
                    return _venv_python(venv)
            except ValueError:
                pass
        if venv.exists():
            LOGGER.warning(f"TF.js converter environment at {venv} is incomplete or outdated; recreating it")
            shutil.rmtree(venv)
        LOGGER.warning(f"format=tfjs: creating the TF.js converter environment at {venv} (one time; downloads about "
                       f"0.8 GB, 2.7 GB on disk: {TOOL_TF}, {', '.join(TOOL_PACKAGES)}). Your own environment is not "
                       f"modified. Set JAXYOLO_TOOLS_DIR to put it elsewhere.")
        try:
            _run([_base_python(), "-m", "venv", str(venv)], "create the virtual environment")
            py = str(_venv_python(venv))
            pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet"]
            _run(pip + [TOOL_TF], f"install {TOOL_TF} with its dependencies")
            _run(pip + ["--no-deps", *TOOL_PACKAGES], "install tensorflowjs and the modules it imports (--no-deps)")
            _run([py, "-c", "import tensorflowjs"], "check that tensorflowjs imports")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        marker.write_text(json.dumps({"spec": spec, "python": _base_python()}, indent=1))
        LOGGER.warning(f"TF.js converter environment ready at {venv}")
        return _venv_python(venv)


_CONVERT = """
import json, sys
from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model
saved_model, out, meta = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
convert_tf_saved_model(saved_model, out, signature_def="serving_default", saved_model_tags="serve",
                       metadata={"metadata": meta})
"""


def convert_saved_model(saved_model_dir: Path, out: Path, meta: dict) -> None:
    """Run tensorflowjs' SavedModel -> graph-model conversion in the tool environment."""
    py = converter_env()
    with tempfile.TemporaryDirectory(prefix="tfjs_") as d:
        mfile = Path(d) / "meta.json"
        mfile.write_text(json.dumps(meta))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        r = subprocess.run([str(py), "-c", _CONVERT, str(saved_model_dir), str(out), str(mfile)], capture_output=True,
                           text=True, env=env, cwd=d)
    if r.returncode != 0 or not (Path(out) / "model.json").is_file():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise ExportError(f"tensorflowjs could not convert the SavedModel (exit code {r.returncode}):\n{tail}")


def export(yolo, out: Path, *, imgsz, batch, meta) -> None:
    from converters.export import saved_model
    from converters.export.metadata import write_metadata_yaml

    out = Path(out)
    if int(batch) != 1:
        LOGGER.warning(f"format=tfjs is exported with a static batch of 1 (batch={batch} ignored)")
    meta = {**meta, "batch": 1, "input_layout": "NHWC", "args": {**meta.get("args", {}), "batch": 1}}
    with tempfile.TemporaryDirectory(prefix="tfjs_", dir=out.parent) as d:
        sm = Path(d) / "model_saved_model"
        saved_model.build(yolo, sm, imgsz=imgsz, batch=1, group_conv=False)  # TF.js has no grouped Conv2D
        convert_saved_model(sm, out, meta)
    write_metadata_yaml(out, meta)


def load(path: Path):
    raise ExportError(f"{path}: a TF.js web model runs in JavaScript (@tensorflow/tfjs: tf.loadGraphModel), not in "
                      f"Python; use the SavedModel, GraphDef or TFLite export for Python inference")
