"""The train augmentation after the crop, on the host: torchvision's ops on one uint8 crop, in two back-ends.

``train_transform`` (transforms.py) samples the RandomResizedCrop box and decodes only that window in TF; with the
default ``auto_augment='randaugment'`` (or no policy and no HSV jitter) the rest runs here, one ``tf.numpy_function``
call per batch of crops (``augment_batch``): resize -> hflip -> vflip -> RandAugment(2, 9) -> RandomErasing.

Back-ends (``aug_backend``), identical in every random choice (same draws, same order, same crop, flips, ops,
magnitudes and erasing box); they differ only in how three kinds of pixel work are computed:

* ``pillow``: bit-exact with Ultralytics/torchvision by construction: the resize is ``Image.resize(BILINEAR)`` (what
  ``F.resized_crop`` does on a PIL image), Rotate/ShearX/ShearY are the same ``Image.rotate``/``Image.transform``
  calls with the same matrices.
* ``opencv`` (the default): those three run in OpenCV, 4-5x cheaper: ``cv2.resize`` (bilinear, after a small
  smoothing that matches Pillow's antialiasing when shrinking, ``_prefilter``; INTER_AREA beyond 3x) and
  ``cv2.warpAffine`` with Pillow's matrix and Pillow's inside/outside rule. Pixels differ from the Pillow ones by
  less than one grey level on average, 99% within 3-4, warps within 1 (tests/test_data_transforms.py bounds it).

Exact in both: flips, erasing (zeros, as ``RandomErasing(value=0)`` on the tensor), the whole-pixel translations (the
equal array shift), Sharpness (the SMOOTH filter in OpenCV integer arithmetic, rounded as Pillow rounds it, then
Pillow's blend in numpy), Color (Pillow's grey conversion and blend in numpy) and the seven tone ops (lookup tables
built from Pillow's formulas, applied with ``cv2.LUT``; Contrast's grey mean in numpy).

Randomness: every draw comes from a numpy Philox generator keyed by the example's stateless TF seed, so results do
not depend on threads or order, and a resumed epoch sees the same draws. The random choices follow torchvision's
algorithms (RandAugment: op uniform over 14, sign 50/50 for signed ops; RandomErasing: p, then 10 (area,
log-ratio) attempts), drawn from our generator instead of torch's. Images move between the two libraries as
``PIL.Image`` or uint8 HWC arrays, converted only where an op needs the other kind.
"""

from __future__ import annotations

import functools
import math
import threading

import cv2
import numpy as np
from PIL import Image, ImageEnhance

from jaxyolo.data.aug_space import RANDAUGMENT_OPS, op_matrix
from jaxyolo.data.aug_space import space as _space_table
from jaxyolo.data.dataset import read_only

_FILL = (0, 0, 0)
_SPACE_CACHE: dict = {}
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32)  # ImageFilter.SMOOTH, divisor 13
cv2.setNumThreads(1)  # one image per call, many calls in parallel: OpenCV's own threads would only contend


def _pil(x) -> Image.Image:
    return x if isinstance(x, Image.Image) else Image.fromarray(np.ascontiguousarray(x), "RGB")


def _arr(x) -> np.ndarray:
    return np.asarray(x) if isinstance(x, Image.Image) else x


def _hw(x) -> tuple[int, int]:
    return (x.height, x.width) if isinstance(x, Image.Image) else x.shape[:2]


def resize(x, th: int, tw: int, backend: str = "pillow"):
    """torchvision ``F.resize(img, [th, tw], BILINEAR)`` on a PIL image (``pillow``), or OpenCV's equivalent."""
    if backend == "pillow":
        return _pil(x).resize((int(tw), int(th)), Image.BILINEAR)
    a = np.ascontiguousarray(_arr(x))
    sy, sx = a.shape[0] / th, a.shape[1] / tw
    if sy > 3.0 and sx > 3.0:  # big reductions (photos at a small imgsz): area averaging, cost ~ input pixels
        return cv2.resize(a, (int(tw), int(th)), interpolation=cv2.INTER_AREA)
    ky, kx = _prefilter(sy), _prefilter(sx)
    if ky is not None or kx is not None:
        one = np.ones(1, np.float32)
        a = cv2.sepFilter2D(a, -1, one if kx is None else kx, one if ky is None else ky,
                            borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(a, (int(tw), int(th)), interpolation=cv2.INTER_LINEAR)


def _prefilter(scale: float):
    """Smoothing that turns bilinear interpolation into (nearly) Pillow's antialiased bilinear when shrinking by
    ``scale`` > 1: Pillow's triangle filter is ``scale`` pixels wide, variance scale**2/6, bilinear's 1/6, so the
    difference, (scale**2 - 1)/6, is added by a 3-tap kernel [v/2, 1-v, v/2] (a Gaussian beyond 2.2x; beyond 3x on
    both sides ``resize`` uses INTER_AREA instead, whose cost does not grow with the factor). Measured vs Pillow on
    noisy photo-like JPEGs, 1.0-2.5x: mean |diff| 0.4-0.6, 99% of pixels within 2; 4x cheaper than Pillow, where
    INTER_AREA is as slow as Pillow at these factors and plain INTER_LINEAR differs 2-4x more (aliased noise)."""
    if scale <= 1.0:
        return None
    v = (scale * scale - 1.0) / 6.0
    if v <= 2.0 / 3.0:
        return np.array([v / 2, 1.0 - v, v / 2], np.float32)
    sigma = math.sqrt(v)
    return cv2.getGaussianKernel(2 * math.ceil(3 * sigma) + 1, sigma, cv2.CV_32F)


def warp(x, m, backend: str = "pillow"):
    """Pillow ``Image.transform(size, AFFINE, m, BILINEAR, fillcolor=0)`` (``pillow``) or OpenCV's equivalent: output
    pixel (x, y) samples the input at ``m @ (x+.5, y+.5)``, 0 outside the input, bilinear with edge clamping."""
    if backend == "pillow":
        img = _pil(x)
        return img.transform(img.size, Image.AFFINE, m, Image.BILINEAR, fillcolor=_FILL)
    a = np.ascontiguousarray(_arr(x))
    h, w = a.shape[:2]
    inv, inside = _warp_setup(tuple(float(v) for v in m), h, w)
    out = cv2.warpAffine(a, inv, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return cv2.bitwise_and(out, out, mask=inside)


@functools.lru_cache(maxsize=256)  # RandAugment warps at one magnitude: 6 matrices per image size
def _warp_setup(m: tuple, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``warp``'s matrix in pixel-index coordinates, and Pillow's inside mask: 0 where the sample point lies outside
    [0, W) x [0, H) (nearest rounding gives the same test). Both are read only."""
    inv = np.array([[m[0], m[1], m[2] + 0.5 * (m[0] + m[1]) - 0.5],
                    [m[3], m[4], m[5] + 0.5 * (m[3] + m[4]) - 0.5]], np.float64)
    inside = cv2.warpAffine(np.ones((h, w), np.uint8), inv, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inv.flags.writeable = inside.flags.writeable = False
    return inv, inside


def sharpness(x, factor: float):
    """``ImageEnhance.Sharpness(img).enhance(factor)``, exactly: Pillow blends with the SMOOTH-filtered image (sums of
    integers / 13, rounded; never a tie) whose outermost rows/columns are the original's."""
    a = np.ascontiguousarray(_arr(x))
    h, w = a.shape[:2]
    if h < 3 or w < 3:
        return ImageEnhance.Sharpness(_pil(a)).enhance(factor)
    s = cv2.filter2D(a, cv2.CV_16S, _SMOOTH, borderType=cv2.BORDER_REPLICATE).astype(np.int32)
    deg = a.copy()
    deg[1:-1, 1:-1] = ((2 * s[1:-1, 1:-1] + 13) // 26).astype(np.uint8)  # round(s / 13)
    return _blend(deg, a, factor)


def _blend(deg: np.ndarray, a: np.ndarray, factor: float) -> np.ndarray:
    """``Image.blend(deg, a, factor)`` on uint8 arrays, as Pillow computes it: float32 ``deg + factor * (a - deg)``,
    clipped, truncated (no image round trips: ~10 us of a digits image's ~55)."""
    d = deg.astype(np.float32)
    return np.clip(d + np.float32(factor) * (a.astype(np.float32) - d), 0, 255).astype(np.uint8)


_GREY_WEIGHTS = np.array([19595, 38470, 7471], np.uint32)


def _grey(a: np.ndarray) -> np.ndarray:
    """Pillow's ``convert('L')`` of an RGB array: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (ITU-R 601-2), in
    uint32 (at most 255 * 65536)."""
    return ((a.astype(np.uint32) @ _GREY_WEIGHTS + 0x8000) >> 16).astype(np.uint8)


def color(x, factor: float):
    """``ImageEnhance.Color(img).enhance(factor)``, exactly: a blend with the image's grey (``_grey``) as RGB."""
    a = np.ascontiguousarray(_arr(x))
    return _blend(np.repeat(_grey(a)[..., None], 3, axis=2), a, factor)


# ------------------------------------------------------------------------------- tone ops as exact lookup tables
# Pillow's own formulas (ImageEnhance blends: float32, clip, truncate; ImageOps tables), applied with cv2.LUT on the
# array: 2-4x cheaper than the Pillow calls plus the array <-> image copies, and OpenCV releases the GIL meanwhile.

_RAMP = np.arange(256, dtype=np.float32)


# The tables below are cached: each depends on one or two small numbers (RandAugment's fixed magnitudes, a grey
# mean, a channel's range), and building one is ~10 numpy calls, more than applying it to a small image. They
# are read-only: every caller shares them.
@functools.lru_cache(maxsize=1024)
def _blend_lut(degenerate: int, factor: float) -> np.ndarray:
    """``Image.blend(constant image, img, factor)`` per value: (float)(deg + factor * (v - deg)), clip, truncate."""
    d = np.float32(degenerate)
    return read_only(np.clip(d + np.float32(factor) * (_RAMP - d), 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=64)
def _solarize_lut(threshold: float) -> np.ndarray:
    """``ImageOps.solarize(img, threshold)``: values at or above the threshold inverted."""
    ramp = np.arange(256)
    return read_only(np.where(ramp < threshold, ramp, 255 - ramp).astype(np.uint8))


_CHANNEL_OFFSETS = np.array([0, 256, 512], np.intp)


def _hist(a: np.ndarray) -> np.ndarray:
    """[3, 256] int64 per-channel histogram (``Image.histogram()`` of an RGB image)."""
    return np.bincount((a.reshape(-1, 3) + _CHANNEL_OFFSETS).ravel(), minlength=768).reshape(3, 256).astype(np.int64)


def _apply_luts(a: np.ndarray, luts) -> np.ndarray:
    """One table for all channels ([256]) or one per channel ([3, 256])."""
    luts = np.asarray(luts, np.uint8)
    return cv2.LUT(a, luts if luts.ndim == 1 else np.ascontiguousarray(luts.T)[:, None, :])


def _autocontrast_luts(a: np.ndarray) -> np.ndarray:
    """``ImageOps.autocontrast(img)`` (cutoff 0) as [3, 256] tables. Pillow takes each channel's lowest and highest
    used levels from its histogram, i.e. its min and max (``cv2.minMaxLoc``: ~2x cheaper than the histogram on small
    images, and numpy's min over the pixel axis ~3x dearer)."""
    return np.stack([_autocontrast_lut(int(lo), int(hi))
                     for lo, hi, _, _ in map(cv2.minMaxLoc, cv2.split(np.ascontiguousarray(a)))])


@functools.lru_cache(maxsize=4096)
def _autocontrast_lut(lo: int, hi: int) -> np.ndarray:
    """One channel's table: int(v * 255/(hi-lo) - lo * 255/(hi-lo)), clipped to 0..255; the identity for a channel
    with one level (hi <= lo)."""
    ramp = np.arange(256)
    if hi <= lo:
        return read_only(ramp.astype(np.uint8))
    scale = 255.0 / (hi - lo)
    return read_only(np.clip(np.trunc(ramp * scale + (-lo * scale)), 0, 255).astype(np.uint8))


def _equalize_luts(hist: np.ndarray) -> np.ndarray:
    """``ImageOps.equalize(img)``: per channel (step // 2 + values below v) // step, step = (count - count of the
    last used value) // 255; identity when one value or step 0. All three channels at once."""
    used = hist > 0
    last = 255 - np.argmax(used[:, ::-1], axis=1)
    rows = np.arange(len(hist))
    step = (hist.sum(axis=1) - hist[rows, last]) // 255
    step = np.where(used.sum(axis=1) > 1, step, 0)
    below = np.cumsum(hist, axis=1) - hist
    safe = np.maximum(step, 1)[:, None]
    luts = np.minimum((safe // 2 + below) // safe, 255)  # (never negative)
    return np.where((step > 0)[:, None], luts, np.arange(256))


def _l_mean(a: np.ndarray) -> int:
    """``int(ImageStat.Stat(img.convert('L')).mean[0] + 0.5)``, the grey level ImageEnhance.Contrast blends with."""
    return int(float(_grey(a).sum(dtype=np.int64)) / a.shape[0] / a.shape[1] + 0.5)


def _tone(a: np.ndarray, name: str, magnitude: float) -> np.ndarray | None:
    """The tone ops on an array, exactly as Pillow computes them; None for the others."""
    if name == "Brightness":
        return _apply_luts(a, _blend_lut(0, 1.0 + magnitude))
    if name == "Contrast":
        return _apply_luts(a, _blend_lut(_l_mean(a), 1.0 + magnitude))
    if name == "Posterize":
        return cv2.bitwise_and(a, np.full_like(a, ~(2 ** (8 - int(magnitude)) - 1) & 0xFF))
    if name == "Solarize":
        return _apply_luts(a, _solarize_lut(magnitude))
    if name == "Invert":
        return cv2.bitwise_not(a)
    if name == "AutoContrast":
        return _apply_luts(a, _autocontrast_luts(a))
    if name == "Equalize":
        return _apply_luts(a, _equalize_luts(_hist(a)))
    return None


def apply_op(x, name: str, magnitude: float, backend: str = "pillow"):
    """torchvision ``_apply_op(img, name, magnitude, BILINEAR, fill=None)`` on an RGB image (PIL or uint8 HWC array;
    returns either kind). Every op is exact in both back-ends except, with ``opencv``, the three warps."""
    if name in ("TranslateX", "TranslateY"):  # an integer shift: Pillow's bilinear samples land on pixel centres
        t = int(magnitude)
        return _shift(_arr(x), t, 0) if name == "TranslateX" else _shift(_arr(x), 0, t)
    if name in ("ShearX", "ShearY", "Rotate"):
        h, w = _hw(x)
        if name == "Rotate" and backend == "pillow":
            return _pil(x).rotate(magnitude, Image.BILINEAR, False, None, fillcolor=_FILL)
        return warp(x, op_matrix(name, magnitude, h, w), backend)  # (Rotate: the matrix Image.rotate builds)
    if name == "Sharpness":
        return sharpness(x, 1.0 + magnitude)
    if name == "Color":
        return color(x, 1.0 + magnitude)
    if name == "Identity":
        return x
    out = _tone(np.ascontiguousarray(_arr(x)), name, magnitude)
    if out is None:
        raise ValueError(f"unknown augmentation op {name!r}")
    return out


def _shift(a: np.ndarray, tx: int, ty: int) -> np.ndarray:
    """Translate by whole pixels with black fill: what ``F.affine(translate=[tx, ty])`` gives, ~20x cheaper."""
    h, w = a.shape[:2]
    out = np.zeros_like(a)
    if abs(tx) < w and abs(ty) < h:
        out[max(ty, 0) : h + min(ty, 0), max(tx, 0) : w + min(tx, 0)] = a[max(-ty, 0) : h + min(-ty, 0),
                                                                         max(-tx, 0) : w + min(-tx, 0)]
    return out


def _space(h: int, w: int, num_bins: int, magnitude: int):
    """[(name, signed magnitude for bin ``magnitude``, signed)] for torchvision RandAugment's 14 ops."""
    key = (h, w, num_bins, magnitude)
    if key not in _SPACE_CACHE:
        table = _space_table(num_bins, h, w)
        _SPACE_CACHE[key] = [(n, float(table[n][0][magnitude]), bool(table[n][1])) for n in RANDAUGMENT_OPS]
    return _SPACE_CACHE[key]


def randaugment(x, rng: np.random.Generator, num_ops: int = 2, magnitude: int = 9, num_bins: int = 31,
                backend: str = "pillow"):
    ops = _space(*_hw(x), num_bins, magnitude)
    for _ in range(num_ops):
        name, mag, signed = ops[int(rng.integers(len(ops)))]
        if signed and rng.random() < 0.5:
            mag = -mag
        x = apply_op(x, name, mag, backend)
    return x


def random_erasing(x: np.ndarray, rng: np.random.Generator, p: float, scale=(0.02, 0.33),
                   ratio=(0.3, 3.3)) -> np.ndarray:
    """torchvision RandomErasing(p, scale, ratio, value=0) on a uint8 HWC array (in place)."""
    if not rng.random() < p:
        return x
    h, w = x.shape[:2]
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        erase_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_r))
        eh = int(round(math.sqrt(erase_area * aspect)))
        ew = int(round(math.sqrt(erase_area / aspect)))
        if not (eh < h and ew < w):
            continue
        top = int(rng.integers(0, h - eh + 1))
        left = int(rng.integers(0, w - ew + 1))
        x[top : top + eh, left : left + ew] = 0
        return x
    return x


_THREAD = threading.local()
_ZERO4 = np.zeros(4, np.uint64)


def generator(key) -> np.random.Generator:
    """numpy Philox generator of one example, keyed by its [2] int32 stateless TF seed: the stream of
    ``Generator(Philox(key=key & 0xFFFFFFFF))``. It is the calling thread's one generator with its state set (counter
    0, empty buffer), ~4 us instead of ~25 for a new one: valid until the thread's next call."""
    g = getattr(_THREAD, "generator", None)
    if g is None:
        g = _THREAD.generator = np.random.Generator(np.random.Philox(0))
    k = (np.asarray(key).astype(np.int64) & 0xFFFFFFFF).astype(np.uint64)
    g.bit_generator.state = {"bit_generator": "Philox", "state": {"counter": _ZERO4, "key": k}, "buffer": _ZERO4,
                             "buffer_pos": 4, "has_uint32": 0, "uinteger": 0}
    return g


def augment_crop(crop: np.ndarray, key, th: int, tw: int, fliplr: float, flipud: float, policy: str,
                 erasing: float, backend: str = "pillow") -> np.ndarray:
    """One cropped uint8 HWC RGB window -> the augmented uint8 [th, tw, 3] training image."""
    rng = generator(key)
    x = resize(crop, th, tw, backend)
    if fliplr > 0 and rng.random() < fliplr:
        x = cv2.flip(_arr(x), 1)  # (a contiguous copy in ~6 us; numpy's copy of a reversed view takes ~200)
    if flipud > 0 and rng.random() < flipud:
        x = cv2.flip(_arr(x), 0)
    if policy == "randaugment":
        x = randaugment(x, rng, backend=backend)
    x = np.array(_arr(x), dtype=np.uint8)  # a writable, contiguous copy
    if erasing > 0:
        x = random_erasing(x, rng, erasing)
    return x


def augment_batch(flat: np.ndarray, splits: np.ndarray, shapes: np.ndarray, keys: np.ndarray, th: int, tw: int,
                  fliplr: float, flipud: float, policy: str, erasing: float, backend: str = "pillow") -> np.ndarray:
    """``augment_crop`` of a batch of crops given flattened (a ragged batch's values and row splits, [n, 2] crop
    shapes, [n, 2] keys) -> uint8 [n, th, tw, 3]; one call per batch instead of one per image."""
    out = np.empty((len(shapes), th, tw, 3), np.uint8)
    for j, (h, w) in enumerate(shapes):
        crop = flat[splits[j] : splits[j + 1]].reshape(h, w, 3)
        out[j] = augment_crop(crop, keys[j], th, tw, fliplr, flipud, policy, erasing, backend)
    return out
