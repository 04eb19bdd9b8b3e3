"""Image decoding: which decoder reads which file, on the TF side and on the host (PIL) side.

Every file is given a *route* when it is scanned (``folders.scan_split``):

=========  ================================================================  ==========================================
route      files                                                             decoder
=========  ================================================================  ==========================================
JPEG (0)   baseline/progressive JPEG and MPO, grey or YCbCr/RGB              ``tf.io.decode_jpeg(INTEGER_ACCURATE)``
PNG (1)    every PNG (grey, grey+alpha, palette, RGB(A), 1..16-bit)           ``tf.io.decode_png(channels=3)``
BMP (2)    uncompressed 24-bit BMP                                           ``tf.io.decode_bmp(channels=3)``
GIF (3)    GIF without transparency (first frame)                           ``tf.io.decode_gif()[0]``
PIL (4)    everything else: WebP, TIFF, CMYK JPEG, palette/RLE BMP, GIF       ``tf.numpy_function`` running Pillow
           with transparency, any other format Pillow opens
=========  ================================================================  ==========================================

The TF decoders are exact: they give the same pixels as Pillow (and as OpenCV, which Ultralytics uses); JPEGs
with the ISLOW IDCT like Pillow/OpenCV. Alpha is dropped (not composited), as both Pillow's ``convert('RGB')``
and OpenCV's ``IMREAD_COLOR`` do; 16-bit samples keep their high byte (``v >> 8``, as TF and OpenCV do).
EXIF orientation is honoured: the TF routes apply it with exact flips/transposes in the graph; the PIL route uses
``ImageOps.exif_transpose``. The host (PIL) route holds the GIL only between Pillow's C calls; with the common
formats on TF routes it is rarely used, and ``cache='ram'|'disk'`` removes it from the steady state entirely.
"""

from __future__ import annotations

import numpy as np
from jaxyolo.data._tf import tf
from PIL import Image, ImageOps


def configure_tf():
    """tf.data only runs on the host: keep TensorFlow off GPUs (it would otherwise reserve their memory)."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except Exception:  # noqa: BLE001  (already initialised, or no GPU support)
        pass


configure_tf()

from jaxyolo.data.routes import BMP, GIF, JPEG, PIL, PNG, ROUTE_NAMES  # noqa: E402,F401  (D.JPEG etc.)


from jaxyolo.data.host_eval import to_rgb_array as _to_rgb_array  # noqa: E402  (one copy, TF-free)


def pil_load(path) -> np.ndarray:
    """Decode an image file on the host with Pillow: first frame, EXIF orientation applied, RGB uint8 HxWx3."""
    if isinstance(path, np.ndarray):
        path = path.item()
    if isinstance(path, bytes):
        path = path.decode()
    with Image.open(path) as im:
        im.seek(0)
        im.load()
        try:
            im2 = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF: keep the pixels as stored
            im2 = im
        return np.ascontiguousarray(_to_rgb_array(im2))


def _pil_load_np(path):
    return pil_load(path)


def _pil_branch(path):
    img = tf.numpy_function(_pil_load_np, [path], tf.uint8, stateful=False)
    img.set_shape([None, None, 3])
    return img


def apply_orientation(img, orient):
    """EXIF orientation 1..8 -> the upright image (same as PIL.ImageOps.exif_transpose)."""
    orient = tf.cast(orient, tf.int32)
    branches = [
        lambda: img,  # 0 (unknown) / 1
        lambda: img,
        lambda: tf.reverse(img, [1]),  # 2 FLIP_LEFT_RIGHT
        lambda: tf.reverse(img, [0, 1]),  # 3 ROTATE_180
        lambda: tf.reverse(img, [0]),  # 4 FLIP_TOP_BOTTOM
        lambda: tf.transpose(img, [1, 0, 2]),  # 5 TRANSPOSE
        lambda: tf.reverse(tf.transpose(img, [1, 0, 2]), [1]),  # 6 ROTATE_270 (90 deg clockwise)
        lambda: tf.reverse(tf.transpose(img, [1, 0, 2]), [0, 1]),  # 7 TRANSVERSE
        lambda: tf.reverse(tf.transpose(img, [1, 0, 2]), [0]),  # 8 ROTATE_90 (counter-clockwise)
    ]
    out = tf.switch_case(tf.clip_by_value(orient, 0, 8), branches)
    return tf.ensure_shape(out, [None, None, 3])


def decode_file(path, route, orient, static_route: int | None = None, upright: bool = False):
    """TF graph: decode one file along its route, upright, uint8 [h, w, 3].

    ``static_route`` (every file of the source takes this route) and ``upright`` (every file's orientation is 0/1)
    are trace-time facts of a source: they leave the per-file ``switch_case`` out of the graph, the same ops without
    the control flow, which tf.data runs as function calls (~0.1 ms a file: most of a small image's decode)."""

    def rd():
        return tf.io.read_file(path)

    branches = [
        lambda: tf.io.decode_jpeg(rd(), channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(rd(), channels=3),
        lambda: tf.io.decode_bmp(rd(), channels=3),
        lambda: tf.io.decode_gif(rd())[0],
        lambda: _pil_branch(path),
    ]
    if static_route is not None:
        img = branches[int(static_route)]()
    else:
        img = tf.switch_case(tf.cast(route, tf.int32), branches)
    img = tf.ensure_shape(img, [None, None, 3])
    return img if upright else apply_orientation(img, orient)


def decode_crop_file(path, route, orient, top, left, ch, cw, static_route: int | None = None, upright: bool = False):
    """TF graph: decode + crop (top, left, ch, cw) of the upright image. Plain JPEGs (orientation 1) decode only the
    crop window (``decode_and_crop_jpeg``; pixels can differ by a few levels at chroma block edges from a full
    decode), everything else decodes fully, then crops. ``static_route``/``upright``: as in ``decode_file``; when
    they settle which of the two it is, the graph has no ``cond``."""

    def jpeg_crop():
        win = tf.stack([top, left, ch, cw])
        return tf.io.decode_and_crop_jpeg(tf.io.read_file(path), win, channels=3, dct_method="INTEGER_ACCURATE")

    def full():
        img = decode_file(path, route, orient, static_route, upright)
        return img[top : top + ch, left : left + cw]

    if static_route is not None and (static_route != JPEG or upright):
        out = jpeg_crop() if static_route == JPEG else full()
    else:
        use_crop = tf.logical_and(tf.equal(tf.cast(route, tf.int32), JPEG),
                                  tf.less_equal(tf.cast(orient, tf.int32), 1))
        out = tf.cond(use_crop, jpeg_crop, full)
    return tf.ensure_shape(out, [None, None, 3])


def decode_bytes(data):
    """TF graph: decode encoded image bytes (TFDS): JPEG with the accurate IDCT, anything else via decode_image."""
    img = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    return tf.ensure_shape(img, [None, None, 3])
