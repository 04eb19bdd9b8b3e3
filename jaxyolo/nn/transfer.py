"""Copy weights between two variable trees wherever paths and shapes agree (pretrained transfer, head re-sizing)."""

from __future__ import annotations

import flax
import numpy as np


def transfer_variables(src, dst) -> tuple[dict, int]:
    """Return ``dst`` with every leaf replaced by ``src``'s leaf at the same path when the shapes match, and the count
    of transferred tensors (Ultralytics' ``intersect_dicts`` + ``load_state_dict(strict=False)``)."""
    s = flax.traverse_util.flatten_dict(flax.core.unfreeze(src))
    d = flax.traverse_util.flatten_dict(flax.core.unfreeze(dst))
    n = 0
    for k, v in d.items():
        if k in s and np.shape(s[k]) == np.shape(v):
            d[k] = s[k]
            n += 1
    return flax.traverse_util.unflatten_dict(d), n
