"""Default arguments (Ultralytics names) shared by the CLI, the Python API and the experiment configs."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

DEFAULT_CFG_PATH = Path(__file__).with_name("default.yaml")
DEFAULT_CFG: dict = yaml.safe_load(DEFAULT_CFG_PATH.read_text())


class ConfigKeyError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def check_keys(overrides: dict, source: str = "arguments") -> None:
    """Fail on keys that are not jaxyolo arguments, suggesting the closest valid key."""
    for key in overrides:
        if key not in DEFAULT_CFG:
            close = difflib.get_close_matches(key, DEFAULT_CFG, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigKeyError(f"'{key}' is not a valid jaxyolo argument ({source}){hint}")


AUG_BACKENDS = ("opencv", "pillow")


def check_aug_backend(backend) -> str:
    """The host augmentation back-end (``data/host_augment.py``), lower-cased; a clear error for anything else."""
    b = str(backend).lower()
    if b not in AUG_BACKENDS:
        raise ValueError(f"aug_backend={backend!r} is invalid: expected one of {', '.join(AUG_BACKENDS)} (opencv: "
                         f"the default, fast; pillow: pixels bit-exact with torchvision/Ultralytics)")
    return b


def check_seed(seed) -> int:
    """``seed`` as an int in [0, 2**32): what numpy's and TensorFlow's seeded streams accept (Ultralytics passes it to
    ``np.random.seed``, which takes the same range); a clear error for anything else."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r} is invalid: expected an integer from 0 to {2**32 - 1}")
    return seed


def check_seconds(key: str, value) -> float:
    """A duration setting (e.g. ``checkpoint_interval``) as float seconds >= 0; a clear error for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{key}={value!r} is invalid: expected a number of seconds >= 0")
    return float(value)


# Ultralytics' value ranges (its ``check_cfg``, 8.4), for the keys jaxyolo uses: rates, probabilities and gains in
# [0, 1]; counts with a least value (patience 0 disables early stopping). ``fraction`` is checked by the data loader.
FRACTION_KEYS = ("dropout", "lr0", "lrf", "momentum", "weight_decay", "warmup_momentum", "warmup_bias_lr", "hsv_h",
                 "hsv_s", "hsv_v", "translate", "scale", "flipud", "fliplr", "erasing")
INT_MIN = {"epochs": 1, "patience": 0, "nbs": 1}


def check_values(cfg: dict) -> dict:
    """Ultralytics' ranges for the keys of ``cfg`` that have one; integral floats of count keys (``epochs=1e2``, as
    Ultralytics takes them) become ints. A ``ValueError`` that names the key, the value and the range otherwise."""
    for k in FRACTION_KEYS:
        if k in cfg:
            v = cfg[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"'{k}={v}' is an invalid value: '{k}' must be a number from 0.0 to 1.0 "
                                 f"(default {DEFAULT_CFG[k]})")
    for k, least in INT_MIN.items():
        if k in cfg:
            v = cfg[k]
            if isinstance(v, float) and v.is_integer():
                cfg[k] = v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"'{k}={v}' is an invalid value: '{k}' must be an integer >= {least} "
                                 f"(default {DEFAULT_CFG[k]}{'; 0 disables early stopping' * (k == 'patience')})")
    return cfg


# Ultralytics' quantize= values (8.4) and the (half, int8) they mean here
QUANTIZE = {"8": (False, True), "int8": (False, True), "w8a8": (False, True), "16": (True, False),
            "fp16": (True, False), "w16a16": (True, False), "32": (False, False), "fp32": (False, False),
            "w32a32": (False, False)}


def quantize_flags(quantize) -> tuple[bool, bool]:
    """Ultralytics 8.4's ``quantize=`` as jaxyolo's ``(half, int8)``; a ``ValueError`` naming the value otherwise."""
    q = str(quantize).strip().lower()
    if q not in QUANTIZE:
        raise ValueError(f"quantize={q} is invalid: expected 16/fp16 (half), 8/int8 or 32/fp32 (weight-only "
                         f"w8a16/w8a32 exports are not available in jaxyolo)")
    return QUANTIZE[q]


def check_batch(batch, default: int) -> int:
    """``batch=`` of val, predict and export: a positive int (None: ``default``); a clear error for anything else
    (0 or a negative value, which Ultralytics' trainer reads as AutoBatch, has no meaning there)."""
    if batch is None:
        return default
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r} is invalid: expected a positive integer (default {default})")
    return batch


def get_cfg(overrides: dict | None = None) -> dict:
    """Defaults merged with ``overrides`` (validated)."""
    overrides = dict(overrides or {})
    check_keys(overrides)
    return {**DEFAULT_CFG, **overrides}


def smart_value(v: str):
    """A command-line value as Ultralytics parses it: none/true/false, a Python literal, or the plain string."""
    import ast

    low = v.lower()
    if low == "none":
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v
