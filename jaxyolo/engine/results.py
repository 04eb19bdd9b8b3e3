"""Prediction results shaped like Ultralytics' ``Results`` / ``Probs`` (classification only), on numpy.

``Results.orig_img`` is the original image as BGR uint8 HWC (Ultralytics' convention, OpenCV order), ``probs.data`` the
``(nc,)`` float32 softmax probabilities. ``plot()`` returns an annotated BGR copy; ``save_txt`` writes Ultralytics'
five ``"<conf> <name>"`` lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class _OnHost:
    """Ultralytics' tensor-moving methods (``cpu/numpy/cuda/to``): here everything is already host numpy, so each
    returns the object itself and code written for Ultralytics keeps working."""

    def cpu(self):
        return self

    def numpy(self):
        return self

    def cuda(self):
        return self

    def to(self, *args, **kwargs):
        return self


class Probs(_OnHost):
    """Class probabilities of one image: ``data`` (nc,), ``top1``, ``top5``, ``top1conf``, ``top5conf``."""

    def __init__(self, probs, orig_shape=None):
        self.data = np.asarray(probs, dtype=np.float32).reshape(-1)
        self.orig_shape = orig_shape

    @property
    def top1(self) -> int:
        return int(self.data.argmax())

    @property
    def top5(self) -> list[int]:
        # the order Ultralytics returns: descending probability (stable for ties)
        return np.argsort(-self.data, kind="stable")[:5].tolist()

    @property
    def top1conf(self) -> np.float32:
        return self.data[self.top1]

    @property
    def top5conf(self) -> np.ndarray:
        return self.data[self.top5]

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Probs(top1={self.top1}, top1conf={float(self.top1conf):.4f}, top5={self.top5})"


class Results(_OnHost):
    """The result of classifying one image (or one video frame)."""

    boxes = masks = keypoints = obb = None  # detection-task fields, always None for classification

    def __init__(self, orig_img: np.ndarray, path: str, names: dict[int, str], probs=None, speed: dict | None = None):
        self.orig_img = orig_img
        self.orig_shape = tuple(orig_img.shape[:2]) if orig_img is not None else None
        self.path = str(path)
        self.names = dict(names)
        self.probs = Probs(probs, self.orig_shape) if probs is not None else None
        self.speed = dict(speed or {"preprocess": None, "inference": None, "postprocess": None})
        self.save_dir: str | None = None

    def __len__(self) -> int:
        return 0 if self.probs is None else len(self.probs)

    def verbose(self) -> str:
        """``'cat 0.92, dog 0.05, ..., '`` as Ultralytics logs each image."""
        if self.probs is None:
            return ""
        return "".join(f"{self.names[j]} {self.probs.data[j]:.2f}, " for j in self.probs.top5)

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict]:
        """Top-5 classes as ``[{'name', 'class', 'confidence'}, ...]`` (Ultralytics' classification summary)."""
        if self.probs is None:
            return []
        return [{"name": self.names[int(j)], "class": int(j), "confidence": round(float(self.probs.data[j]), decimals)}
                for j in self.probs.top5]

    def to_json(self, normalize: bool = False, decimals: int = 5) -> str:
        return json.dumps(self.summary(normalize, decimals), indent=2)

    def save_txt(self, txt_file: str | Path, save_conf: bool = False) -> str:
        """Append the top-5 as ``"<conf> <name>"`` lines (2 decimals), like Ultralytics; returns the path."""
        if self.probs is None:
            return str(txt_file)
        Path(txt_file).parent.mkdir(parents=True, exist_ok=True)
        with open(txt_file, "a", encoding="utf-8") as f:
            f.writelines(f"{self.probs.data[j]:.2f} {self.names[j]}\n" for j in self.probs.top5)
        return str(txt_file)

    def plot(self, conf: bool = True, labels: bool = True, font_size: float | None = None, pil: bool = False,
             img: np.ndarray | None = None, probs: bool = True, **_ignored):
        """The image (BGR numpy, or a PIL RGB image with ``pil=True``) with the top-5 classes written top-left."""
        from PIL import Image, ImageDraw, ImageFont

        base = self.orig_img if img is None else img
        im = Image.fromarray(np.ascontiguousarray(np.asarray(base)[..., ::-1]))  # BGR -> RGB
        if probs and labels and self.probs is not None:
            w, h = im.size
            size = font_size or max(round((w + h) / 2 * 0.035), 10)
            try:
                font = ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1
                font = ImageFont.load_default()
            text = "\n".join(f"{self.names[j]} {self.probs.data[j]:.2f}" if conf else f"{self.names[j]}"
                             for j in self.probs.top5)
            draw = ImageDraw.Draw(im, "RGBA")
            xy = (round(w * 0.03), round(h * 0.03))
            box = draw.multiline_textbbox(xy, text, font=font)
            draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(64, 64, 64, 160))
            draw.multiline_text(xy, text, fill=(255, 255, 255), font=font)
        return im if pil else np.asarray(im)[..., ::-1].copy()

    def save(self, filename: str | Path | None = None, *args, **kwargs) -> str:
        """Write ``plot()`` to ``filename`` (default ``results_<image name>``); returns the path."""
        from PIL import Image

        if filename is None:
            filename = f"results_{Path(self.path).name or 'image.jpg'}"
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        rgb = self.plot(*args, **kwargs)[..., ::-1]
        Image.fromarray(np.ascontiguousarray(rgb)).save(filename)
        return str(filename)

    def show(self, *args, **kwargs) -> None:
        self.plot(*args, pil=True, **kwargs).show()

    def __repr__(self) -> str:
        return (f"Results(path={self.path!r}, orig_shape={self.orig_shape}, "
                f"{self.probs!r}, names={len(self.names)} classes)")
