"""ncnn export: TorchScript trace of the torch mirror (BatchNorm folded) -> the ``pnnx`` converter -> ncnn param/bin.

Output directory ``<stem>_ncnn_model/`` with ``model.ncnn.param``, ``model.ncnn.bin``, ``model_ncnn.py`` (pnnx's
example script) and ``metadata.yaml`` -- the layout Ultralytics' exporter writes and its ``AutoBackend`` reads. The
graph's input blob is ``in0`` (one CHW image, RGB [0, 1]), its output ``out0`` (nc softmax probabilities); ncnn runs
one image per extractor, so ``load`` loops over the batch.

``pnnx`` is the PyPI package of the converter binary; install it with ``pip install --no-deps pnnx ncnn`` (its declared
dependencies pull a CUDA torch). ``half=True`` stores fp16 weights (pnnx's ``fp16=1``); fp32 is the default here, and
``load`` disables ncnn's fp16/bf16 storage and arithmetic so results match the JAX model to ~1e-7.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from converters.export.core import ExportError, require
from converters.export.metadata import read_metadata_yaml, write_metadata_yaml
from jaxyolo.engine.backends import Backend


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, half: bool = False, **_) -> None:
    pnnx = require("pnnx", "ncnn", "export")
    torch = require("torch", "ncnn", "export")
    from converters.export.torchscript import trace

    ts, im = trace(yolo, imgsz, 1)  # ncnn graphs are per image
    out = Path(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as d:
        d = Path(d)
        pt = d / "model.pt"
        torch.jit.save(ts, str(pt))
        cmd = [pnnx.EXEC_PATH, str(pt), f"inputshape=[{','.join(str(s) for s in im.shape)}]f32", "device=cpu",
               f"pnnxparam={d / 'model.pnnx.param'}", f"pnnxbin={d / 'model.pnnx.bin'}",
               f"pnnxpy={d / 'model_pnnx.py'}", f"pnnxonnx={d / 'model.pnnx.onnx'}",
               f"ncnnparam={out / 'model.ncnn.param'}", f"ncnnbin={out / 'model.ncnn.bin'}",
               f"ncnnpy={out / 'model_ncnn.py'}", f"fp16={int(bool(half))}"]
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
    if r.returncode != 0 or not (out / "model.ncnn.param").is_file() or not (out / "model.ncnn.bin").is_file():
        tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
        raise ExportError(f"pnnx failed (exit {r.returncode}):\n" + "\n".join(tail))
    write_metadata_yaml(out, meta)


def load(path: Path) -> Backend:
    ncnn = require("ncnn", "ncnn", "export")
    path = Path(path)
    meta = read_metadata_yaml(path)
    net = ncnn.Net()
    for opt in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
        if hasattr(net.opt, opt):
            setattr(net.opt, opt, False)
    if net.load_param(str(path / "model.ncnn.param")) != 0 or net.load_model(str(path / "model.ncnn.bin")) != 0:
        raise ExportError(f"{path}: ncnn could not load model.ncnn.param/bin")
    in_name, out_name = net.input_names()[0], net.output_names()[0]

    def run(x):
        outs = []
        for img in x:
            img = np.ascontiguousarray(img, dtype=np.float32)  # ncnn.Mat does not own it: keep it alive
            with net.create_extractor() as ex:
                ex.input(in_name, ncnn.Mat(img))
                _, y = ex.extract(out_name)
                outs.append(np.array(y, dtype=np.float32).reshape(-1))
        return np.stack(outs)

    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or (224, 224))
    return Backend("ncnn", names, (int(imgsz[0]), int(imgsz[1])), run, batch=None, meta=meta)
