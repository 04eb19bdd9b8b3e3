"""TorchScript export: ``torch.jit.trace`` of the torch mirror (BatchNorm folded), metadata in ``config.txt``.

The traced module takes float32 NCHW RGB [0, 1] images and returns (B, nc) softmax probabilities, like Ultralytics'
``.torchscript``; the metadata dict is stored as JSON in the archive's ``extra/config.txt`` (``_extra_files``), which
is where Ultralytics' ``AutoBackend`` reads names/imgsz/task from. ``optimize=True`` runs
``torch.utils.mobile_optimizer.optimize_for_mobile`` (the file stays a regular TorchScript archive); it needs a torch
build with XNNPACK, which the PyPI CUDA wheels used here lack (a clear ExportError then).
The trace is shape-generic: other batch sizes and image sizes run too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from converters.export.core import ExportError, require
from jaxyolo.engine.backends import Backend


def trace(yolo, imgsz, batch: int):
    """The traced TorchScript module (shared with formats that start from a TorchScript trace)."""
    torch = require("torch", "torchscript", "pt")
    from converters.export.torch_graph import example_input, inference_module

    model = inference_module(yolo)
    im = example_input(batch, imgsz, int(yolo.cfg.get("channels", 3)))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(model, im, strict=False, check_trace=False), im


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, optimize: bool = False, **_) -> None:
    torch = require("torch", "torchscript", "pt")
    ts, _im = trace(yolo, imgsz, batch)
    if optimize:
        from torch.utils.mobile_optimizer import optimize_for_mobile

        try:
            ts = optimize_for_mobile(ts)
        except RuntimeError as e:  # e.g. torch builds without XNNPACK (the PyPI CUDA wheels)
            raise ExportError(f"optimize=True failed: torch's mobile optimizer needs a torch build with XNNPACK "
                              f"({str(e).strip().splitlines()[-1][:200]})") from None
    torch.jit.save(ts, str(out), _extra_files={"config.txt": json.dumps(meta)})


def load(path: Path) -> Backend:
    torch = require("torch", "torchscript", "pt")
    extra = {"config.txt": ""}
    model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
    meta = json.loads(extra["config.txt"] or "{}")
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or (224, 224))

    def run(x):
        with torch.no_grad():
            y = model(torch.from_numpy(x))
        return (y[0] if isinstance(y, (list, tuple)) else y).float().numpy()

    return Backend("torchscript", names, (int(imgsz[0]), int(imgsz[1])), run, batch=None, meta=meta)
