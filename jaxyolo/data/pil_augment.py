"""The train augmentation after the crop, on the host with Pillow: exactly the calls torchvision makes on PIL images.

``train_transform`` (transforms.py) samples the RandomResizedCrop box and decodes only that window in TF; with the
default ``auto_augment='randaugment'`` (or no policy and no HSV jitter) the rest runs here, inside the tf.data map
(``tf.numpy_function``): resize -> hflip -> vflip -> RandAugment(2, 9) -> RandomErasing, on one uint8 crop.

* Pixels are exact with Ultralytics/torchvision by construction: the resize is ``Image.resize(BILINEAR)`` (what
  ``F.resized_crop`` does on a PIL image), the RandAugment ops are the same ``Image.transform`` / ``Image.rotate`` /
  ``ImageEnhance`` / ``ImageOps`` calls with the same arguments, except the whole-pixel translations, done as the
  equal array shift (``tests/test_data_transforms.py`` compares each op with torchvision's ``_apply_op``), and
  erasing writes zeros as ``RandomErasing(value=0)`` does on the tensor.
* Speed: Pillow's C code releases the GIL, so the tf.data threads augment in parallel. The whole train pipeline
  needs 1.3-1.6x less CPU per image than Ultralytics' and than the same ops as TF kernels (2.3-3.0 vs 3.8-5.2 ms
  at 224, benchmarks/bench_data.py, RESULTS.md).
* Randomness: every draw comes from a numpy Philox generator keyed by the example's stateless TF seed, so results
  do not depend on threads or order, and a resumed epoch sees the same draws (as the TF path).

The random choices follow torchvision's algorithms (RandAugment: op uniform over 14, sign 50/50 for signed ops;
RandomErasing: p, then 10 (area, log-ratio) attempts), drawn from our generator instead of torch's.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from jaxyolo.data.transforms import RANDAUGMENT_OPS, op_matrix
from jaxyolo.data.transforms import _space as _space_table

_FILL = (0, 0, 0)
_SPACE_CACHE: dict = {}


def apply_op(img: Image.Image, name: str, magnitude: float) -> Image.Image:
    """torchvision ``_apply_op(img, name, magnitude, BILINEAR, fill=None)`` on an RGB PIL image."""
    if name in ("TranslateX", "TranslateY"):  # an integer shift: Pillow's bilinear samples land on pixel centres
        t = int(magnitude)
        return _shift(img, t, 0) if name == "TranslateX" else _shift(img, 0, t)
    if name in ("ShearX", "ShearY"):
        m = op_matrix(name, magnitude, img.height, img.width)
        return img.transform(img.size, Image.AFFINE, m, Image.BILINEAR, fillcolor=_FILL)
    if name == "Rotate":
        return img.rotate(magnitude, Image.BILINEAR, False, None, fillcolor=_FILL)
    if name == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1.0 + magnitude)
    if name == "Color":
        return ImageEnhance.Color(img).enhance(1.0 + magnitude)
    if name == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 + magnitude)
    if name == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(img, magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Identity":
        return img
    raise ValueError(f"unknown augmentation op {name!r}")


def _shift(img: Image.Image, tx: int, ty: int) -> Image.Image:
    """Translate by whole pixels with black fill: what ``F.affine(translate=[tx, ty])`` gives, ~20x cheaper."""
    a = np.asarray(img)
    h, w = a.shape[:2]
    out = np.zeros_like(a)
    if abs(tx) < w and abs(ty) < h:
        out[max(ty, 0) : h + min(ty, 0), max(tx, 0) : w + min(tx, 0)] = a[max(-ty, 0) : h + min(-ty, 0),
                                                                         max(-tx, 0) : w + min(-tx, 0)]
    return Image.fromarray(out, "RGB")


def _space(h: int, w: int, num_bins: int, magnitude: int):
    """[(name, signed magnitude for bin ``magnitude``, signed)] for torchvision RandAugment's 14 ops."""
    key = (h, w, num_bins, magnitude)
    if key not in _SPACE_CACHE:
        table = _space_table(num_bins, h, w)
        _SPACE_CACHE[key] = [(n, float(table[n][0][magnitude]), bool(table[n][1])) for n in RANDAUGMENT_OPS]
    return _SPACE_CACHE[key]


def randaugment(img: Image.Image, rng: np.random.Generator, num_ops: int = 2, magnitude: int = 9,
                num_bins: int = 31) -> Image.Image:
    ops = _space(img.height, img.width, num_bins, magnitude)
    for _ in range(num_ops):
        name, mag, signed = ops[int(rng.integers(len(ops)))]
        if signed and rng.random() < 0.5:
            mag = -mag
        img = apply_op(img, name, mag)
    return img


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


def generator(key) -> np.random.Generator:
    """numpy Philox generator of one example, keyed by its [2] int32 stateless TF seed."""
    k = np.asarray(key).astype(np.int64) & 0xFFFFFFFF
    return np.random.Generator(np.random.Philox(key=[int(k[0]), int(k[1])]))


def augment_crop(crop: np.ndarray, key, th: int, tw: int, fliplr: float, flipud: float, policy: str,
                 erasing: float) -> np.ndarray:
    """One cropped uint8 HWC RGB window -> the augmented uint8 [th, tw, 3] training image."""
    rng = generator(key)
    img = Image.fromarray(np.ascontiguousarray(crop), "RGB").resize((int(tw), int(th)), Image.BILINEAR)
    if fliplr > 0 and rng.random() < fliplr:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if flipud > 0 and rng.random() < flipud:
        img = img.transpose(Image.FLIP_TOP_BOTTOM)
    if policy == "randaugment":
        img = randaugment(img, rng)
    x = np.array(img, dtype=np.uint8)  # a writable copy
    if erasing > 0:
        x = random_erasing(x, rng, erasing)
    return x
