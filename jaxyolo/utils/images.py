"""Image arrays handed in by users (numpy, any common dtype/channel count) -> uint8 HWC with 3 channels."""

from __future__ import annotations

import numpy as np


def to_uint8_hwc3(a) -> np.ndarray:
    """Grey ``HW``/``HW1`` -> 3 equal channels, 4 channels -> alpha dropped, floats in [0, 1] scaled by 255, other
    dtypes rounded and clipped to 0..255. Channel order is kept (RGB stays RGB, BGR stays BGR).

    Raises ``ValueError`` naming the shape for anything that is not an ``HW``/``HWC`` image with 1, 3 or 4 channels."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HW or HWC image with 1, 3 or 4 channels, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return a
