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
runs on the host (``host_augment.py``, one call per batch: ``train_example`` + ``batch_train``) in OpenCV + Pillow
(``aug_backend='opencv'``, the default: the same random choices, pixels within a grey level or two) or in Pillow
alone (``'pillow'``: bit-exact with torchvision). Either needs far less CPU per image than the same ops as TF kernels
(benchmarks/bench_data.py). The TF ops below serve AutoAugment, AugMix and ColorJitter, and the eval transform.

The TF augmentation ops themselves are in ``pil_ops.py`` (Pillow's pixel operations, with their known deviations
from torchvision) and ``tf_augment.py`` (RandAugment's op table, AutoAugment, AugMix, ColorJitter, erasing).

* ``imgsz=(h, w)`` in training: RandomResizedCrop to (h, w) (Ultralytics only accepts an int there).

Randomness is stateless: every random draw of one example comes from a ``[2]`` int seed derived from
(seed, epoch, example index), so results do not depend on threading, order, or how many examples were skipped.
"""

from __future__ import annotations

import math

import numpy as np
from jaxyolo.data._tf import dataset_options, parallel_calls, tf

from jaxyolo.data import decode as _decode  # noqa: F401  (configures TF: host only)
from jaxyolo.data.aug_space import aug_value as _aug_value
from jaxyolo.data.aug_space import host_args as _host_args
from jaxyolo.data.aug_space import settings as _settings
from jaxyolo.data.host_eval import parse_hw
from jaxyolo.data.pil_ops import pil_resize, uniform
from jaxyolo.data.tf_augment import augmix, autoaugment, color_jitter, random_erasing
from jaxyolo.utils.images import to_uint8_hwc3

__all__ = [
    "eval_transform",
    "eval_transform_np",
    "train_transform",
    "train_example",
    "batch_train",
    "rrc_params",
    "sample_crop_boxes",
    "eval_output_size",
    "parse_imgsz",
    "example_seed",
]

# ------------------------------------------------------------------------------------------------------------ helpers


def parse_imgsz(imgsz) -> tuple[int, int]:
    """int or (h, w) -> (h, w) (``host_eval.parse_hw``)."""
    return parse_hw(imgsz)


def example_seed(seed: int, epoch, index) -> tf.Tensor:
    """The [2] int32 stateless seed of one example: fold (epoch, index) into (seed, 0x5EED)."""
    base = tf.constant([int(seed) & 0x7FFFFFFF, 0x5EED], tf.int32)
    k = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(k, tf.cast(index, tf.int64))






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
            lambda: pil_resize(x, tf.stack([nh, nw])),
        )
        top = tf.cast(tf.round(tf.cast(nh - th, tf.float64) / 2.0), tf.int32)  # Python round(): half to even
        left = tf.cast(tf.round(tf.cast(nw - tw, tf.float64) / 2.0), tf.int32)
        x = x[top : top + th, left : left + tw]
    else:
        x = tf.cond(
            tf.logical_and(tf.equal(h, th), tf.equal(w, tw)),
            lambda: x,
            lambda: pil_resize(x, tf.constant([th, tw])),
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
    frac = tf.cast(uniform(s_area, [10], scale[0], scale[1]), tf.float64)
    logr = uniform(s_ratio, [10], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(tf.cast(logr, tf.float64))
    target = area * frac
    cw = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)  # Python round(): half to even, as tf.round
    ch = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    upos = uniform(s_pos, [2], 0.0, 1.0, tf.float64)
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


# ---------------------------------------------------------------------------------------------------- train transform


def _crop(crop_fn, h, w, seed, aug: dict):
    """RandomResizedCrop of one example: (its uint8 crop, the 8 [2] seeds of its random draws; [0] drew the box)."""
    s = tf.unstack(tf.random.experimental.stateless_split(seed, 8))
    scale = float(_aug_value(aug, "scale", 0.5))
    top, left, ch, cw = rrc_params(s[0], h, w, (max(0.0, 1.0 - scale), 1.0))
    return tf.cast(crop_fn(top, left, ch, cw), tf.uint8), s


def train_example(crop_fn, h, w, seed, imgsz, aug: dict):
    """The per-example part of the train augmentation, for ``batch_train``: the augmented uint8 [h, w, 3] image when
    it all runs in TF, else (the crop flattened, its [2] shape, the [2] seed of the host's draws)."""
    if _host_args(imgsz, aug) is None:
        return train_transform(crop_fn, h, w, seed, imgsz, aug)
    crop, s = _crop(crop_fn, h, w, seed, aug)
    return tf.reshape(crop, [-1]), tf.shape(crop)[:2], s[1]


def batch_train(data, batch: int, imgsz, aug: dict, num_parallel_calls):
    """Batches (``train_example``, label) elements into (uint8 [batch, h, w, 3], labels), drop_remainder. On the host
    path the crops are batched ragged and augmented by one ``host_augment.augment_batch`` call per batch: per image,
    the Python call out of tf.data cost about as much as the augmentation itself."""
    args = _host_args(imgsz, aug)
    if args is None:
        return data.batch(batch, drop_remainder=True)
    from jaxyolo.data.host_augment import augment_batch

    th, tw = args[:2]

    def host(flat, splits, shapes, keys):
        return augment_batch(flat, splits, shapes, keys, *args)

    def fn(example, y):
        crops, shapes, keys = example
        x = tf.numpy_function(host, [crops.flat_values, crops.row_splits, shapes, keys], tf.uint8, stateful=False)
        return tf.ensure_shape(x, [batch, th, tw, 3]), y

    data = data.ragged_batch(batch, drop_remainder=True)
    return data.map(fn, num_parallel_calls=num_parallel_calls, deterministic=True)


def train_transform(crop_fn, h, w, seed, imgsz, aug: dict):
    """The full Ultralytics train augmentation of one example.

    crop_fn(top, left, crop_h, crop_w) -> uint8 [crop_h, crop_w, 3] crops the (already decoded or lazily decoded)
    oriented image of size (h, w). Returns uint8 [imgsz_h, imgsz_w, 3]. (The train pipeline runs the same maths as
    ``train_example`` + ``batch_train``.)"""
    th, tw = parse_imgsz(imgsz)
    crop, s = _crop(crop_fn, h, w, seed, aug)
    args = _host_args(imgsz, aug)
    if args is not None:  # the rest on the host (OpenCV/Pillow)
        from jaxyolo.data.host_augment import augment_crop

        def host(c, key):
            return augment_crop(c, key, *args)

        x = tf.numpy_function(host, [crop, s[1]], tf.uint8, stateful=False)
        return tf.ensure_shape(x, [th, tw, 3])
    st = _settings(aug)
    x = pil_resize(tf.cast(crop, tf.float32), [th, tw])
    x = tf.ensure_shape(x, [th, tw, 3])
    if st.fliplr > 0:
        x = tf.cond(uniform(s[1]) < st.fliplr, lambda: tf.reverse(x, [1]), lambda: x)
    if st.flipud > 0:
        x = tf.cond(uniform(s[2]) < st.flipud, lambda: tf.reverse(x, [0]), lambda: x)
    if st.policy == "":
        hsv_h, hsv_s, hsv_v = st.hsv
        x = color_jitter(x, s[3], brightness=hsv_v, contrast=hsv_v, saturation=hsv_s, hue=hsv_h)
    elif st.policy == "autoaugment":
        x = autoaugment(x, s[3])
    elif st.policy == "augmix":
        x = augmix(x, s[3])
    else:
        raise ValueError(
            f"Invalid auto_augment policy: {st.policy!r}. Should be one of 'randaugment', 'autoaugment', 'augmix' or "
            f"''"
        )
    x = tf.cast(tf.ensure_shape(x, [th, tw, 3]), tf.uint8)
    if st.erasing > 0:
        x = random_erasing(x, s[4], p=st.erasing)
    return x
