"""Torch-free stand-ins for the torch classes ``layers.py`` uses, so a ``.pt`` is written without importing torch.

A pickled ``nn.Module`` is its class name plus its ``__dict__``; the stand-ins here build that ``__dict__`` exactly
as torch 2.x does (``training``, ``_parameters``, ``_buffers``, the hook dicts, ``_modules`` and each class's own
attributes, e.g. ``Conv2d``'s ``kernel_size``/``_reversed_padding_repeated_twice``), with tensors held as numpy
arrays. ``writer.py`` pickles them under torch's names, so ``torch.load`` rebuilds real torch modules
(``tests/test_pt_interop.py`` compares every module's ``__dict__`` with one torch built).

``build_model(specs, cfg, names, variables, half)`` is ``mirror.build_mirror`` + ``model.half()`` over these classes.
Importing torch costs ~2 s of CPU, which training paid at its first ``last.pt``; this module needs numpy only.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from typing import Iterator, Mapping

import numpy as np

from converters.torch_weights.layers import build_layers, check_fit, define
from converters.torch_weights.mapping import variables_to_state_dict


class Tensor:
    """A numpy array that pickles as a torch tensor of the same dtype and shape (``writer.py``)."""

    def __init__(self, array):
        self.array = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)

    @property
    def shape(self) -> tuple:
        return self.array.shape

    def numel(self) -> int:
        return int(self.array.size)


class Parameter(Tensor):
    def __init__(self, array, requires_grad: bool = True):
        super().__init__(array)
        self.requires_grad = bool(requires_grad)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Module:
    """``torch.nn.Module``'s attribute bookkeeping: parameters, buffers and sub-modules live in their own dicts."""

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent_buffers_set"] = set()
        for name in ("_backward_pre_hooks", "_backward_hooks"):
            d[name] = OrderedDict()
        d["_is_full_backward_hook"] = None
        for name in ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                     "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
                     "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks"):
            d[name] = OrderedDict()
        d["_modules"] = {}

    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, Parameter):
            kind = "_parameters"
        elif isinstance(value, Module):
            kind = "_modules"
        elif name in d["_buffers"] and (value is None or isinstance(value, Tensor)):
            kind = "_buffers"
        elif name in d["_parameters"] and value is None:
            kind = "_parameters"
        else:
            for k in ("_parameters", "_buffers", "_modules"):
                if name in d[k]:
                    raise TypeError(f"cannot assign {type(value).__name__} to {name!r} (a registered {k[1:-1]})")
            d[name] = value
            return
        for k in ("_parameters", "_buffers", "_modules"):
            if k != kind:
                d[k].pop(name, None)
        d.pop(name, None)
        d[kind][name] = value

    def __getattr__(self, name):  # only reached when normal lookup fails, as in torch
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            if k in d and name in d[k]:
                return d[k][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self.__dict__["_parameters"][name] = param

    def register_buffer(self, name: str, tensor: Tensor) -> None:
        self.__dict__["_buffers"][name] = tensor

    def parameters(self) -> Iterator[Parameter]:
        for _, owner, name in named_slots(self, kinds=("_parameters",)):
            yield owner[name]

    def eval(self):
        self.__dict__["training"] = False
        for m in self.__dict__["_modules"].values():
            if m is not None:
                m.eval()
        return self


def named_slots(module: Module, prefix: str = "", kinds=("_parameters", "_buffers")):
    """``(state-dict key, owning dict, name)`` for every tensor, in ``state_dict()`` order (None entries skipped)."""
    d = module.__dict__
    for kind in kinds:
        for name, t in d[kind].items():
            if t is not None and not (kind == "_buffers" and name in d["_non_persistent_buffers_set"]):
                yield prefix + name, d[kind], name
    for name, m in d["_modules"].items():
        if m is not None:
            yield from named_slots(m, f"{prefix}{name}.", kinds)


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros"):
        super().__init__()
        if isinstance(padding, str):
            raise ValueError("string padding is not supported here")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (_pair(kernel_size), _pair(stride),
                                                                      _pair(padding), _pair(dilation))
        self.transposed, self.output_padding, self.groups, self.padding_mode = False, (0, 0), groups, padding_mode
        self._reversed_padding_repeated_twice = tuple(p for p in reversed(self.padding) for _ in range(2))
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups, *self.kernel_size), np.float32))
        if bias:
            self.bias = Parameter(np.zeros(out_channels, np.float32))
        else:
            self.register_parameter("bias", None)


class BatchNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        if not (affine and track_running_stats):
            raise ValueError("only affine BatchNorm2d with running statistics is supported here")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
        self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))


class SiLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size


class Dropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p, self.inplace = p, inplace


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.zeros((out_features, in_features), np.float32))
        if bias:
            self.bias = Parameter(np.zeros(out_features, np.float32))
        else:
            self.register_parameter("bias", None)


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m


# What the pickle names each stand-in (their torch classes).
TORCH_NAMES = {
    Conv2d: ("torch.nn.modules.conv", "Conv2d"),
    BatchNorm2d: ("torch.nn.modules.batchnorm", "BatchNorm2d"),
    SiLU: ("torch.nn.modules.activation", "SiLU"),
    Identity: ("torch.nn.modules.linear", "Identity"),
    Linear: ("torch.nn.modules.linear", "Linear"),
    AdaptiveAvgPool2d: ("torch.nn.modules.pooling", "AdaptiveAvgPool2d"),
    Dropout: ("torch.nn.modules.dropout", "Dropout"),
    Sequential: ("torch.nn.modules.container", "Sequential"),
    ModuleList: ("torch.nn.modules.container", "ModuleList"),
}

nn = types.SimpleNamespace(Module=Module, **{c.__name__: c for c in TORCH_NAMES})
torch = types.SimpleNamespace(tensor=lambda data: Tensor(np.asarray(data, np.float32)))  # stride = torch.tensor([1.])
CLASSES = define(nn, torch)
for _c in CLASSES.values():
    _c.__module__ = __name__


def build_model(specs, cfg: dict, names: Mapping[int, str], variables: Mapping, half: bool = True) -> Module:
    """The stand-in ``ClassificationModel`` for ``specs`` holding ``variables`` (float16 when ``half``), in eval mode
    with every parameter's ``requires_grad`` off: what Ultralytics' ``strip_optimizer`` leaves in a ``best.pt``."""
    model = build_layers(CLASSES, specs, cfg, names)
    sd = variables_to_state_dict(variables)
    slots = {key: (owner, name) for key, owner, name in named_slots(model)}
    check_fit({k: owner[n].shape for k, (owner, n) in slots.items()}, {k: np.shape(v) for k, v in sd.items()})
    for key, (owner, name) in slots.items():
        old = owner[name]
        if key not in sd:  # num_batches_tracked (check_fit allows only that)
            continue
        a = np.asarray(sd[key], dtype=np.float32)
        if half:
            a = a.astype(np.float16)
        owner[name] = Parameter(a, requires_grad=False) if isinstance(old, Parameter) else Tensor(a)
    return model.eval()
