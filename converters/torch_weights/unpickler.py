"""Read Ultralytics ``.pt`` checkpoints without running code from them, and without ultralytics or torchvision.

A ``.pt`` file is a zip archive whose ``data.pkl`` is a pickle; a pickle can name any importable callable and call it.
``read_checkpoint`` runs ``torch.load`` with a pickle module whose ``Unpickler.find_class`` resolves only an allow-list:

* torch's tensor/storage rebuild functions, dtypes, ``torch.Size``/``torch.device`` (what tensors need);
* plain containers and values: ``collections.OrderedDict``, ``set``, ``frozenset``, ``bytearray``, ``complex``, ...,
  ``types.SimpleNamespace``, ``pathlib`` paths (as pure paths: nothing touches the file system), ``datetime`` values,
  numpy scalars, dtypes and arrays;
* classes under ``ultralytics.*`` (legacy ``ultralytics.yolo.*`` included), ``torch.nn.modules.*`` and
  ``torchvision.*``, each replaced by an *inert* stand-in class: pickle fills its ``__dict__`` and nothing else happens,
  so a ``ClassificationModel`` comes back as a tree of plain objects holding ``_modules``/``_parameters``/``_buffers``;
* ``builtins.getattr`` only on those inert classes (how enums such as ``InterpolationMode.BILINEAR`` are pickled).

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``posix.system``, ...) raises
``UnsafeCheckpointError`` naming the global and the file, before anything from the pickle has been called.
"""

from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import datetime
import io
import pathlib
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["CheckpointFormatError", "UnsafeCheckpointError", "InertObject", "read_checkpoint", "origin_of",
           "restricted_pickle_module"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle references a global outside the allow-list; nothing from it was run."""


class CheckpointFormatError(ValueError):
    """The file is not a readable PyTorch/Ultralytics checkpoint (truncated, not a zip, a TorchScript archive, ...)."""


# ----------------------------------------------------------------------------------------------------------------------
# Inert stand-ins for pickled classes we must not (or cannot) import
# ----------------------------------------------------------------------------------------------------------------------

class InertObject:
    """Receives a pickled object's state and nothing more: no methods from the original class exist here."""

    _inert_origin = "?"

    def __init__(self, *args, **kwargs):  # pickle REDUCE with arguments (e.g. an enum value), kept for inspection
        self.__dict__["_inert_args"] = args
        if kwargs:
            self.__dict__["_inert_kwargs"] = kwargs

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state, slots = state  # (dict state, slot state) as pickle writes it for classes with __slots__
            self.__dict__.update(slots or {})
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_inert_state"] = state

    def __repr__(self) -> str:
        return f"<inert {self._inert_origin}>"


class InertMember(InertObject):
    """``getattr(<inert class>, name)``, e.g. ``InterpolationMode.BILINEAR``; ``name`` is kept in ``.name``."""


_INERT_CLASSES: dict[str, type] = {}


def inert_class(module: str, name: str) -> type:
    """A (cached) stand-in class that prints as ``module.name`` and only stores state."""
    key = f"{module}.{name}"
    cls = _INERT_CLASSES.get(key)
    if cls is None:
        cls = type(name, (InertObject,), {"__module__": module, "__qualname__": name, "_inert_origin": key})
        _INERT_CLASSES[key] = cls
    return cls


def origin_of(obj: Any) -> str:
    """``'ultralytics.nn.modules.head.Classify'`` for an inert object (or class), else its real qualified type name."""
    if isinstance(obj, type) and issubclass(obj, InertObject):
        return obj._inert_origin
    if isinstance(obj, InertObject):
        return type(obj)._inert_origin
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


# ----------------------------------------------------------------------------------------------------------------------
# The allow-list
# ----------------------------------------------------------------------------------------------------------------------

_INERT_PREFIXES = ("ultralytics.", "torch.nn.modules.", "torchvision.")
_PLAIN = {
    "collections.OrderedDict": collections.OrderedDict,
    "collections.Counter": collections.Counter,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.bytearray": bytearray,
    "builtins.complex": complex,
    "builtins.slice": slice,
    "builtins.object": object,
    "builtins.int": int,
    "builtins.float": float,
    "builtins.bool": bool,
    "builtins.str": str,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "builtins.dict": dict,
    "copyreg._reconstructor": copyreg._reconstructor,  # calls only base.__new__/__init__ of classes allowed here
    "types.SimpleNamespace": types.SimpleNamespace,
    # paths come back as pure paths: they never touch the file system and load on any OS
    "pathlib.Path": pathlib.PurePosixPath,
    "pathlib.PurePath": pathlib.PurePosixPath,
    "pathlib.PosixPath": pathlib.PurePosixPath,
    "pathlib.PurePosixPath": pathlib.PurePosixPath,
    "pathlib.WindowsPath": pathlib.PureWindowsPath,
    "pathlib.PureWindowsPath": pathlib.PureWindowsPath,
    # Python >= 3.13 defines the concrete path classes in pathlib._local
    "pathlib._local.Path": pathlib.PurePosixPath,
    "pathlib._local.PosixPath": pathlib.PurePosixPath,
    "pathlib._local.WindowsPath": pathlib.PureWindowsPath,
    "pathlib._local.PurePosixPath": pathlib.PurePosixPath,
    "pathlib._local.PureWindowsPath": pathlib.PureWindowsPath,
    "datetime.datetime": datetime.datetime,
    "datetime.date": datetime.date,
    "datetime.time": datetime.time,
    "datetime.timedelta": datetime.timedelta,
    "datetime.timezone": datetime.timezone,
}


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Protocol-2 pickles store ``bytes`` as ``_codecs.encode(text, 'latin1')``; allow exactly that."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "utf-8",
                                                                                  "utf8"):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed on text with latin1/utf-8, got {encoding!r}")
    return obj.encode(encoding, errors)


def _numpy_globals() -> dict[str, Any]:
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[f"{mod}.scalar"] = multiarray.scalar
        out[f"{mod}._reconstruct"] = multiarray._reconstruct
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            v = getattr(dtypes, name)
            if isinstance(v, type) and issubclass(v, np.dtype):
                out[f"numpy.dtypes.{name}"] = v
    return out


def _torch_globals() -> dict[str, Any]:
    import torch
    import torch._utils as tu

    out: dict[str, Any] = {
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.Tensor": torch.Tensor,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch.serialization._get_layout": torch.serialization._get_layout,
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
    }
    for fn in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
               "_rebuild_parameter_with_state"):
        if hasattr(tu, fn):
            out[f"torch._utils.{fn}"] = getattr(tu, fn)
    for name, v in list(vars(torch).items()):
        if isinstance(v, torch.dtype):
            out[f"torch.{name}"] = v
        elif name.endswith("Storage") and isinstance(v, type):  # legacy typed storages
            try:
                out[f"torch.{name}"] = (v if name in ("UntypedStorage", "TypedStorage")
                                        else torch.serialization.StorageType(name))
            except (KeyError, RuntimeError):
                pass
    out["torch.storage.UntypedStorage"] = torch.UntypedStorage
    out["torch.storage.TypedStorage"] = torch.storage.TypedStorage
    return out


_ALLOWED: dict[str, dict[str, Any]] = {}


def _allowed(tensors: str = "torch") -> dict[str, Any]:
    """The allow-list; its tensor globals rebuild torch tensors (``'torch'``) or numpy arrays (``'numpy'``,
    ``arrays.tensor_globals``: torch is never imported)."""
    if tensors not in _ALLOWED:
        if tensors == "torch":
            extra = _torch_globals()
        else:
            from converters.torch_weights.arrays import tensor_globals

            extra = tensor_globals()
        _ALLOWED[tensors] = {**_PLAIN, "_codecs.encode": _codecs_encode, **_numpy_globals(), **extra}
    return _ALLOWED[tensors]


def _is_identifier_path(module: str, name: str) -> bool:
    return all(p.isidentifier() for p in module.split(".")) and name.isidentifier()


def make_unpickler_class(source: str, tensors: str = "torch") -> type:
    """An ``Unpickler`` class whose errors name ``source`` (the checkpoint path); ``tensors``: see ``_allowed``."""

    def safe_getattr(obj, name, *default):
        if isinstance(obj, type) and issubclass(obj, InertObject) and isinstance(name, str) \
                and name.isidentifier() and not name.startswith("_"):
            member = InertMember(name)
            member.__dict__.update(owner=obj._inert_origin, name=name)
            return member
        raise UnsafeCheckpointError(
            f"{source}: refusing to load: the checkpoint calls builtins.getattr on {origin_of(obj)!r} "
            f"(attribute {name!r}); only enum members of stubbed classes are allowed. Nothing from the file was run.")

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 pickles use Python 2 names
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            full = f"{module}.{name}"
            if full == "builtins.getattr":
                return safe_getattr
            allowed = _allowed(tensors)
            if full in allowed:
                return allowed[full]
            if full.startswith(_INERT_PREFIXES) and _is_identifier_path(module, name):
                return inert_class(module, name)
            raise UnsafeCheckpointError(
                f"{source}: refusing to load: the checkpoint references the global '{full}', which is not on the "
                f"allow-list of a model checkpoint (tensors, plain containers, Ultralytics/torch.nn/torchvision "
                f"classes). Nothing from the file was run; if you trust the file, load it with torch.load instead.")

    return RestrictedUnpickler


def restricted_pickle_module(source: str) -> types.ModuleType:
    """A stand-in for the ``pickle`` module for ``torch.load(..., pickle_module=...)``."""
    mod = types.ModuleType("jaxyolo_restricted_pickle")
    unpickler = make_unpickler_class(source)
    mod.Unpickler = unpickler
    mod.UnpicklingError = pickle.UnpicklingError

    def load(file, **kwargs):
        return unpickler(file, **kwargs).load()

    def loads(data, **kwargs):
        return unpickler(io.BytesIO(data), **kwargs).load()

    mod.load, mod.loads = load, loads
    return mod


# ----------------------------------------------------------------------------------------------------------------------
# Reading a file
# ----------------------------------------------------------------------------------------------------------------------

def _check_container(path: Path) -> None:
    """Fail early, with the file named, on anything that is not a zip-format ``torch.save`` file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFormatError(f"{path}: empty file, not a PyTorch checkpoint")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] != b"PK":
        if head[:1] == b"\x80":
            raise CheckpointFormatError(
                f"{path}: a raw pickle or a pre-1.6 (non-zip) torch.save file; only zip-format checkpoints "
                f"(torch >= 1.6, as every Ultralytics release writes) can be read safely")
        raise CheckpointFormatError(f"{path}: not a PyTorch checkpoint (expected a zip archive written by torch.save, "
                                    f"the file starts with {head[:12]!r})")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointFormatError(f"{path}: truncated or corrupt checkpoint ({size} bytes; the zip archive cannot "
                                    f"be read: {e})") from None
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointFormatError(f"{path}: a TorchScript archive (torch.jit.save), not a training checkpoint; "
                                    f"load it with torch.jit.load")
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise CheckpointFormatError(f"{path}: a zip archive but not a torch.save checkpoint (no data.pkl)")


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` a ``.pt`` file through the restricted unpickler; returns whatever was saved (usually a dict).

    Ultralytics/torch.nn/torchvision objects come back as inert objects (see ``InertObject``); tensors are real
    CPU ``torch.Tensor``s. Raises ``UnsafeCheckpointError`` or ``CheckpointFormatError`` naming the file.
    """
    import torch

    path = Path(path)
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=restricted_pickle_module(str(path)))
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # torch's zip reader and pickle raise many types for truncated/corrupt data
        raise CheckpointFormatError(f"{path}: corrupt or truncated checkpoint: {type(e).__name__}: {e}") from e
