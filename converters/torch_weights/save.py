"""Write Flax weights as an Ultralytics classification ``.pt`` checkpoint (neither torch nor ultralytics needed).

The file holds what Ultralytics' own ``strip_optimizer`` leaves in a ``best.pt``: a pickled ``ClassificationModel``
(half precision by default) plus ``train_args`` with ``task='classify'`` and ``imgsz``, so that the real
``ultralytics.YOLO('x.pt')`` loads it as a classification model with our class names and image size. The model is
built from ``torchless`` stand-ins and written by ``writer.write_checkpoint`` in ``torch.save``'s format.
"""

from __future__ import annotations

import datetime
from pathlib import Path, PurePath
from typing import Any, Mapping

import numpy as np

from jaxyolo import __version__
from jaxyolo.utils.files import atomic_write

# The Ultralytics release whose checkpoint layout this file follows (what Ultralytics writes as "version").
ULTRALYTICS_FORMAT_VERSION = "8.4.190"
_RESERVED = ("model", "ema")


def to_plain(obj: Any) -> Any:
    """Arrays/scalars (numpy, JAX, torch) -> Python numbers/lists, paths and unknown objects -> str, recursively.

    Only what the restricted reader accepts ends up in the file (no pickled classes from other packages).
    """
    if isinstance(obj, Mapping):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and type(obj) is tuple:
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (str, int, float, bool, type(None))):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__") and hasattr(obj, "shape"):  # numpy / JAX / torch arrays
        a = np.asarray(obj)
        return a.item() if a.ndim == 0 else a.tolist()
    if isinstance(obj, (datetime.date, datetime.time, datetime.timedelta)):
        return obj
    return str(obj)  # anything else (enums, config objects, ...) as text, so the file stays readable anywhere


def save_pt(path: str | Path, module, variables: Mapping, cfg: dict, names: Mapping[int, str] | list,
            train_args: Mapping | None = None, half: bool = True, **extra) -> Path:
    """Write ``module``/``variables`` as an Ultralytics classification checkpoint at ``path``; returns the path.

    ``module`` is a built ``ClassificationModel`` (its ``specs`` define the layers), ``cfg`` the model dict (stored as
    ``model.yaml``), ``names`` the class names. ``train_args`` is merged over ``{'task': 'classify', 'imgsz': 224,
    'model': <yaml file>}``. ``half`` stores float16 like Ultralytics (``False`` keeps float32, bit-exact). Extra
    keyword arguments (``epoch``, ``best_fitness``, ``train_metrics``, ``train_results``, ...) become top-level keys.
    The file is written to a temporary file in the same folder and moved into place, so it is never half-written.
    """
    from converters.torch_weights import torchless, writer

    bad = [k for k in extra if k in _RESERVED]
    if bad:
        raise TypeError(f"save_pt: {', '.join(bad)} cannot be passed as extra keys (the model is written from "
                        f"module/variables)")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    model = torchless.build_model(module.specs, cfg, names, variables, half=half)
    args = {"task": "classify", "imgsz": 224, "model": cfg.get("yaml_file")}
    args.update(to_plain(dict(train_args or {})))
    args["task"] = "classify"
    ckpt = {
        "date": datetime.datetime.now().isoformat(),
        "version": ULTRALYTICS_FORMAT_VERSION,
        "license": "written by jaxyolo (Apache-2.0 code); the weights keep the license of their source",
        "docs": "https://docs.ultralytics.com/tasks/classify/",
        "epoch": -1,
        "best_fitness": None,
        "model": model,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": args,
        "writer": f"jaxyolo {__version__}",
    }
    ckpt.update(to_plain(extra))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        writer.write_checkpoint(f, ckpt)
    return path
