"""TF-free tables and settings of the train augmentation, shared by the TF ops (``pil_ops``, ``tf_augment``,
``transforms``) and the host path (``host_augment``, ``host_train``): RandAugment's op list and magnitude space
(torchvision's ``_augmentation_space``), the geometric ops' inverse affine matrices as torchvision + Pillow compute
them, and the resolved Ultralytics augmentation settings (``settings``, ``host_args``: which part runs on the host).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxyolo.data.host_eval import parse_hw

OPS = [
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
]
RANDAUGMENT_OPS = OPS[:14]


def _linspace(a, b, n):
    return np.linspace(a, b, n, dtype=np.float32).astype(np.float64)


def space(num_bins, h, w, translate_frac=150.0 / 331.0, posterize_top=8):
    """(magnitudes[num_bins], signed) per op name, as torchvision's _augmentation_space."""
    post = posterize_top - np.round(np.arange(num_bins) / ((num_bins - 1) / 4)).astype(np.int64)
    return {
        "Identity": (np.zeros(num_bins), False),
        "ShearX": (_linspace(0.0, 0.3, num_bins), True),
        "ShearY": (_linspace(0.0, 0.3, num_bins), True),
        "TranslateX": (_linspace(0.0, translate_frac * w, num_bins), True),
        "TranslateY": (_linspace(0.0, translate_frac * h, num_bins), True),
        "Rotate": (_linspace(0.0, 30.0, num_bins), True),
        "Brightness": (_linspace(0.0, 0.9, num_bins), True),
        "Color": (_linspace(0.0, 0.9, num_bins), True),
        "Contrast": (_linspace(0.0, 0.9, num_bins), True),
        "Sharpness": (_linspace(0.0, 0.9, num_bins), True),
        "Posterize": (post.astype(np.float64), False),
        "Solarize": (_linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": (np.zeros(num_bins), False),
        "Equalize": (np.zeros(num_bins), False),
        "Invert": (np.zeros(num_bins), False),
    }


def _inverse_affine(center, angle, translate, scale, shear):
    """Inverse (output -> input) matrix of ``T * C * R(angle) S(scale) Shy Shx * C^-1`` in Pillow's convention, the
    math torchvision's functional ``affine`` hands to Pillow (angles in degrees, clockwise)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [v / scale for v in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _rotate_matrix_py(h, w, degrees):
    """Pillow ``Image.rotate(degrees, expand=False)``'s inverse matrix (angle mod 360, entries rounded to 15 digits)."""
    angle = -math.radians(degrees % 360.0)
    m = [round(math.cos(angle), 15), round(math.sin(angle), 15), 0.0,
         round(-math.sin(angle), 15), round(math.cos(angle), 15), 0.0]
    cx, cy = w / 2, h / 2
    m[2], m[5] = m[0] * -cx + m[1] * -cy + m[2], m[3] * -cx + m[4] * -cy + m[5]
    m[2] += cx
    m[5] += cy
    return m


IDENTITY_MATRIX = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def op_matrix(name: str, magnitude: float, h: int, w: int) -> list[float]:
    """Host-side (float64, exactly as torchvision + Pillow compute it) inverse affine matrix of a geometric op;
    identity for the other ops."""
    if name == "ShearX":  # torchvision: affine(shear=[degrees(atan(m)), 0], center=[0, 0])
        return _inverse_affine([0, 0], 0.0, [0, 0], 1.0, [math.degrees(math.atan(magnitude)), 0.0])
    if name == "ShearY":
        return _inverse_affine([0, 0], 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(magnitude))])
    if name == "TranslateX":  # translate=[int(m), 0] around the image centre
        return _inverse_affine([w * 0.5, h * 0.5], 0.0, [int(magnitude), 0], 1.0, [0.0, 0.0])
    if name == "TranslateY":
        return _inverse_affine([w * 0.5, h * 0.5], 0.0, [0, int(magnitude)], 1.0, [0.0, 0.0])
    if name == "Rotate":
        return _rotate_matrix_py(h, w, magnitude)
    return list(IDENTITY_MATRIX)


def aug_value(aug: dict, key, default):
    v = aug.get(key, default) if aug else default
    return default if v is None else v


class _Settings(NamedTuple):
    fliplr: float
    flipud: float
    erasing: float
    policy: str  # lower-case; '' for no policy ('none', 'false', None)
    hsv: tuple[float, float, float]  # hsv_h, hsv_s, hsv_v


def settings(aug: dict) -> _Settings:
    """The train augmentation settings of an Ultralytics ``aug`` dict, defaults filled in."""
    policy = aug_value(aug, "auto_augment", "randaugment")
    policy = str(policy).lower() if policy else ""
    hsv = tuple(float(aug_value(aug, k, d)) for k, d in (("hsv_h", 0.015), ("hsv_s", 0.7), ("hsv_v", 0.4)))
    return _Settings(float(aug_value(aug, "fliplr", 0.5)), float(aug_value(aug, "flipud", 0.0)),
                     float(aug_value(aug, "erasing", 0.4)), "" if policy in ("none", "false") else policy, hsv)


def host_args(imgsz, aug: dict):
    """The arguments of ``host_augment.augment_crop`` after (crop, key) when the augmentation after the crop runs on
    the host (RandAugment, or neither a policy nor HSV jitter); None when it runs in TF."""
    st = settings(aug)
    if not (st.policy == "randaugment" or (st.policy == "" and not any(st.hsv))):
        return None
    from jaxyolo.cfg import check_aug_backend

    th, tw = parse_hw(imgsz)
    return (th, tw, st.fliplr, st.flipud, st.policy, st.erasing,
            check_aug_backend(aug_value(aug, "aug_backend", "opencv")))
