"""Prediction: any source -> the validation preprocessing -> batched inference -> ``Results``.

Sources (as Ultralytics): an image file, a directory (its images and videos, sorted by name), a glob (``'dir/*.jpg'``,
``'**'`` recursive), a ``.txt`` file listing paths (relative paths resolve against the list's folder), a list of any of
these, numpy HWC **BGR** uint8 arrays (OpenCV order, as Ultralytics), PIL images, and video files (OpenCV needed).

Preprocessing is Ultralytics' ``classify_transforms`` bit for bit, with Pillow as torchvision runs it on PIL images:
shortest side -> imgsz (PIL bilinear, antialiased; long side ``int(imgsz * long / short)``), centre crop (offsets
``round((size - crop) / 2)``), /255 in the model; a non-square ``imgsz=(h, w)`` resizes straight to (h, w). Validation
of image folders runs the same function (``jaxyolo.data.host_eval``); ``transform='tf'`` selects the tf.data eval ops
(``jaxyolo.data.eval_transform_np``, what TFDS validation uses), whose float resize can differ from Pillow's by one
grey level.

Batches are padded to an already compiled size or the next power of two (at most ``batch``), so a run compiles few
shapes. An unreadable image is skipped with a warning naming it. Predicting does not import TensorFlow.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from jaxyolo.data.host_eval import classify_transform, parse_hw, read_rgb, to_rgb_array
from jaxyolo.engine.results import Results
from jaxyolo.utils.images import to_uint8_hwc3

LOGGER = logging.getLogger("jaxyolo")

IMG_FORMATS = {"avif", "bmp", "dng", "gif", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp",
               "pfm", "ppm", "pgm", "pbm"}
VID_FORMATS = {"asf", "avi", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm"}


class SourceError(ValueError):
    """A prediction source that cannot be used (unsupported type, URL, nothing found)."""


# ----------------------------------------------------------------------------------------------------------- sources


@dataclass
class _Item:
    kind: str  # 'file', 'video', 'array'
    path: str  # file path, or 'imageN.jpg' for in-memory images
    data: Any = None  # the BGR array for 'array'


def _suffix(p: str) -> str:
    return Path(p).suffix.lower().lstrip(".")


def _expand_path(p: str, parent: Path | None = None) -> list[_Item]:
    s = str(p).strip()
    if s.lower().startswith(("http://", "https://", "rtsp://", "rtmp://", "tcp://")):
        raise SourceError(f"{s}: URLs and streams cannot be used (jaxyolo works offline); download the file and pass "
                          f"its local path")
    if s.isnumeric() or s == "screen":
        raise SourceError(f"source={s}: webcams and screenshots are not supported; pass image or video files")
    if "*" in s or "?" in s:
        files = sorted(glob.glob(os.path.expanduser(s), recursive="**" in s))
        return [it for f in files if os.path.isfile(f) for it in _classify_file(str(Path(f).absolute()), strict=False)]
    path = Path(s).expanduser()
    if not path.exists() and parent is not None and (parent / s).exists():
        path = parent / s
    path = path.absolute()
    if path.is_dir():
        files = sorted(str(f) for f in path.iterdir() if f.is_file())
        items = [it for f in files for it in _classify_file(f, strict=False)]
        if not items:
            raise SourceError(f"no images or videos found in {path} (image formats: {', '.join(sorted(IMG_FORMATS))}; "
                              f"videos: {', '.join(sorted(VID_FORMATS))})")
        return items
    if path.is_file():
        if path.suffix.lower() == ".txt" and parent is None:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            return [it for ln in lines for it in _expand_path(ln, parent=path.parent)]
        return _classify_file(str(path), strict=True)
    raise FileNotFoundError(f"source {s!r} does not exist")


def _classify_file(f: str, strict: bool) -> list[_Item]:
    sfx = _suffix(f)
    if sfx in VID_FORMATS:
        return [_Item("video", f)]
    if sfx in IMG_FORMATS or strict:  # a single named file of unknown type: try to read it as an image
        return [_Item("file", f)]
    return []


def resolve_source(source) -> list[_Item]:
    """Expand ``source`` into image/video items (nothing is read yet)."""
    if source is None:
        raise SourceError("no source given: pass an image, a folder, a glob, a list of paths, a numpy array or a PIL "
                          "image, e.g. model.predict('image.jpg') or source=path/to/images")
    if isinstance(source, (str, os.PathLike)):
        return _expand_path(str(source))
    if isinstance(source, np.ndarray):
        if source.ndim == 4:  # a stack of HWC BGR images
            return [_Item("array", f"image{i}.jpg", a) for i, a in enumerate(source)]
        return [_Item("array", "image0.jpg", source)]
    if _is_pil(source):
        return [_Item("array", "image0.jpg", _pil_to_bgr(source))]
    if isinstance(source, (list, tuple)):
        items = []
        for i, s in enumerate(source):
            if isinstance(s, np.ndarray):
                items.append(_Item("array", f"image{i}.jpg", s))
            elif _is_pil(s):
                items.append(_Item("array", getattr(s, "filename", "") or f"image{i}.jpg", _pil_to_bgr(s)))
            elif isinstance(s, (str, os.PathLike)):
                items.extend(_expand_path(str(s)))
            else:
                raise SourceError(f"source[{i}] is a {type(s).__name__}; expected a path, a numpy array or a PIL "
                                  f"image")
        if not items:
            raise SourceError("the source list is empty")
        return items
    if type(source).__module__.startswith("torch"):
        raise SourceError("torch tensors are not accepted as sources; pass numpy HWC BGR arrays or image paths")
    raise SourceError(f"unsupported source type {type(source).__name__}; expected a path, a glob, a list, a numpy "
                      f"array or a PIL image")


def _is_pil(x) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, Image.Image)


def _pil_to_bgr(im) -> np.ndarray:
    return np.ascontiguousarray(to_rgb_array(im)[..., ::-1])


def parse_imgsz(imgsz) -> tuple[int, int]:
    """int or (h, w) -> (h, w) (without importing the TensorFlow-based transforms)."""
    return parse_hw(imgsz)


def _bgr_from_array(a: np.ndarray) -> np.ndarray:
    try:
        return to_uint8_hwc3(a)
    except ValueError:
        raise SourceError(f"an image array must be HWC (BGR, grey or BGRA), got shape {np.shape(a)}") from None


def read_image(path: str) -> np.ndarray | None:
    """Decode an image file to BGR uint8 HWC like ``cv2.imread(IMREAD_COLOR)`` (first frame, EXIF orientation
    applied, alpha dropped, 16-bit samples keep their high byte); ``None`` when it cannot be read."""
    rgb = read_rgb(path)
    return None if rgb is None else np.ascontiguousarray(rgb[..., ::-1])


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SourceError("reading videos needs OpenCV: pip install opencv-python-headless") from None
    return cv2


@dataclass
class Frame:
    path: str
    bgr: np.ndarray
    index: int  # image number (1-based) or video frame number
    total: int  # images in the source list or frames in the video
    video: bool = False


def iter_frames(items: list[_Item], vid_stride: int = 1) -> Iterator[Frame]:
    n_img = sum(it.kind != "video" for it in items)
    k = 0
    for it in items:
        if it.kind == "video":
            cv2 = _cv2()
            cap = cv2.VideoCapture(it.path)
            if not cap.isOpened():
                LOGGER.warning(f"WARNING: cannot open video {it.path}; skipped")
                continue
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) / max(vid_stride, 1))
            f = 0
            try:
                while True:
                    ok = cap.grab()
                    if not ok:
                        break
                    f += 1
                    if (f - 1) % max(vid_stride, 1):
                        continue
                    ok, im = cap.retrieve()
                    if not ok or im is None:
                        break
                    yield Frame(it.path, im, (f - 1) // max(vid_stride, 1) + 1, total, video=True)
            finally:
                cap.release()
            continue
        k += 1
        if it.kind == "array":
            yield Frame(it.path, _bgr_from_array(it.data), k, n_img)
            continue
        im = read_image(it.path)
        if im is None:
            LOGGER.warning(f"WARNING: image read error, skipped: {it.path}")
            continue
        yield Frame(it.path, im, k, n_img)


# ----------------------------------------------------------------------------------------------------- preprocessing


def get_transform(kind: str = "pil") -> Callable[[np.ndarray, Any], np.ndarray]:
    if kind == "pil":
        return classify_transform
    if kind == "tf":
        from jaxyolo.data import eval_transform_np

        return eval_transform_np
    raise ValueError(f"transform={kind!r}: expected 'pil' (Ultralytics-exact, default) or 'tf' (the tf.data "
                     f"validation ops)")


# ----------------------------------------------------------------------------------------------------------- runners


class JaxRunner:
    """The JAX model as a batch function: uint8 NHWC RGB -> (B, nc) probabilities (one compile per batch shape)."""

    fmt = "jax"
    fixed_batch = None

    def __init__(self, module, variables):
        import jax

        from jaxyolo.nn.cpu_conv import inference_jit

        self.variables = jax.device_put(variables)
        self._fn = inference_jit(lambda v, x: module.apply(v, x.astype("float32") / 255.0, train=False))
        self.sizes: set[int] = set()  # batch sizes compiled so far

    def __call__(self, images_u8: np.ndarray) -> np.ndarray:
        self.sizes.add(len(images_u8))
        return np.asarray(self._fn(self.variables, images_u8), dtype=np.float32)


def padded_size(runner, n: int, batch: int) -> int:
    """Batch size to run ``n`` images at: an already compiled size that fits, else the next power of two (<= batch);
    a static-batch exported model pads by itself (n)."""
    if getattr(runner, "fixed_batch", None):
        return n
    fits = [s for s in getattr(runner, "sizes", ()) if s >= n]
    return min(fits) if fits else _bucket(n, batch)


class BackendRunner:
    """An exported model (``jaxyolo.engine.backends.Backend``) as the same batch function."""

    def __init__(self, backend):
        self.backend = backend
        self.fmt = backend.fmt
        self.fixed_batch = backend.batch

    def __call__(self, images_u8: np.ndarray) -> np.ndarray:
        x = images_u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return np.asarray(self.backend(x), dtype=np.float32)


def _bucket(n: int, batch: int) -> int:
    """Padded batch size for ``n`` images: the next power of two, capped at ``batch``."""
    return min(batch, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


# ----------------------------------------------------------------------------------------------------------- predict


def _unique_base(stem: str, used: set) -> str:
    base, k = stem, 1
    while base in used:
        k += 1
        base = f"{stem}-{k}"
    used.add(base)
    return base


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of each record (survives redirection, e.g. under pytest)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        import sys

        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def ensure_logging(verbose: bool = True) -> None:
    """A stdout handler on the 'jaxyolo' logger (shared with the trainer's), INFO level when ``verbose``."""
    if not any(getattr(h, "_jaxyolo", False) for h in LOGGER.handlers):
        h = _StdoutHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        h._jaxyolo = True
        LOGGER.addHandler(h)
        LOGGER.propagate = False
    if verbose and LOGGER.getEffectiveLevel() > logging.INFO:
        LOGGER.setLevel(logging.INFO)


def predict(runner: Callable[[np.ndarray], np.ndarray], names: dict, source, *, imgsz, batch: int = 16,
            save: bool = False, save_txt: bool = False, save_conf: bool = False, project=None, name=None,
            exist_ok: bool = False, verbose: bool = True, vid_stride: int = 1, show: bool = False,
            transform: str = "pil") -> Iterator[Results]:
    """An iterator of one ``Results`` per image / video frame of ``source`` (see the module docstring).

    The source is resolved now, so a missing path or an unsupported source raises here, before any work."""
    items = resolve_source(source)
    parse_imgsz(imgsz)
    tf_fn = get_transform(transform)
    ensure_logging(verbose)
    return _predict_iter(runner, names, items, source, imgsz=imgsz, batch=batch, save=save, save_txt=save_txt,
                         save_conf=save_conf, project=project, name=name, exist_ok=exist_ok, verbose=verbose,
                         vid_stride=vid_stride, show=show, tf_fn=tf_fn)


def _predict_iter(runner, names, items, source, *, imgsz, batch, save, save_txt, save_conf, project, name, exist_ok,
                  verbose, vid_stride, show, tf_fn) -> Iterator[Results]:
    from jaxyolo.utils.files import run_dir

    th, tw = parse_imgsz(imgsz)
    size = th if th == tw else (th, tw)
    batch = max(1, int(batch or 1))
    if show:
        LOGGER.warning("WARNING: show=True is not supported (no display); use save=True to write annotated images")
    save_dir = run_dir(project, name, "predict", exist_ok) if (save or save_txt) else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    used_bases: set = set()
    video_bases: dict = {}
    writers: dict = {}
    totals = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0, "n": 0}
    n_labels = 0
    # batch shapes already run once untimed (the jit compile / a runtime's first call, as Ultralytics' warmup()); kept
    # on the runner, which a YOLO object reuses, so calling predict frame by frame warms each shape only once
    warmed: set = getattr(runner, "warmed_shapes", None)
    if warmed is None:
        warmed = set()
        try:
            runner.warmed_shapes = warmed
        except AttributeError:  # a plain function or a slotted object: warm once per predict call
            pass

    def flush(frames: list[Frame]) -> Iterator[Results]:
        nonlocal n_labels
        t0 = time.perf_counter()
        x = np.stack([tf_fn(np.ascontiguousarray(f.bgr[..., ::-1]), size) for f in frames])
        n = len(x)
        pad = padded_size(runner, n, batch)
        if pad > n:
            x = np.concatenate([x, np.zeros((pad - n, *x.shape[1:]), x.dtype)])
        prep = time.perf_counter() - t0
        if x.shape not in warmed:
            runner(x)
            warmed.add(x.shape)
        t1 = time.perf_counter()
        probs = runner(x)[:n]
        t2 = time.perf_counter()
        out = []
        for f, p in zip(frames, probs):
            out.append(Results(f.bgr, f.path, names, p))
        t3 = time.perf_counter()
        speed = {"preprocess": prep * 1e3 / n, "inference": (t2 - t1) * 1e3 / n,
                 "postprocess": (t3 - t2) * 1e3 / n}
        for k in ("preprocess", "inference", "postprocess"):
            totals[k] += speed[k] * n
        totals["n"] += n
        for f, r in zip(frames, out):
            r.speed = dict(speed)
            p = Path(f.path)
            if f.video:
                base = video_bases.get(f.path) or video_bases.setdefault(f.path, _unique_base(p.stem, used_bases))
            else:
                base = _unique_base(p.stem, used_bases)
            if save_dir is not None:
                r.save_dir = str(save_dir)
                if save_txt:
                    txt = save_dir / "labels" / (f"{base}_{f.index}.txt" if f.video else f"{base}.txt")
                    txt.unlink(missing_ok=True)  # replace, not append to, an earlier run's labels
                    r.save_txt(txt, save_conf=save_conf)
                    n_labels += 1
                if save:
                    if f.video:
                        _write_video_frame(writers, save_dir / f"{base}.avi", r.plot())
                    else:
                        r.save(save_dir / f"{base}.jpg")
            if verbose:
                where = f"video {f.index}/{f.total}" if f.video else f"image {f.index}/{f.total}"
                LOGGER.info(f"{where} {f.path}: {th}x{tw} {r.verbose()}{speed['inference']:.1f}ms")
        return iter(out)

    pending: list[Frame] = []
    chunk = runner.fixed_batch or batch
    try:
        for frame in iter_frames(items, vid_stride):
            pending.append(frame)
            if len(pending) >= chunk:
                yield from flush(pending)
                pending = []
        if pending:
            yield from flush(pending)
    finally:
        for w in writers.values():
            w.release()
    if verbose and totals["n"]:
        n = totals["n"]
        LOGGER.info(f"Speed: {totals['preprocess'] / n:.1f}ms preprocess, {totals['inference'] / n:.1f}ms inference, "
                    f"{totals['postprocess'] / n:.1f}ms postprocess per image at shape (1, 3, {th}, {tw})")
    if not totals["n"]:
        LOGGER.warning(f"WARNING: no image of source {source!r} could be read; nothing was predicted")
    if save_dir is not None:
        labels = f"{n_labels} label{'s' * (n_labels != 1)} saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {save_dir}" + (f"\n{labels}" if labels else ""))


def _write_video_frame(writers: dict, path: Path, bgr: np.ndarray) -> None:
    cv2 = _cv2()
    w = writers.get(path)
    if w is None:
        w = writers[path] = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30,
                                            (bgr.shape[1], bgr.shape[0]))
    w.write(np.ascontiguousarray(bgr))
