"""PaddlePaddle export: TorchScript trace of the torch mirror (BatchNorm folded) -> X2Paddle ``pytorch2paddle``.

Output directory ``<stem>_paddle_model/`` with ``inference_model/model.json`` + ``model.pdiparams`` (Paddle 3 static
graph, what Ultralytics' ``AutoBackend`` and ``paddle.inference`` load), X2Paddle's ``x2paddle_code.py`` /
``model.pdparams`` and ``metadata.yaml``. The graph has a static batch (the export ``batch``; YOLO11's attention
reshapes are traced with it), so ``load`` feeds other batch sizes in chunks.

Process isolation. Importing TensorFlow >= 2.20 before Paddle crashes the process (segfault inside ``import paddle``),
and jaxyolo's input pipeline, the TF exporters, coremltools and others import TensorFlow. So neither the conversion
nor inference runs Paddle in the calling process: both run in a fresh ``python -m converters.export.paddle`` child
that imports Paddle first. Inference keeps one child per loaded model and exchanges ``.npy`` arrays over its pipes.
X2Paddle is called with ``disable_feedback=True`` (it otherwise reports to Baidu).

Packages: ``paddlepaddle`` and ``x2paddle`` (the ``paddle`` extra). X2Paddle also needs ``six`` and ``requests`` without
declaring them; paddlepaddle pins ``opt_einsum==3.3.0`` (JAX needs >=3.3, and 3.4 works with Paddle), so install it
with ``pip install --no-deps paddlepaddle x2paddle`` next to JAX.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np

from converters.export.core import ExportError
from converters.export.metadata import read_metadata_yaml, write_metadata_yaml
from jaxyolo.engine.backends import Backend

TIMEOUT_S = 600


def _check_installed():
    import importlib.util

    missing = [m for m in ("paddle", "x2paddle") if importlib.util.find_spec(m) is None]
    if missing:
        pip = {"paddle": "paddlepaddle", "x2paddle": "x2paddle"}
        raise ExportError(f"format=paddle needs {', '.join(pip[m] for m in missing)}; install it with "
                          f"pip install 'jaxyolo[paddle]' (or pip install --no-deps paddlepaddle x2paddle six requests "
                          f"next to JAX)")


def _child_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.setdefault("GLOG_minloglevel", "2")
    return env


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, **_) -> None:
    _check_installed()
    import torch

    from converters.export.torchscript import trace

    ts, im = trace(yolo, imgsz, batch)
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent) as d:
        pt = Path(d) / "model.torchscript"
        torch.jit.save(ts, str(pt))
        cmd = [sys.executable, "-m", "converters.export.paddle", "convert", str(pt), str(out),
               ",".join(str(s) for s in im.shape)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ExportError(f"X2Paddle conversion did not finish within {TIMEOUT_S} s") from None
    model_dir = out / "inference_model"
    if r.returncode != 0 or not (model_dir / "model.json").is_file() or not (model_dir / "model.pdiparams").is_file():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise ExportError(f"X2Paddle conversion failed (exit {r.returncode}):\n{tail}")
    write_metadata_yaml(out, meta)


def _model_files(path: Path) -> tuple[Path, Path]:
    model = next(iter(sorted(Path(path).rglob("*.json"))), None)
    params = next(iter(sorted(Path(path).rglob("*.pdiparams"))), None)
    if model is None or params is None:
        raise FileNotFoundError(f"{path}: a Paddle model needs a .json graph and a .pdiparams file")
    return model, params


def _send(f, a: np.ndarray) -> None:
    """Frame a float32 array on a pipe: ndim (1 byte), shape (int64 each), raw data (np.save/np.load need seeks)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    f.write(struct.pack(f"<B{a.ndim}q", a.ndim, *a.shape) + a.tobytes())
    f.flush()


def _read_exactly(f, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("pipe closed")
        buf += chunk
    return buf


def _recv(f) -> np.ndarray:
    ndim = _read_exactly(f, 1)[0]
    shape = struct.unpack(f"<{ndim}q", _read_exactly(f, 8 * ndim))
    return np.frombuffer(_read_exactly(f, 4 * int(np.prod(shape))), dtype=np.float32).reshape(shape)


class _Worker:
    """A ``python -m converters.export.paddle serve DIR`` child: send an NCHW batch, get (B, nc) probabilities back."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "converters.export.paddle", "serve", str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_child_env())
        self.lock = threading.Lock()
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        weakref.finalize(self, _Worker._stop, self.proc)
        ready = self.proc.stdout.readline()
        if ready.strip() != b"ready":
            self.proc.wait(timeout=30)
            raise ExportError(f"{path}: the Paddle inference process failed to start:\n" + "\n".join(self.stderr_tail))

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.decode(errors="replace").rstrip()])[-20:]

    @staticmethod
    def _stop(proc):
        if proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except Exception:
                proc.kill()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            try:
                _send(self.proc.stdin, x)
                return _recv(self.proc.stdout)
            except (OSError, ValueError, EOFError) as e:
                raise RuntimeError("the Paddle inference process failed:\n" + "\n".join(self.stderr_tail)) from e


def load(path: Path) -> Backend:
    _check_installed()
    path = Path(path)
    meta = read_metadata_yaml(path)
    _model_files(path)
    worker = _Worker(path)
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or (224, 224))
    return Backend("paddle", names, (int(imgsz[0]), int(imgsz[1])), worker, batch=int(meta.get("batch") or 1),
                   meta=meta)


# ----------------------------------------------------------------------------------------------------------------------
# Child-process side (Paddle is imported here first, before anything can import TensorFlow)
# ----------------------------------------------------------------------------------------------------------------------

def _convert(ts_path: str, save_dir: str, shape: str) -> None:
    import paddle  # noqa: F401  (first)
    import torch
    from x2paddle.convert import pytorch2paddle

    module = torch.jit.load(ts_path, map_location="cpu").eval()
    im = torch.rand(*[int(s) for s in shape.split(",")])
    pytorch2paddle(module=module, save_dir=save_dir, jit_type="trace", input_examples=[im], disable_feedback=True)


def _serve(model_dir: str) -> None:
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything Paddle prints goes to stderr, never into the array stream
    sys.stdout = sys.stderr
    import paddle.inference as pdi

    model, params = _model_files(Path(model_dir))
    config = pdi.Config(str(model), str(params))
    config.disable_gpu()
    config.disable_glog_info()
    predictor = pdi.create_predictor(config)
    inp = predictor.get_input_handle(predictor.get_input_names()[0])
    out_name = predictor.get_output_names()[0]
    proto_out.write(b"ready\n")
    proto_out.flush()
    stdin = sys.stdin.buffer
    while True:
        try:
            x = _recv(stdin)
        except EOFError:
            return  # parent closed the pipe
        inp.reshape(list(x.shape))
        inp.copy_from_cpu(x)
        predictor.run()
        _send(proto_out, predictor.get_output_handle(out_name).copy_to_cpu())


if __name__ == "__main__":
    if sys.argv[1] == "convert":
        _convert(*sys.argv[2:5])
    elif sys.argv[1] == "serve":
        _serve(sys.argv[2])
    else:
        raise SystemExit(f"usage: python -m {__spec__.name} convert TS SAVE_DIR SHAPE | serve MODEL_DIR")
