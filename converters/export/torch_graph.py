"""The torch graph every PyTorch-frontend export starts from: the Flax model as an inference-only torch module.

``inference_module(yolo)`` builds the torch mirror of Ultralytics' classification modules
(``converters/torch_weights/mirror.py``: one class per resolved layer spec, Ultralytics' layer order and attribute
names)
from ``yolo.module.specs`` and ``yolo.variables``, then prepares it the way an inference export wants it:

* eval mode, no gradients, float32;
* every BatchNorm folded into the convolution before it (``fuse_batchnorm``), computed in float64 and stored as float32;
* the head returns softmax probabilities (the mirror's eval forward does), C2f/C3k2 use ``split`` (one ONNX Split).

The resulting graph is NCHW throughout, so traced exports (ONNX, TorchScript, ncnn, Paddle, CoreML) contain no layout
transposes: it is the same graph Ultralytics' own exporter produces from its fused model.
"""

from __future__ import annotations

import numpy as np


def _fused_conv_class():
    from torch import nn

    from converters.torch_weights.mirror import Conv

    class FusedConv(Conv):
        """A mirror ``Conv`` whose BatchNorm is folded into ``conv``: ``act(conv(x))``, no Identity nodes in a trace."""

        def forward(self, x):
            y = self.conv(x)
            return y if isinstance(self.act, nn.Identity) else self.act(y)

    return FusedConv


def fuse_batchnorm(model):
    """Fold each mirror ``Conv``'s BatchNorm into its convolution (in place): ``conv`` gets a bias, ``bn`` is removed.

    ``y = gamma * (W*x - mean) / sqrt(var + eps) + beta`` = ``(W * s) * x + (beta - mean * s)`` with ``s = gamma /
    sqrt(var + eps)``. Done in float64 so the folded float32 weights carry only one rounding.
    """
    import torch
    from torch import nn

    from converters.torch_weights.mirror import Conv

    fused_cls = _fused_conv_class()
    n = 0
    for m in list(model.modules()):
        if type(m) is not Conv:
            continue
        conv, bn = m.conv, m.bn
        w = conv.weight.detach().double()
        s = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        b = bn.bias.detach().double() - bn.running_mean.detach().double() * s
        if conv.bias is not None:
            b = b + conv.bias.detach().double() * s
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, bias=True)
        with torch.no_grad():
            fused.weight.copy_((w * s.view(-1, 1, 1, 1)).float())
            fused.bias.copy_(b.float())
        m.conv = fused
        del m.bn
        m.__class__ = fused_cls  # same object: keeps the layer's i/f/type attributes the model's forward reads
        n += 1
    return n


def inference_module(yolo, fuse: bool = True):
    """A float32, eval-mode torch module computing ``yolo``'s probabilities from NCHW RGB [0, 1] images."""
    import jax

    from converters.torch_weights.mirror import build_mirror

    variables = jax.tree.map(lambda a: np.asarray(a, dtype=np.float32), jax.device_get(yolo.variables))
    model = build_mirror(yolo.module.specs, yolo.cfg, yolo.names, variables).float()
    if fuse:
        fuse_batchnorm(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def example_input(batch: int, imgsz: tuple[int, int], channels: int = 3, seed: int = 0):
    """A fixed random NCHW float32 [0, 1] batch for tracing (random, not zeros, so a trace check sees real values)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, int(imgsz[0]), int(imgsz[1]), generator=g)
