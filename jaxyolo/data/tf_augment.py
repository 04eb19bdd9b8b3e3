"""Ultralytics' train augmentation policies as TensorFlow ops on ``pil_ops``: RandAugment's op table (also used
by the host path, ``host_augment.py``), AutoAugment (ImageNet), AugMix, ColorJitter and RandomErasing;
``transforms.py`` composes them per example. See ``pil_ops.py`` for how exact each op is.

AugMix: torchvision runs AugMix's ops on uint8 tensors (grid_sample affine, tensor equalize, ...); here they are the
same PIL-style ops as RandAugment's, so AugMix outputs differ slightly from torchvision's at borders/rounding.
Randomness is stateless: every draw comes from a ``[2]`` int seed (``pil_ops.uniform``).
"""

from __future__ import annotations

import math

import numpy as np
from jaxyolo.data._tf import tf

from jaxyolo.data.aug_space import OPS, RANDAUGMENT_OPS  # noqa: F401  (re-exported)
from jaxyolo.data.aug_space import space as _space
from jaxyolo.data.pil_ops import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    adjust_sharpness,
    affine_pil,
    autocontrast,
    equalize,
    invert,
    op_matrix,
    posterize,
    shear_pil,
    solarize,
    translate_pil,
    trunc,
    uniform,
)

__all__ = ["OPS", "RANDAUGMENT_OPS", "apply_op", "apply_op_named", "autoaugment", "augmix", "color_jitter",
           "random_erasing"]


# ------------------------------------------------------------------------------------------------ op table / policies

# op ids, in torchvision RandAugment's augmentation-space order, plus Invert (AutoAugment only)
_OP_ID = {n: i for i, n in enumerate(OPS)}


def apply_op(img, op_id, magnitude, matrix):
    """torchvision ``_apply_op`` (PIL path, BILINEAR, fill 0) for op ``OPS[op_id]``: ``magnitude`` is the signed
    magnitude, ``matrix`` the op's inverse affine matrix (``op_matrix``; used by the geometric ops only).

    One traced function per image shape, called (not inlined) by every policy: keeps the graphs small."""
    img = tf.convert_to_tensor(img, tf.float32)
    out = _apply_op_fn(img, tf.cast(op_id, tf.int32), tf.cast(magnitude, tf.float64), tf.cast(matrix, tf.float64))
    return tf.ensure_shape(out, img.shape)


def _apply_op_impl(img, op_id, magnitude, matrix):
    mag = tf.cast(magnitude, tf.float64)
    magf = tf.cast(mag, tf.float32)

    def geo():
        return affine_pil(img, tf.unstack(tf.cast(matrix, tf.float64)))

    def shear(axis):
        return lambda: shear_pil(img, tf.unstack(tf.cast(matrix, tf.float64)), axis)

    def shift():  # the inverse matrix of a translation is [1, 0, -tx, 0, 1, -ty]
        return translate_pil(img, -tf.round(matrix[2]), -tf.round(matrix[5]))

    branches = [
        lambda: img,
        shear(1),
        shear(0),
        shift,
        shift,
        geo,
        lambda: adjust_brightness(img, 1.0 + mag),
        lambda: adjust_saturation(img, 1.0 + mag),
        lambda: adjust_contrast(img, 1.0 + mag),
        lambda: adjust_sharpness(img, 1.0 + mag),
        lambda: posterize(img, trunc(magf)),
        lambda: solarize(img, mag),
        lambda: autocontrast(img),
        lambda: equalize(img),
        lambda: invert(img),
    ]
    out = tf.switch_case(tf.cast(op_id, tf.int32), branches)
    return tf.ensure_shape(out, img.shape)


_apply_op_fn = tf.function(_apply_op_impl, reduce_retracing=True, autograph=False,
                           experimental_attributes={"_noinline": True})


def apply_op_named(img, name: str, magnitude: float):
    """apply_op with a Python op name and magnitude (tests, one-off use)."""
    img = tf.convert_to_tensor(img, tf.float32)
    m = op_matrix(name, magnitude, int(img.shape[0]), int(img.shape[1]))
    return apply_op(img, _OP_ID[name], magnitude, tf.constant(m, tf.float64))




def _tables(names, mags_per_name, signed_per_name, h, w):
    """Signed magnitudes and matrices for (op, sign) pairs: returns float64 arrays mags[..., 2], mats[..., 2, 6]."""
    mags = np.zeros(np.shape(names) + (2,), np.float64)
    mats = np.zeros(np.shape(names) + (2, 6), np.float64)
    for idx in np.ndindex(*np.shape(names)):
        name, mag, signed = names[idx], mags_per_name[idx], signed_per_name[idx]
        for sgn in (0, 1):
            m = -mag if (signed and sgn) else mag
            mags[idx + (sgn,)] = m
            mats[idx + (sgn,)] = op_matrix(name, m, h, w)
    return mags, mats


AUTOAUGMENT_IMAGENET = [
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
]  # torchvision AutoAugmentPolicy.IMAGENET: ((op, probability, magnitude bin of 10), x2)


def autoaugment(img, seed):
    """torchvision AutoAugment(IMAGENET): one of 25 sub-policies; each op applied if U <= p, sign 50/50."""
    h, w = int(img.shape[0]), int(img.shape[1])
    space = _space(10, h, w)
    pol = AUTOAUGMENT_IMAGENET
    names = np.array([[op[0] for op in p] for p in pol], dtype=object)
    mags, mats = _tables(
        names,
        np.array([[0.0 if op[2] is None else space[op[0]][0][op[2]] for op in p] for p in pol]),
        np.array([[space[op[0]][1] for op in p] for p in pol]),
        h,
        w,
    )
    ids = tf.constant([[_OP_ID[op[0]] for op in p] for p in pol], tf.int32)
    probs = tf.constant([[op[1] for op in p] for p in pol], tf.float32)
    mags, mats = tf.constant(mags), tf.constant(mats)
    s_pol, s_prob, s_sign = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    k_pol = tf.random.stateless_uniform([], s_pol, 0, len(pol), tf.int32, alg="philox")
    u = uniform(s_prob, [2])
    sgn = tf.cast(uniform(s_sign, [2]) < 0.5, tf.int32)
    for k in range(2):
        op, mag, mat = ids[k_pol, k], mags[k_pol, k, sgn[k]], mats[k_pol, k, sgn[k]]
        img = tf.cond(
            u[k] <= probs[k_pol, k],
            lambda op=op, mag=mag, mat=mat, img=img: apply_op(img, op, mag, mat),
            lambda img=img: img,
        )
    return img


AUGMIX_OPS = [
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
]


def augmix(img, seed, severity=3, width=3, depth=-1, alpha=1.0):
    """torchvision AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1, all_ops=True): mix the image
    (Beta weight) with `width` chains of 1..3 random ops (Dirichlet weights), then truncate to uint8."""
    h, w = int(img.shape[0]), int(img.shape[1])
    space = _space(10, h, w, translate_frac=1.0 / 3.0, posterize_top=4)
    names = np.array([[n] * severity for n in AUGMIX_OPS], dtype=object)
    mags, mats = _tables(
        names,
        np.array([space[n][0][:severity] for n in AUGMIX_OPS]),
        np.array([[space[n][1]] * severity for n in AUGMIX_OPS]),
        h,
        w,
    )  # [13, severity, 2], [13, severity, 2, 6]
    mags, mats = tf.constant(mags), tf.constant(mats)
    ids = tf.constant([_OP_ID[n] for n in AUGMIX_OPS], tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, 2 + width * 4)
    g_m = tf.random.stateless_gamma([2], seeds[0], alpha=alpha)
    m = g_m / tf.reduce_sum(g_m)  # Dirichlet([alpha, alpha])
    g_w = tf.random.stateless_gamma([width], seeds[1], alpha=alpha)
    weights = g_w / tf.reduce_sum(g_w) * m[1]
    mix = m[0] * img
    for i in range(width):
        s_depth, s_op, s_mag, s_sign = (seeds[2 + 4 * i + j] for j in range(4))
        d = depth if depth > 0 else tf.random.stateless_uniform([], s_depth, 1, 4, tf.int32, alg="philox")
        ops = tf.random.stateless_uniform([3], s_op, 0, len(AUGMIX_OPS), tf.int32, alg="philox")
        mbins = tf.random.stateless_uniform([3], s_mag, 0, severity, tf.int32, alg="philox")
        sgn = tf.cast(uniform(s_sign, [3]) < 0.5, tf.int32)
        aug = img
        for k in range(3):
            op, b, sg = ops[k], mbins[k], sgn[k]
            aug = tf.cond(
                k < d,
                lambda aug=aug, op=op, b=b, sg=sg: apply_op(aug, ids[op], mags[op, b, sg], mats[op, b, sg]),
                lambda aug=aug: aug,
            )
        mix = mix + weights[i] * aug
    return tf.floor(tf.clip_by_value(mix, 0.0, 255.0))  # float -> uint8 cast truncates


def color_jitter(img, seed, brightness=0.4, contrast=0.4, saturation=0.7, hue=0.015):
    """torchvision ColorJitter(brightness, contrast, saturation, hue) (PIL path): random order of the four."""
    s_perm, s_b, s_c, s_s, s_h = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    order = tf.argsort(uniform(s_perm, [4]))
    fb = uniform(s_b, [], max(0.0, 1 - brightness), 1 + brightness)
    fc = uniform(s_c, [], max(0.0, 1 - contrast), 1 + contrast)
    fs = uniform(s_s, [], max(0.0, 1 - saturation), 1 + saturation)
    fh = uniform(s_h, [], -hue, hue)
    def identity(x):
        return x

    fns = [
        (lambda x: adjust_brightness(x, fb)) if brightness else identity,
        (lambda x: adjust_contrast(x, fc)) if contrast else identity,
        (lambda x: adjust_saturation(x, fs)) if saturation else identity,
        (lambda x: adjust_hue(x, fh)) if hue else identity,
    ]
    for k in range(4):
        img = tf.switch_case(order[k], [lambda fn=fn, img=img: fn(img) for fn in fns])
        img = tf.ensure_shape(img, [None, None, 3])
    return img


def random_erasing(img_u8, seed, p=0.4, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
    """torchvision RandomErasing(p, scale, ratio, value=0) on a uint8 HWC image (value 0 is exact in uint8)."""
    s_p, s_area, s_ratio, s_pos = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    shape = tf.shape(img_u8)
    h, w = shape[0], shape[1]
    area = tf.cast(h * w, tf.float64)
    frac = tf.cast(uniform(s_area, [10], scale[0], scale[1]), tf.float64)
    aspect = tf.exp(tf.cast(uniform(s_ratio, [10], math.log(ratio[0]), math.log(ratio[1])), tf.float64))
    eh = tf.cast(tf.round(tf.sqrt(area * frac * aspect)), tf.int32)
    ew = tf.cast(tf.round(tf.sqrt(area * frac / aspect)), tf.int32)
    ok = (eh < h) & (ew < w)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    eh, ew = eh[first], ew[first]
    upos = uniform(s_pos, [2], 0.0, 1.0, tf.float64)
    top = tf.minimum(tf.cast(tf.floor(upos[0] * tf.cast(h - eh + 1, tf.float64)), tf.int32), h - eh)
    left = tf.minimum(tf.cast(tf.floor(upos[1] * tf.cast(w - ew + 1, tf.float64)), tf.int32), w - ew)
    do = (uniform(s_p) < p) & tf.reduce_any(ok)

    def erase():
        keep = tf.pad(tf.zeros(tf.stack([eh, ew, 3]), tf.uint8),
                      tf.convert_to_tensor([[top, h - top - eh], [left, w - left - ew], [0, 0]]), constant_values=1)
        return img_u8 * keep

    return tf.cond(do, erase, lambda: img_u8)
