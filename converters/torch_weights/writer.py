"""Write a zip-format ``torch.save`` file without torch: ``write_checkpoint(f, obj)``.

The layout is what ``torch.save`` writes (PyTorch's serialization format, version 3), so ``torch.load`` -- and
Ultralytics, which calls it -- reads it back as if torch had written it:

* ``archive/data.pkl``: the object, pickled with protocol 2. ``torchless`` stand-ins are written under torch's and
  Ultralytics' class names; a tensor is ``torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False,
  OrderedDict())`` and a parameter ``torch._utils._rebuild_parameter(tensor, requires_grad, OrderedDict())``, as
  torch's own ``__reduce_ex__`` gives them; each storage is a persistent id ``('storage', torch.HalfStorage, key,
  'cpu', numel)``.
* ``archive/data/<key>``: each storage's bytes, little-endian, starting at a multiple of 64 bytes in the file like
  torch's writer (so ``torch.load(mmap=True)`` works too).
* ``archive/version`` (``3``), ``archive/byteorder``, ``archive/.format_version``, ``archive/.storage_alignment``.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import BinaryIO

import numpy as np

from converters.torch_weights import torchless
from converters.torch_weights.layers import ULTRALYTICS_MODULE

ALIGNMENT = 64
_STORAGE = {np.dtype(k): v for k, v in {"float16": "HalfStorage", "float32": "FloatStorage", "float64": "DoubleStorage",
                                         "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage",
                                         "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}.items()}


class _Global:
    """Stands for a global the pickle names but this process never imports (``torch._utils._rebuild_tensor_v2``)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable; it is only ever named, never called here
        raise TypeError(f"{self.module}.{self.name} is not available in this process")


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")
_STORAGE_TYPES = {dt: _Global("torch", name) for dt, name in _STORAGE.items()}


class _Storage:
    def __init__(self, array: np.ndarray):
        self.array = array


class _Pickler(pickle._Pickler):  # the Python pickler: its save_global can be extended, the C one's cannot
    def __init__(self, file, storages: list):
        super().__init__(file, protocol=2)
        self.storages = storages
        self.names = {**{id(c): n for c, n in torchless.TORCH_NAMES.items()},
                      **{id(c): (ULTRALYTICS_MODULE[k], k) for k, c in torchless.CLASSES.items()}}

    def reducer_override(self, obj):
        t = type(obj)
        if t is torchless.Parameter:
            return _REBUILD_PARAMETER, (torchless.Tensor(obj.array), obj.requires_grad, OrderedDict())
        if t is torchless.Tensor:
            a = obj.array
            if a.dtype not in _STORAGE_TYPES:
                raise TypeError(f"cannot write a {a.dtype} tensor")
            stride = tuple(int(np.prod(a.shape[i + 1:])) for i in range(a.ndim))  # C order, as torch's
            return _REBUILD_TENSOR, (_Storage(a), 0, tuple(a.shape), stride, False, OrderedDict())
        if isinstance(obj, torchless.Module):
            return copyreg.__newobj__, (t,), obj.__dict__
        return NotImplemented

    def persistent_id(self, obj):
        if type(obj) is _Storage:
            key = str(len(self.storages))
            self.storages.append(obj.array)
            return "storage", _STORAGE_TYPES[obj.array.dtype], key, "cpu", int(obj.array.size)
        return None

    dispatch = {**pickle._Pickler.dispatch, _Global: lambda self, obj: self.save_global(obj)}

    def save_global(self, obj, name=None):
        ref = (obj.module, obj.name) if type(obj) is _Global else self.names.get(id(obj))
        if ref is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{ref[0]}\n{ref[1]}\n".encode("utf-8"))
        self.memoize(obj)


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A stored (uncompressed) record whose data starts at a multiple of ``ALIGNMENT`` in the file."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    pad = -(zf.fp.tell() + 30 + len(name.encode("utf-8")) + 4) % ALIGNMENT  # 30: fixed part of a local header
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad  # the padding field torch's writer uses
    zf.writestr(info, data)


def write_checkpoint(f: BinaryIO, obj, archive: str = "archive") -> None:
    """Write ``obj`` (plain Python data, numpy-free, with ``torchless`` modules/tensors inside) to the open binary file
    ``f`` as ``torch.save(obj, f)`` would."""
    storages: list[np.ndarray] = []
    buf = io.BytesIO()
    _Pickler(buf, storages).dump(obj)
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        _add(zf, f"{archive}/data.pkl", buf.getvalue())
        _add(zf, f"{archive}/.format_version", b"1")
        _add(zf, f"{archive}/.storage_alignment", str(ALIGNMENT).encode())
        _add(zf, f"{archive}/byteorder", b"little")
        for key, a in enumerate(storages):
            _add(zf, f"{archive}/data/{key}", a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        _add(zf, f"{archive}/version", b"3\n")
