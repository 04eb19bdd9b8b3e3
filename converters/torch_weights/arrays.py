"""Read a ``.pt`` checkpoint without torch: the restricted unpickler of ``unpickler.py`` with tensors as numpy arrays.

Importing torch costs ~2 s of every ``jaxyolo classify val|predict|export model=x.pt`` and ``YOLO('x.pt')``, and
reading weights needs none of it. A zip-format ``torch.save`` file is ``<name>/data.pkl`` (the pickle),
``<name>/data/<key>`` (each storage's raw bytes) and ``<name>/byteorder``; the pickle refers to a storage by a
persistent id ``('storage', <storage type>, key, location, numel)`` and rebuilds each tensor with
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``. Here those globals (and only those, on the
same allow-list) map to functions that return numpy arrays: a copy of the strided view of the storage, after checking
that the view lies inside it. Parameters come back as their arrays, ``torch.Size`` as a tuple, dtypes and devices as
numpy dtypes and strings. bfloat16 storages read as ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from converters.torch_weights.unpickler import (CheckpointFormatError, UnsafeCheckpointError, _check_container,
                                                make_unpickler_class)

__all__ = ["read_checkpoint_arrays", "tensor_globals"]


def _dtypes() -> dict[str, np.dtype]:
    import ml_dtypes

    return {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
            "bfloat16": np.dtype(ml_dtypes.bfloat16), "int64": np.dtype(np.int64), "int32": np.dtype(np.int32),
            "int16": np.dtype(np.int16), "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
            "bool": np.dtype(np.bool_), "complex64": np.dtype(np.complex64), "complex128": np.dtype(np.complex128)}


# torch's legacy typed storage classes (how tensors name their storage's element type in a pickle)
_STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
             "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8"}
# torch dtype attributes and their aliases
_TORCH_DTYPES = {"float64": "float64", "double": "float64", "float32": "float32", "float": "float32",
                 "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64", "long": "int64",
                 "int32": "int32", "int": "int32", "int16": "int16", "short": "int16", "int8": "int8",
                 "uint8": "uint8", "bool": "bool", "complex64": "complex64", "cfloat": "complex64",
                 "complex128": "complex128", "cdouble": "complex128"}


class StorageType:
    """A pickled storage class (``torch.FloatStorage``, ...): only its element dtype matters."""

    def __init__(self, name: str, dtype: np.dtype):
        self.name, self.dtype = name, dtype


class TensorType:
    """``torch.Tensor`` / ``torch.nn.Parameter`` as ``_rebuild_from_type_v2``'s target type: the array stays."""


def _rebuild(storage, offset, size, stride, *_rest, dtype=None):
    if not isinstance(storage, np.ndarray):
        raise CheckpointFormatError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
    if dtype is not None and storage.dtype != dtype:
        storage = storage.view(dtype)
    size, stride, offset = tuple(int(v) for v in size), tuple(int(v) for v in stride), int(offset)
    if len(size) != len(stride) or offset < 0 or any(v < 0 for v in size + stride):
        raise CheckpointFormatError(f"a tensor has an invalid layout (offset {offset}, size {size}, stride {stride})")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(storage):
        raise CheckpointFormatError(f"a tensor (offset {offset}, size {size}, stride {stride}) reaches past its "
                                    f"storage of {len(storage)} elements")
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * storage.itemsize for s in stride),
                                           writeable=False)
    return np.array(view)


def _rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_rest):
    return _rebuild(storage, offset, size, stride, dtype=dtype)


def _rebuild_parameter(data, *_rest):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if not callable(func) or not isinstance(args, tuple):
        raise CheckpointFormatError("a tensor of a subclass type could not be rebuilt")
    return func(*args)


def _size(*args):
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _device(*args):
    return ":".join(str(a) for a in args)


def tensor_globals() -> dict[str, Any]:
    """The tensor part of the allow-list (``unpickler._allowed('numpy')``): torch names -> numpy rebuilders."""
    dt = _dtypes()
    out: dict[str, Any] = {
        "torch.Size": _size, "torch.device": _device, "torch.Tensor": TensorType,
        "torch.nn.parameter.Parameter": TensorType, "torch.serialization._get_layout": str,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
        "torch._utils._rebuild_tensor": _rebuild, "torch._utils._rebuild_tensor_v2": _rebuild,
        "torch._utils._rebuild_tensor_v3": _rebuild_v3, "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    }
    out.update({f"torch.{k}": dt[v] for k, v in _TORCH_DTYPES.items()})
    out.update({f"torch.{k}": StorageType(k, dt[v]) for k, v in _STORAGES.items()})
    out["torch.storage.UntypedStorage"] = StorageType("UntypedStorage", dt["uint8"])
    out["torch.storage.TypedStorage"] = StorageType("TypedStorage", dt["uint8"])
    return out


def read_checkpoint_arrays(path: str | Path) -> Any:
    """``unpickler.read_checkpoint`` without torch: the same objects, the same allow-list and errors, with every
    tensor a numpy array (a copy, in its stored dtype)."""
    path = Path(path)
    _check_container(path)
    base = make_unpickler_class(str(path), "numpy")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = next(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
            prefix = pkl[: -len("data.pkl")]
            big = (prefix + "byteorder") in names and z.read(prefix + "byteorder").strip() == b"big"
            storages: dict[str, np.ndarray] = {}

            class Unpickler(base):
                def persistent_load(self, pid):
                    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                            and isinstance(pid[1], StorageType)):
                        raise CheckpointFormatError(f"{path}: unexpected persistent id {pid!r:.80}")
                    _, st, key, _location, numel = pid
                    key = str(key)
                    if key not in storages:
                        dtype = st.dtype.newbyteorder(">") if big and st.dtype.itemsize > 1 else st.dtype
                        raw = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype)
                        if len(raw) < int(numel):
                            raise CheckpointFormatError(f"{path}: storage {key} holds {len(raw)} elements, the "
                                                        f"pickle says {numel}")
                        storages[key] = raw.astype(st.dtype) if big else raw
                    return storages[key]

            with z.open(pkl) as f:
                return Unpickler(f).load()
    except UnsafeCheckpointError:
        raise
    except CheckpointFormatError as e:  # the tensor rebuilders do not know the file: name it
        if str(path) in str(e):
            raise
        raise CheckpointFormatError(f"{path}: {e}") from None
    except Exception as e:  # zip and pickle raise many types for truncated/corrupt data
        raise CheckpointFormatError(f"{path}: corrupt or truncated checkpoint: {type(e).__name__}: {e}") from e
