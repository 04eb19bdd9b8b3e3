"""Ultralytics' classification transforms as TensorFlow ops (run inside tf.data, one image at a time).

Written from the behaviour of torchvision 0.28 / Pillow 13 as Ultralytics 8.4 uses them (PIL images, BILINEAR):

* eval  (``classify_transforms``): shortest side -> imgsz (PIL bilinear, antialiased; long side ``int(s*long/short)``)
  then a centre crop (offsets ``round((H-s)/2)``, half to even); a non-square ``(h, w)`` resizes straight to (h, w).
* train (``classify_augmentations``): RandomResizedCrop(scale, ratio 3/4..4/3; 10 attempts, centre-crop fallback)
  -> hflip(fliplr) -> vflip(flipud, only if > 0) -> RandAugment(2 ops, magnitude 9 of 31 bins) | AutoAugment(ImageNet)
  | AugMix(severity 3, width 3, depth 1..3, alpha 1) -> ColorJitter(hsv_v, hsv_v, hsv_s, hsv_h) only without
  auto_augment -> RandomErasing(p=erasing, scale 0.02..0.33, ratio 0.3..3.3, value 0).

Where it runs: the crop box is sampled and the window decoded here, in TF. With ``auto_augment='randaugment'`` (the
default), or with no policy and no HSV jitter, everything after the crop (resize, flips, RandAugment, erasing) then
runs on the host (``host_augment.py``, inside the tf.data map) in OpenCV + Pillow (``aug_backend='opencv'``, the
default: the same random choices, pixels within a grey level or two) or in Pillow alone (``'pillow'``: bit-exact with
torchvision). Either needs far less CPU per image than the same ops as TF kernels (benchmarks/bench_data.py). The TF
ops below serve AutoAugment, AugMix and ColorJitter, and the eval transform.

Images are RGB HWC. Inside the augmentations an image is float32 holding integer values 0..255 (the value a PIL uint8
image would hold after each step); every op rounds like Pillow does (blends truncate, filters round, lookups exact).
Checked against torchvision/Pillow (tests/test_data_transforms.py): the colour, tone, histogram, posterize/solarize,
translate ops and the ColorJitter hue round trip are exact (a very rare +-1 in saturation). Known deviations of these
TF ops (none of them applies to the Pillow path):

* shear (row/column-wise ``crop_and_resize``) and rotate (``ImageProjectiveTransformV3``) sample in float32 where
  Pillow uses float64: +-1 grey level on a few % of pixels (Pillow's inside test and edge clamping are exact).
* resizes use ``tf.image.resize`` (bilinear; antialiased when shrinking: the same triangle filter as PIL, but in
  float, where PIL rounds its two separable passes to uint8 in between): max |diff| 1.
* AugMix: torchvision runs AugMix's ops on uint8 tensors (grid_sample affine, tensor equalize, ...); here they are the
  same PIL-style ops as RandAugment's, so AugMix outputs differ slightly from torchvision's at borders/rounding.
* ``imgsz=(h, w)`` in training: RandomResizedCrop to (h, w) (Ultralytics only accepts an int there).

Randomness is stateless: every random draw of one example comes from a ``[2]`` int seed derived from
(seed, epoch, example index), so results do not depend on threading, order, or how many examples were skipped.
"""

from __future__ import annotations

import math

import numpy as np
from jaxyolo.data._tf import dataset_options, parallel_calls, tf

from jaxyolo.data import decode as _decode  # noqa: F401  (configures TF: host only)
from jaxyolo.utils.images import to_uint8_hwc3

__all__ = [
    "eval_transform",
    "eval_transform_np",
    "train_transform",
    "rrc_params",
    "sample_crop_boxes",
    "eval_output_size",
    "parse_imgsz",
    "OPS",
    "apply_op",
    "autoaugment",
    "augmix",
    "color_jitter",
    "random_erasing",
    "example_seed",
]

# ------------------------------------------------------------------------------------------------------------ helpers


def parse_imgsz(imgsz) -> tuple[int, int]:
    """int or (h, w) -> (h, w)."""
    if isinstance(imgsz, (list, tuple)):
        if len(imgsz) == 1:
            return int(imgsz[0]), int(imgsz[0])
        if len(imgsz) != 2:
            raise ValueError(f"imgsz must be an int or (h, w), got {imgsz!r}")
        return int(imgsz[0]), int(imgsz[1])
    return int(imgsz), int(imgsz)


def example_seed(seed: int, epoch, index) -> tf.Tensor:
    """The [2] int32 stateless seed of one example: fold (epoch, index) into (seed, 0x5EED)."""
    base = tf.constant([int(seed) & 0x7FFFFFFF, 0x5EED], tf.int32)
    k = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(k, tf.cast(index, tf.int64))


def _u(seed, shape=(), lo=0.0, hi=1.0, dtype=tf.float32):
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi, dtype=dtype, alg="philox")


def _resize(img, size_hw):
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


# --------------------------------------------------------------------------------------------------------------- eval


def eval_output_size(h, w, imgsz):
    """torchvision Resize(int) output size for an (h, w) image: (new_h, new_w), long side int(s*long/short)."""
    s = imgsz
    h64, w64 = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    s64 = tf.constant(float(s), tf.float64)
    new_long_hw = tf.cast(tf.floor(s64 * w64 / h64), tf.int32)  # when h <= w: width is the long side
    new_long_wh = tf.cast(tf.floor(s64 * h64 / w64), tf.int32)
    nh = tf.where(h <= w, s, new_long_wh)
    nw = tf.where(h <= w, new_long_hw, s)
    return nh, nw


def eval_transform(img, imgsz) -> tf.Tensor:
    """Ultralytics ``classify_transforms(imgsz)`` on a uint8 HWC RGB image -> uint8 [h, w, 3]."""
    th, tw = parse_imgsz(imgsz)
    img = tf.convert_to_tensor(img)
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    x = tf.cast(img, tf.float32)
    if th == tw:
        nh, nw = eval_output_size(h, w, th)
        x = tf.cond(
            tf.logical_and(tf.equal(nh, h), tf.equal(nw, w)),
            lambda: x,
            lambda: _resize(x, tf.stack([nh, nw])),
        )
        top = tf.cast(tf.round(tf.cast(nh - th, tf.float64) / 2.0), tf.int32)  # Python round(): half to even
        left = tf.cast(tf.round(tf.cast(nw - tw, tf.float64) / 2.0), tf.int32)
        x = x[top : top + th, left : left + tw]
    else:
        x = tf.cond(
            tf.logical_and(tf.equal(h, th), tf.equal(w, tw)),
            lambda: x,
            lambda: _resize(x, tf.constant([th, tw])),
        )
    x = tf.ensure_shape(x, [th, tw, 3])
    return tf.cast(x, tf.uint8)


_EVAL_FNS: dict = {}


def eval_transform_np(img, imgsz) -> np.ndarray:
    """Host-side eval transform for predict: uint8 HWC RGB numpy (grey HW and RGBA accepted) -> uint8 [h, w, 3].

    Runs the very same TF ops as the tf.data eval pipeline (one traced function per imgsz)."""
    a = to_uint8_hwc3(img)
    key = parse_imgsz(imgsz)
    fn = _EVAL_FNS.get(key)
    if fn is None:
        fn = tf.function(lambda x: eval_transform(x, key), input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)],
                         autograph=False)
        _EVAL_FNS[key] = fn
    return fn(tf.constant(np.ascontiguousarray(a))).numpy()


# ------------------------------------------------------------------------------------------------ RandomResizedCrop


def rrc_params(seed, h, w, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)):
    """torchvision ``RandomResizedCrop.get_params``: 10 (area, log-ratio) attempts, first that fits wins, else the
    centre crop clamped to the ratio range. Returns int32 (top, left, crop_h, crop_w)."""
    s_area, s_ratio, s_pos = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    h = tf.cast(h, tf.int32)
    w = tf.cast(w, tf.int32)
    area = tf.cast(h * w, tf.float64)
    frac = tf.cast(_u(s_area, [10], scale[0], scale[1]), tf.float64)
    logr = _u(s_ratio, [10], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(tf.cast(logr, tf.float64))
    target = area * frac
    cw = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)  # Python round(): half to even, as tf.round
    ch = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    upos = _u(s_pos, [2], 0.0, 1.0, tf.float64)
    ch_ok, cw_ok = ch[first], cw[first]
    top_ok = tf.minimum(tf.cast(tf.floor(upos[0] * tf.cast(h - ch_ok + 1, tf.float64)), tf.int32), h - ch_ok)
    left_ok = tf.minimum(tf.cast(tf.floor(upos[1] * tf.cast(w - cw_ok + 1, tf.float64)), tf.int32), w - cw_ok)
    # fallback: central crop within the ratio range
    in_ratio = tf.cast(w, tf.float64) / tf.cast(h, tf.float64)
    rmin, rmax = min(ratio), max(ratio)
    fw_lo, fh_lo = w, tf.cast(tf.round(tf.cast(w, tf.float64) / rmin), tf.int32)
    fh_hi, fw_hi = h, tf.cast(tf.round(tf.cast(h, tf.float64) * rmax), tf.int32)
    fh = tf.where(in_ratio < rmin, fh_lo, tf.where(in_ratio > rmax, fh_hi, h))
    fw = tf.where(in_ratio < rmin, fw_lo, tf.where(in_ratio > rmax, fw_hi, w))
    any_ok = tf.reduce_any(ok)
    top = tf.where(any_ok, top_ok, (h - fh) // 2)
    left = tf.where(any_ok, left_ok, (w - fw) // 2)
    return top, left, tf.where(any_ok, ch_ok, fh), tf.where(any_ok, cw_ok, fw)


def sample_crop_boxes(h: int, w: int, n: int, seed: int = 0, scale=(0.5, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                      epoch: int = 0) -> np.ndarray:
    """[n, 4] RandomResizedCrop boxes (top, left, crop_h, crop_w) for an h x w image, exactly as the train pipeline
    samples them for examples 0..n-1 of ``epoch`` (for statistics and tests)."""

    def one(i):
        s = tf.random.experimental.stateless_split(example_seed(seed, epoch, i), 8)[0]
        return tf.stack(rrc_params(s, h, w, scale, ratio))

    ds = tf.data.Dataset.range(n).map(one, num_parallel_calls=parallel_calls(0)).batch(max(n, 1))
    ds = ds.with_options(dataset_options())
    return np.concatenate(list(ds.as_numpy_iterator())) if n else np.zeros((0, 4), np.int32)


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


def _trunc(x):
    return tf.where(x < 0, tf.math.ceil(x), tf.floor(x))


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
    shift = _trunc(tf.cast(hue_factor, tf.float64) * 255.0)
    h = tf.math.floormod(h + shift, 256.0)
    return _hsv_to_rgb_pil(h, s, v)


# ------------------------------------------------------------------------------------------------ op table / policies

# op ids, in torchvision RandAugment's augmentation-space order, plus Invert (AutoAugment only)
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
        lambda: posterize(img, _trunc(magf)),
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


def _linspace(a, b, n):
    return np.linspace(a, b, n, dtype=np.float32).astype(np.float64)


def _space(num_bins, h, w, translate_frac=150.0 / 331.0, posterize_top=8):
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


RANDAUGMENT_OPS = OPS[:14]


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
    u = _u(s_prob, [2])
    sgn = tf.cast(_u(s_sign, [2]) < 0.5, tf.int32)
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
        sgn = tf.cast(_u(s_sign, [3]) < 0.5, tf.int32)
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
    order = tf.argsort(_u(s_perm, [4]))
    fb = _u(s_b, [], max(0.0, 1 - brightness), 1 + brightness)
    fc = _u(s_c, [], max(0.0, 1 - contrast), 1 + contrast)
    fs = _u(s_s, [], max(0.0, 1 - saturation), 1 + saturation)
    fh = _u(s_h, [], -hue, hue)
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
    frac = tf.cast(_u(s_area, [10], scale[0], scale[1]), tf.float64)
    aspect = tf.exp(tf.cast(_u(s_ratio, [10], math.log(ratio[0]), math.log(ratio[1])), tf.float64))
    eh = tf.cast(tf.round(tf.sqrt(area * frac * aspect)), tf.int32)
    ew = tf.cast(tf.round(tf.sqrt(area * frac / aspect)), tf.int32)
    ok = (eh < h) & (ew < w)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    eh, ew = eh[first], ew[first]
    upos = _u(s_pos, [2], 0.0, 1.0, tf.float64)
    top = tf.minimum(tf.cast(tf.floor(upos[0] * tf.cast(h - eh + 1, tf.float64)), tf.int32), h - eh)
    left = tf.minimum(tf.cast(tf.floor(upos[1] * tf.cast(w - ew + 1, tf.float64)), tf.int32), w - ew)
    do = (_u(s_p) < p) & tf.reduce_any(ok)

    def erase():
        keep = tf.pad(tf.zeros(tf.stack([eh, ew, 3]), tf.uint8),
                      tf.convert_to_tensor([[top, h - top - eh], [left, w - left - ew], [0, 0]]), constant_values=1)
        return img_u8 * keep

    return tf.cond(do, erase, lambda: img_u8)


# ---------------------------------------------------------------------------------------------------- train transform


def _aug_value(aug: dict, key, default):
    v = aug.get(key, default) if aug else default
    return default if v is None else v


def train_transform(crop_fn, h, w, seed, imgsz, aug: dict):
    """The full Ultralytics train augmentation of one example.

    crop_fn(top, left, crop_h, crop_w) -> uint8 [crop_h, crop_w, 3] crops the (already decoded or lazily decoded)
    oriented image of size (h, w). Returns uint8 [imgsz_h, imgsz_w, 3]."""
    th, tw = parse_imgsz(imgsz)
    s = tf.unstack(tf.random.experimental.stateless_split(seed, 8))
    scale = float(_aug_value(aug, "scale", 0.5))
    rrc_scale = (max(0.0, 1.0 - scale), 1.0)
    top, left, ch, cw = rrc_params(s[0], h, w, rrc_scale)
    crop = crop_fn(top, left, ch, cw)
    fliplr = float(_aug_value(aug, "fliplr", 0.5))
    flipud = float(_aug_value(aug, "flipud", 0.0))
    erasing = float(_aug_value(aug, "erasing", 0.4))
    policy = _aug_value(aug, "auto_augment", "randaugment")
    policy = str(policy).lower() if policy else ""
    no_policy = policy in ("", "none", "false")
    hsv = [float(_aug_value(aug, k, d)) for k, d in (("hsv_h", 0.015), ("hsv_s", 0.7), ("hsv_v", 0.4))]
    if policy == "randaugment" or (no_policy and not any(hsv)):  # the rest on the host (OpenCV/Pillow)
        from jaxyolo.cfg import check_aug_backend
        from jaxyolo.data.host_augment import augment_crop  # (host_augment builds on this module's op tables)

        name = "randaugment" if policy == "randaugment" else ""
        backend = check_aug_backend(_aug_value(aug, "aug_backend", "opencv"))

        def host(c, key):
            return augment_crop(c, key, th, tw, fliplr, flipud, name, erasing, backend)

        x = tf.numpy_function(host, [tf.cast(crop, tf.uint8), s[1]], tf.uint8, stateful=False)
        return tf.ensure_shape(x, [th, tw, 3])
    x = _resize(tf.cast(crop, tf.float32), [th, tw])
    x = tf.ensure_shape(x, [th, tw, 3])
    if fliplr > 0:
        x = tf.cond(_u(s[1]) < fliplr, lambda: tf.reverse(x, [1]), lambda: x)
    if flipud > 0:
        x = tf.cond(_u(s[2]) < flipud, lambda: tf.reverse(x, [0]), lambda: x)
    if no_policy:
        hsv_h, hsv_s, hsv_v = hsv
        x = color_jitter(x, s[3], brightness=hsv_v, contrast=hsv_v, saturation=hsv_s, hue=hsv_h)
    elif policy == "autoaugment":
        x = autoaugment(x, s[3])
    elif policy == "augmix":
        x = augmix(x, s[3])
    else:
        raise ValueError(
            f"Invalid auto_augment policy: {policy!r}. Should be one of 'randaugment', 'autoaugment', 'augmix' or ''"
        )
    x = tf.cast(tf.ensure_shape(x, [th, tw, 3]), tf.uint8)
    if erasing > 0:
        x = random_erasing(x, s[4], p=erasing)
    return x
