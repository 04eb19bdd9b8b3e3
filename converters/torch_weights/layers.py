"""Ultralytics' classification layers as torch modules, written once over a ``(nn, torch)`` pair.

Ultralytics pickles whole ``nn.Module`` trees; a pickle stores each object's class as ``module.qualname`` plus its
``__dict__``. So a tree of modules with Ultralytics' class names, attribute names and per-layer metadata (``i``, ``f``,
``type``, ``np``, ``c``, ``add``, ``num_heads``, ...) pickled under Ultralytics' module paths is, to Ultralytics,
indistinguishable from one it built itself -- and it can be written without ultralytics installed.

``define(nn, torch)`` creates the classes over a namespace pair:

* real ``torch.nn``/``torch`` (``mirror.py``): modules with a working ``forward`` (eval: softmax probabilities,
  train: logits), used by the exporters and checked against Ultralytics in the tests;
* the torch-free stand-ins of ``torchless.py``: the same objects with torch's ``__dict__`` layout and numpy tensors,
  which ``writer.py`` pickles into a ``.pt`` that ``torch.load`` reads as the real thing (training writes ``last.pt``
  and ``best.pt`` without importing torch).

``build_layers`` instantiates one class per resolved ``LayerSpec`` (the same specs the Flax model is built from), with
the argument values Ultralytics' ``parse_model`` would pass. There is no per-model definition here.
"""

from __future__ import annotations

import copy
from typing import Mapping

# Where each class lives in Ultralytics (what the pickle must name).
ULTRALYTICS_MODULE = {
    "Conv": "ultralytics.nn.modules.conv",
    "Classify": "ultralytics.nn.modules.head",
    "ClassificationModel": "ultralytics.nn.tasks",
    **{n: "ultralytics.nn.modules.block" for n in ("Bottleneck", "C2f", "C3", "C3k", "C3k2", "C2PSA", "PSABlock",
                                                   "Attention")},
}


def define(nn, torch) -> dict[str, type]:
    """The layer classes plus ``ClassificationModel`` over ``nn``/``torch``, keyed by class name."""

    def _autopad(k, p=None):
        if p is not None:
            return p
        return k // 2 if isinstance(k, int) else [x // 2 for x in k]


    class Conv(nn.Module):
        """Conv2d (no bias) -> BatchNorm2d -> SiLU (Identity when ``act=False``)."""

        def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
            super().__init__()
            if d != 1:
                raise ValueError("dilated Conv is not supported")
            self.conv = nn.Conv2d(c1, c2, k, s, _autopad(k, p), groups=g, bias=False)
            self.bn = nn.BatchNorm2d(c2)
            self.act = nn.SiLU() if act is True else nn.Identity()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))


    class Bottleneck(nn.Module):
        def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
            super().__init__()
            c_ = int(c2 * e)
            self.cv1 = Conv(c1, c_, k[0], 1)
            self.cv2 = Conv(c_, c2, k[1], 1, g=g)
            self.add = bool(shortcut and c1 == c2)

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y


    class C2f(nn.Module):
        def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5):
            super().__init__()
            self.c = int(c2 * e)
            self.cv1 = Conv(c1, 2 * self.c, 1, 1)
            self.cv2 = Conv((2 + n) * self.c, c2, 1)
            self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

        def forward(self, x):
            ys = list(self.cv1(x).split((self.c, self.c), 1))
            for m in self.m:
                ys.append(m(ys[-1]))
            return self.cv2(torch.cat(ys, 1))


    class C3(nn.Module):
        _bottleneck_k = (1, 3)

        def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
            super().__init__()
            c_ = int(c2 * e)
            self.cv1 = Conv(c1, c_, 1, 1)
            self.cv2 = Conv(c1, c_, 1, 1)
            self.cv3 = Conv(2 * c_, c2, 1)
            self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=self._bottleneck_k, e=1.0) for _ in range(n)))

        def forward(self, x):
            return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


    class C3k(C3):
        def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5, k=3):
            nn.Module.__init__(self)
            c_ = int(c2 * e)
            self.cv1 = Conv(c1, c_, 1, 1)
            self.cv2 = Conv(c1, c_, 1, 1)
            self.cv3 = Conv(2 * c_, c2, 1)
            self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


    class C3k2(C2f):
        def __init__(self, c1, c2, n=1, c3k=False, e=0.5, attn=False, g=1, shortcut=True):
            if attn:
                raise ValueError("C3k2 with attn=True is not supported")
            super().__init__(c1, c2, n, shortcut, g, e)
            self.m = nn.ModuleList(C3k(self.c, self.c, 2, shortcut, g) if c3k
                                   else Bottleneck(self.c, self.c, shortcut, g) for _ in range(n))


    class Attention(nn.Module):
        def __init__(self, dim, num_heads=8, attn_ratio=0.5):
            super().__init__()
            self.num_heads = num_heads
            self.head_dim = dim // num_heads
            self.key_dim = int(self.head_dim * attn_ratio)
            self.scale = self.key_dim ** -0.5
            self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
            self.proj = Conv(dim, dim, 1, act=False)
            self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

        def forward(self, x):
            b, c, h, w = x.shape
            nh, kd, hd = self.num_heads, self.key_dim, self.head_dim
            # channels are head-major, [q(kd) k(kd) v(hd)] per head
            q, k, v = self.qkv(x).view(b, nh, 2 * kd + hd, h * w).split([kd, kd, hd], dim=2)
            attn = torch.softmax((q * self.scale).transpose(-2, -1) @ k, dim=-1)  # (b, nh, N, N)
            out = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
            return self.proj(out)


    class PSABlock(nn.Module):
        def __init__(self, c, attn_ratio=0.5, num_heads=4, shortcut=True):
            super().__init__()
            self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
            self.ffn = nn.Sequential(Conv(c, 2 * c, 1), Conv(2 * c, c, 1, act=False))
            self.add = bool(shortcut)

        def forward(self, x):
            x = x + self.attn(x) if self.add else self.attn(x)
            return x + self.ffn(x) if self.add else self.ffn(x)


    class C2PSA(nn.Module):
        def __init__(self, c1, c2, n=1, e=0.5):
            super().__init__()
            if c1 != c2:
                raise ValueError(f"C2PSA needs c1 == c2, got {c1} != {c2}")
            self.c = int(c1 * e)
            self.cv1 = Conv(c1, 2 * self.c, 1, 1)
            self.cv2 = Conv(2 * self.c, c1, 1)
            self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1))
                                     for _ in range(n)))

        def forward(self, x):
            a, b = self.cv1(x).split((self.c, self.c), 1)
            return self.cv2(torch.cat((a, self.m(b)), 1))


    class Classify(nn.Module):
        """1x1 Conv to 1280 -> global average pool -> Dropout -> Linear; eval returns softmax probabilities."""

        def __init__(self, c1, c2, k=1, s=1, p=None, g=1):
            super().__init__()
            c_ = 1280
            self.conv = Conv(c1, c_, k, s, p, g)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.drop = nn.Dropout(p=0.0, inplace=True)
            self.linear = nn.Linear(c_, c2)

        def forward(self, x):
            x = self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))
            return x if self.training else x.softmax(1)


    class ClassificationModel(nn.Module):
        """Top level: ``model`` (Sequential of layers carrying ``i``/``f``/``type``/``np``), ``yaml``, ``names``, ..."""

        def __init__(self, layers, save, cfg: dict, names: dict):
            super().__init__()
            self.yaml = cfg
            self.model = nn.Sequential(*layers)
            self.save = save
            self.stride = torch.tensor([1.0])
            self.names = names
            self.task = "classify"

        def forward(self, x):
            outputs = []
            for m in self.model:
                if m.f != -1:
                    x = outputs[m.f]
                x = m(x)
                outputs.append(x)
            return x

    classes = {c.__name__: c for c in (Conv, Bottleneck, C2f, C3, C3k, C3k2, C2PSA, PSABlock, Attention, Classify,
                                       ClassificationModel)}
    for c in classes.values():
        c.__qualname__ = c.__name__  # pickles name classes by qualname, not "define.<locals>.Conv"
    return classes


def build_layers(classes: Mapping[str, type], specs, cfg: dict, names: Mapping[int, str]):
    """A ``ClassificationModel`` of ``classes`` for resolved layer specs (``module.specs``), with torch's initial
    values (the caller loads the weights).

    Each layer is ``classes[spec.module](**spec.kwargs)``, i.e. exactly Ultralytics' resolved arguments, and carries
    ``i``, ``f``, ``type`` and ``np`` like a layer built by Ultralytics' ``parse_model``.
    """
    layers = []
    for spec in specs:
        if spec.module not in classes or spec.module == "ClassificationModel":
            raise ValueError(f"layer {spec.i}: no torch mirror for module {spec.module}")
        m = classes[spec.module](**spec.kwargs)
        m.i, m.f = spec.i, spec.f
        m.type = f"{ULTRALYTICS_MODULE[spec.module]}.{spec.module}"
        m.np = sum(p.numel() for p in m.parameters())
        layers.append(m)
    save = sorted({s.f % s.i for s in specs if s.f != -1})  # outputs later layers read (Ultralytics' savelist)
    nc = specs[-1].c2
    cfg = copy.deepcopy(dict(cfg))
    cfg["nc"] = nc
    names = {int(k): str(v) for k, v in dict(names).items()}
    if sorted(names) != list(range(nc)):
        raise ValueError(f"names must map 0..{nc - 1} to class names, got {len(names)} entries")
    return classes["ClassificationModel"](layers, save, cfg, names)


def check_fit(own: Mapping[str, tuple], given: Mapping[str, tuple]) -> None:
    """Raise unless the state-dict shapes ``given`` fill the model's tensors ``own`` exactly (``num_batches_tracked``
    aside, which has no Flax counterpart)."""
    bad = [f"{k}: {tuple(v)} vs mirror {tuple(own[k])}" for k, v in given.items()
           if k in own and tuple(v) != tuple(own[k])]
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    if bad or missing or unexpected:
        raise ValueError("variables do not fit the model's layer specs: "
                         + "; ".join([*bad[:5], *(f"missing {k}" for k in missing[:5]),
                                      *(f"unexpected {k}" for k in unexpected[:5])]))
