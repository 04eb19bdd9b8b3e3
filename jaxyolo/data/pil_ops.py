"""Pillow's pixel operations as TensorFlow ops, rounded as Pillow rounds: enhance (brightness, colour, contrast,
sharpness), posterize/solarize/invert, autocontrast/equalize, affine warps (rotate, shear, translate), hue, and the
bilinear resize. ``tf_augment.py`` builds the augmentation policies from them.

Images are RGB HWC. Inside the augmentations an image is float32 holding integer values 0..255 (the value a PIL uint8
image would hold after each step); every op rounds like Pillow does (blends truncate, filters round, lookups exact).
Checked against torchvision/Pillow (tests/test_data_transforms.py): the colour, tone, histogram, posterize/solarize,
translate ops and the ColorJitter hue round trip are exact (a very rare +-1 in saturation). Known deviations of these
TF ops (none of them applies to the Pillow path):

* shear (row/column-wise ``crop_and_resize``) and rotate (``ImageProjectiveTransformV3``) sample in float32 where
  Pillow uses float64: +-1 grey level on a few % of pixels (Pillow's inside test and edge clamping are exact).
* resizes use ``tf.image.resize`` (bilinear; antialiased when shrinking: the same triangle filter as PIL, but in
  float, where PIL rounds its two separable passes to uint8 in between): max |diff| 1.

Randomness is stateless: every draw comes from a ``[2]`` int seed (``uniform``).
"""

from __future__ import annotations

import numpy as np
from jaxyolo.data._tf import tf

from jaxyolo.data import decode as _decode  # noqa: F401  (configures TF: host only)
from jaxyolo.data.aug_space import IDENTITY_MATRIX, op_matrix  # noqa: F401  (re-exported: tf_augment, tests)


def uniform(seed, shape=(), lo=0.0, hi=1.0, dtype=tf.float32):
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi, dtype=dtype, alg="philox")


def pil_resize(img, size_hw):
    """PIL-style bilinear resize (antialiased triangle filter when downscaling; when no side shrinks that filter is
    plain bilinear, so the cheaper ResizeBilinear kernel is used); returns float32 rounded to integers."""
    size_hw = tf.convert_to_tensor(size_hw, tf.int32)
    shape = tf.shape(img)
    upscale = tf.logical_and(shape[0] <= size_hw[0], shape[1] <= size_hw[1])
    out = tf.cond(
        upscale,
        lambda: tf.image.resize(img, size_hw, method="bilinear", antialias=False),
        lambda: tf.image.resize(img, size_hw, method="bilinear", antialias=True),
    )
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


# ------------------------------------------------------------------------------------------- PIL-exact pixel ops
# Performance notes: TF's CPU kernels for select (tf.where), implicit broadcasting and scalar gathers are slow; the
# pixel ops below use same-shape arithmetic, masks, matmuls and bias_add instead.


def _chan_matmul(img, mat):
    """Per-pixel colour matrix: [H, W, 3] x [3, k] -> [H, W, k]."""
    shape = tf.shape(img)
    out = tf.matmul(tf.reshape(img, [-1, 3]), tf.cast(mat, img.dtype))
    return tf.reshape(out, tf.concat([shape[:2], [int(mat.shape[1])]], 0))


_GRAY_W = np.array([[19595.0], [38470.0], [7471.0]], np.float32)


def _gray_l(img, channels=1):
    """Pillow RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (all integers < 2**24: exact in float32)."""
    w = np.repeat(_GRAY_W, channels, axis=1)
    return tf.floor((_chan_matmul(img, w) + 32768.0) * (1.0 / 65536.0))


def _blend(degenerate, img, factor):
    """Pillow Image.blend(degenerate, img, factor): float, clip, truncate."""
    factor = tf.cast(factor, tf.float32)
    out = degenerate + factor * (img - degenerate)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0))


def adjust_brightness(img, factor):
    return _blend(0.0, img, factor)


def adjust_saturation(img, factor):  # ImageEnhance.Color
    return _blend(_gray_l(img, 3), img, factor)


def adjust_contrast(img, factor):  # ImageEnhance.Contrast: blend with the rounded mean of L
    mean = tf.floor(tf.reduce_mean(tf.cast(_gray_l(img), tf.float64)) + 0.5)
    return _blend(tf.cast(mean, tf.float32), img, factor)


_SMOOTH = np.tile((np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0)[:, :, None, None], [1, 1, 3, 1])


def adjust_sharpness(img, factor):  # ImageEnhance.Sharpness: blend with SMOOTH (1 1 1/1 5 1/1 1 1)/13, border kept
    sm = tf.round(tf.nn.depthwise_conv2d(img[None], _SMOOTH, [1, 1, 1, 1], "SAME")[0])  # no ties: n/13
    shape = tf.shape(img)
    inner = tf.pad(tf.ones(tf.stack([shape[0] - 2, shape[1] - 2, 3]), tf.float32), [[1, 1], [1, 1], [0, 0]])
    degenerate = img + inner * (sm - img)
    return _blend(degenerate, img, factor)


def posterize(img, bits):
    q = tf.pow(2.0, 8.0 - tf.cast(bits, tf.float32))
    return tf.floor(img / q) * q


def solarize(img, threshold):
    above = tf.cast(img >= tf.cast(threshold, tf.float32), tf.float32)
    return img + above * (255.0 - 2.0 * img)


def invert(img):
    return 255.0 - img


def autocontrast(img):
    """ImageOps.autocontrast(cutoff=0) per channel: int(x*255/(hi-lo) - lo*255/(hi-lo)) in float64, clipped."""
    flat = tf.cast(tf.reshape(img, [-1, 3]), tf.float64)
    lo = tf.reduce_min(flat, axis=0)
    hi = tf.reduce_max(flat, axis=0)
    const = tf.cast(hi <= lo, tf.float64)
    scale = const + (1.0 - const) * (255.0 / tf.maximum(hi - lo, 1.0))
    offset = (1.0 - const) * (-lo * scale)
    y = tf.nn.bias_add(tf.matmul(flat, tf.linalg.diag(scale)), offset)
    y = tf.floor(tf.clip_by_value(y, 0.0, 255.0))  # int() then clip; negatives clip to 0 either way
    return tf.cast(tf.reshape(y, tf.shape(img)), tf.float32)


def equalize(img):
    """ImageOps.equalize per channel (Pillow's step/lut algorithm)."""
    idx = tf.nn.bias_add(tf.reshape(tf.cast(img, tf.int32), [-1, 3]), tf.constant([0, 256, 512], tf.int32))
    hist = tf.reshape(tf.math.bincount(tf.reshape(idx, [-1]), minlength=768, maxlength=768), [3, 256])
    hist = tf.cast(hist, tf.int64)
    nonzero = hist > 0
    n_nonzero = tf.reduce_sum(tf.cast(nonzero, tf.int32), axis=1)  # [3]
    last_idx = 255 - tf.argmax(tf.cast(tf.reverse(nonzero, [1]), tf.int32), axis=1, output_type=tf.int32)
    last = tf.gather(hist, last_idx, batch_dims=1)  # count of the last non-zero bin
    total = tf.reduce_sum(hist, axis=1)
    step = (total - last) // 255  # [3]
    safe_step = tf.maximum(step, 1)
    cum_excl = tf.cumsum(hist, axis=1, exclusive=True)
    lut = tf.clip_by_value((safe_step[:, None] // 2 + cum_excl) // safe_step[:, None], 0, 255)
    identity = tf.broadcast_to(tf.range(256, dtype=tf.int64)[None], [3, 256])
    use_id = tf.logical_or(n_nonzero <= 1, step == 0)[:, None]
    lut = tf.cast(tf.reshape(tf.where(use_id, identity, lut), [-1]), tf.float32)
    return tf.reshape(tf.gather(lut, idx), tf.shape(img))


def _inside_mask(m, h, w):
    """Pillow's test of where an affine output pixel samples (float64, as Pillow): 1 inside [0,W)x[0,H), else 0."""
    ys = (tf.cast(tf.range(h), tf.float64) + 0.5)[:, None]
    xs = (tf.cast(tf.range(w), tf.float64) + 0.5)[None, :]
    xin = m[0] * xs + m[1] * ys + m[2]
    yin = m[3] * xs + m[4] * ys + m[5]
    wf, hf = tf.cast(w, tf.float64), tf.cast(h, tf.float64)
    inside = tf.cast((xin >= 0.0) & (xin < wf) & (yin >= 0.0) & (yin < hf), tf.float32)
    return tf.stack([inside, inside, inside], axis=-1)


def affine_pil(img, matrix):
    """Pillow ``Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=0)``: output pixel (x, y) samples the input
    at ``M @ (x+.5, y+.5)`` (outside [0,W)x[0,H) -> 0), bilinear with edge clamping, truncated to uint8.

    The sampling runs in TF's ImageProjectiveTransformV3 kernel (float32; 'NEAREST' edge mode = Pillow's clamping);
    the inside test is Pillow's, in float64. Versus Pillow: +-1 grey level on the ~1-3% of pixels where float32
    lands on the other side of an integer."""
    m = [tf.cast(v, tf.float64) for v in matrix]
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    t = tf.cast(
        tf.stack([m[0], m[1], m[2] + 0.5 * (m[0] + m[1]) - 0.5, m[3], m[4], m[5] + 0.5 * (m[3] + m[4]) - 0.5,
                  tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)]),
        tf.float32,
    )[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[None], transforms=t, output_shape=tf.stack([h, w]), fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR", fill_mode="NEAREST",
    )[0]
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0)) * _inside_mask(m, h, w)


def _shear_rows(img, shift):
    """Row y resampled at x + shift[y] (bilinear, Pillow's edge clamping) -> float32, not yet masked/truncated.

    Each row is its own 1-pixel-high image for ``crop_and_resize`` (much faster than the projective kernel); the
    rows are edge-padded by 1 so that the clamped taps just outside the row match Pillow."""
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    rows = tf.pad(img, [[0, 0], [1, 1], [0, 0]], mode="SYMMETRIC")[:, None]  # [H, 1, W+2, 3]
    wp1 = tf.cast(w + 1, tf.float64)  # (W+2) - 1
    x1 = (1.0 + tf.cast(shift, tf.float64)) / wp1
    x2 = x1 + tf.cast(w - 1, tf.float64) / wp1
    zeros = tf.zeros_like(x1)
    boxes = tf.cast(tf.stack([zeros, x1, zeros, x2], axis=1), tf.float32)
    out = tf.image.crop_and_resize(rows, boxes, tf.range(h), tf.stack([1, w]), extrapolation_value=0.0)
    return tf.reshape(out, tf.stack([h, w, 3]))


def shear_pil(img, matrix, axis):
    """ShearX (axis 1, matrix [1, m, 0, 0, 1, 0]) / ShearY (axis 0, [1, 0, 0, m, 1, 0]) as Pillow's AFFINE BILINEAR:
    along the sheared axis every row/column is a 1-D bilinear resampling at a constant fractional offset."""
    m = [tf.cast(v, tf.float64) for v in matrix]
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    if axis == 1:  # xin - 0.5 = x + m1 * (y + 0.5) + m2
        shift = m[1] * (tf.cast(tf.range(h), tf.float64) + 0.5) + m[2]
        out = _shear_rows(img, shift)
    else:  # yin - 0.5 = y + m3 * (x + 0.5) + m5
        shift = m[3] * (tf.cast(tf.range(w), tf.float64) + 0.5) + m[5]
        out = tf.transpose(_shear_rows(tf.transpose(img, [1, 0, 2]), shift), [1, 0, 2])
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0)) * _inside_mask(m, h, w)


def translate_pil(img, tx, ty):
    """Integer translation (torchvision's translate=[int(m), ...] on PIL): exact shift with 0 fill."""
    tx = tf.cast(tx, tf.int32)
    ty = tf.cast(ty, tf.int32)
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    p = tf.maximum(tf.maximum(tf.abs(tx), tf.abs(ty)), 0)
    padded = tf.pad(img, tf.convert_to_tensor([[p, p], [p, p], [0, 0]]))
    return padded[p - ty : p - ty + h, p - tx : p - tx + w]


def trunc(x):
    """Round towards zero, like Python's int() of a float."""
    return tf.where(x < 0, tf.math.ceil(x), tf.floor(x))


def _rgb_to_hsv_pil(img):
    """Pillow RGB -> HSV (8-bit), as float64 planes (h, s, v). Float/double steps follow Pillow's C code."""
    x = tf.cast(img, tf.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    maxc = tf.maximum(r, tf.maximum(g, b))
    minc = tf.minimum(r, tf.minimum(g, b))
    cr = maxc - minc
    grey = tf.cast(tf.equal(cr, 0.0), tf.float64)
    f32 = lambda t: tf.cast(tf.cast(t, tf.float32), tf.float64)  # noqa: E731  (a C float)
    safe_cr = cr + grey
    s = f32(cr / tf.maximum(maxc, 1.0))
    rc, gc, bc = f32((maxc - r) / safe_cr), f32((maxc - g) / safe_cr), f32((maxc - b) / safe_cr)
    is_r = tf.cast(tf.equal(r, maxc), tf.float64)
    is_g = (1.0 - is_r) * tf.cast(tf.equal(g, maxc), tf.float64)
    is_b = 1.0 - is_r - is_g
    h = is_r * f32(bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    h = f32(h)
    h = f32(tf.math.floormod(h / 6.0 + 1.0, 1.0))  # fmod of a positive number
    uh = tf.clip_by_value(tf.floor(h * 255.0), 0.0, 255.0) * (1.0 - grey)
    us = tf.clip_by_value(tf.floor(s * 255.0), 0.0, 255.0) * (1.0 - grey)
    return uh, us, maxc


def _hsv_to_rgb_pil(h, s, v):
    """Pillow HSV -> RGB (8-bit) from float64 planes; returns float32 [H, W, 3]."""
    f32 = lambda t: tf.cast(tf.cast(t, tf.float32), tf.float64)  # noqa: E731
    i = tf.floor(h * 6.0 / 255.0)
    f = f32(h * 6.0 / 255.0 - i)
    fs = f32(s / 255.0)
    p = tf.clip_by_value(tf.floor(v * (1.0 - fs) + 0.5), 0.0, 255.0)  # C round(): half away from zero
    q = tf.clip_by_value(tf.floor(v * (1.0 - fs * f) + 0.5), 0.0, 255.0)
    t = tf.clip_by_value(tf.floor(v * (1.0 - fs * (1.0 - f)) + 0.5), 0.0, 255.0)
    sector = tf.math.floormod(i, 6.0)
    ks = [tf.cast(tf.equal(sector, float(k)), tf.float64) for k in range(6)]
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    grey = tf.cast(tf.equal(s, 0.0), tf.float64)
    chans = []
    for c in range(3):
        val = ks[0] * table[0][c]
        for k in range(1, 6):
            val = val + ks[k] * table[k][c]
        chans.append(val + grey * (v - val))
    return tf.cast(tf.stack(chans, axis=-1), tf.float32)


def adjust_hue(img, hue_factor):
    """torchvision F_pil.adjust_hue: PIL HSV, h += uint8(int32(hue_factor * 255)) with wrap-around."""
    h, s, v = _rgb_to_hsv_pil(img)
    shift = trunc(tf.cast(hue_factor, tf.float64) * 255.0)
    h = tf.math.floormod(h + shift, 256.0)
    return _hsv_to_rgb_pil(h, s, v)
