"""The torch mirror of Ultralytics' classification modules: ``layers.py``'s classes over real ``torch.nn``.

Used to run the model in torch (the PyTorch-frontend exports, tests against Ultralytics) and, in the tests, as the
reference ``torch.save`` writes. Writing ``.pt`` files does not need it: ``save.py`` builds the same tree over the
torch-free stand-ins of ``torchless.py``.

``ultralytics_pickling()`` makes the classes picklable under the Ultralytics paths for the duration of a
``torch.save`` only; ``sys.modules`` and the classes' ``__module__`` are restored afterwards.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from converters.torch_weights.layers import ULTRALYTICS_MODULE, build_layers, check_fit, define
from converters.torch_weights.mapping import variables_to_state_dict

_CLASSES = define(nn, torch)
for _c in _CLASSES.values():
    _c.__module__ = __name__
Conv, Classify, ClassificationModel = _CLASSES["Conv"], _CLASSES["Classify"], _CLASSES["ClassificationModel"]
MIRROR = {k: c for k, c in _CLASSES.items() if k != "ClassificationModel"}


def build_mirror(specs, cfg: dict, names: Mapping[int, str], variables: Mapping | None = None):
    """A mirror ``ClassificationModel`` for resolved layer specs (``module.specs``), loaded with ``variables`` if given,
    in eval mode (``layers.build_layers``)."""
    model = build_layers(_CLASSES, specs, cfg, names)
    if variables is not None:
        load_variables(model, variables)
    return model.eval()


def load_variables(model: nn.Module, variables: Mapping) -> None:
    """Copy Flax ``{'params', 'batch_stats'}`` into a mirror; every tensor must fit (``num_batches_tracked`` aside)."""
    sd = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in variables_to_state_dict(variables).items()}
    check_fit({k: v.shape for k, v in model.state_dict().items()}, {k: v.shape for k, v in sd.items()})
    model.load_state_dict(sd, strict=False)


_PICKLE_LOCK = threading.RLock()


@contextlib.contextmanager
def ultralytics_pickling() -> Iterator[None]:
    """While active, the mirror classes pickle as ``ultralytics.nn...`` classes; everything is restored on exit.

    Pickle finds a class through ``sys.modules[cls.__module__]``, so the classes' ``__module__`` is pointed at the
    Ultralytics paths and those paths are backed by stand-in modules (replacing, for the duration only, the real ones if
    ultralytics happens to be imported).
    """
    with _PICKLE_LOCK:
        saved_modules = {}
        saved_owner = {name: cls.__module__ for name, cls in _CLASSES.items()}
        leaves: dict[str, types.ModuleType] = {}
        for name, path in ULTRALYTICS_MODULE.items():
            leaves.setdefault(path, types.ModuleType(path))
            setattr(leaves[path], name, _CLASSES[name])
        parents = {p.rsplit(".", k)[0] for p in leaves for k in range(1, p.count(".") + 1)}
        try:
            for path in sorted(parents):
                if path not in sys.modules:  # a stand-in package, only where nothing is imported yet
                    saved_modules[path] = None
                    pkg = types.ModuleType(path)
                    pkg.__path__ = []
                    sys.modules[path] = pkg
            for path, mod in leaves.items():
                saved_modules[path] = sys.modules.get(path)
                sys.modules[path] = mod
            for name, cls in _CLASSES.items():
                cls.__module__ = ULTRALYTICS_MODULE[name]
            yield
        finally:
            for name, cls in _CLASSES.items():
                cls.__module__ = saved_owner[name]
            for path, mod in saved_modules.items():
                if mod is None:
                    sys.modules.pop(path, None)
                else:
                    sys.modules[path] = mod
