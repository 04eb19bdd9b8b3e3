"""Run plots: results.png, confusion matrices (matplotlib, Agg) and training-batch mosaics (Pillow).

Every function here is safe to call from a worker thread (the trainer plots on its background writer, as Ultralytics
does on its plotting threads): figures are built with matplotlib's object API on their own Agg canvas, never through
pyplot's global figure manager. Files are written to a temporary name and renamed, so a run killed mid-plot leaves
no half-written image.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("jaxyolo")


def try_plot(fn, *args) -> None:
    """``fn(*args)``, one of the plots below; a failed plot warns and never fails the run or validation that asked
    for it (plots are a convenience: the weights, results.csv and metrics are what matter)."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001
        LOGGER.warning(f"{fn.__name__} failed: {type(e).__name__}: {e}")


def load_matplotlib() -> None:
    """Import what the figures need (~0.5 s). The trainer runs this on its writer thread during the epochs, so the
    plots written after the last epoch do not wait for the import."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def _figure(figsize) -> "matplotlib.figure.Figure":  # noqa: F821
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _write(out: Path, save) -> Path:
    """``save(tmp)`` to a temporary name next to ``out`` (same suffix, so the format is inferred), then rename; the
    temporary file is removed if saving fails."""
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        save(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _save(fig, out: Path, dpi: int) -> Path:
    return _write(out, lambda tmp: fig.savefig(tmp, dpi=dpi))


def plot_results(csv_path: Path) -> Path:
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k not in ("epoch", "time")]
    ncol = (len(keys) + 1) // 2
    fig = _figure((3 * ncol, 6))
    axes = fig.subplots(2, ncol)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.93, wspace=0.35, hspace=0.35)
    epochs = [int(r["epoch"]) for r in rows]
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    for ax, k in zip(axes.ravel(), keys):
        ax.plot(epochs, [float(r[k]) for r in rows], marker=".", label="results")
        ax.set_title(k, fontsize=10)
    return _save(fig, csv_path.with_name("results.png"), dpi=120)


def plot_confusion_matrix(cm: np.ndarray, names: dict, save_dir: Path) -> list[Path]:
    """``confusion_matrix.png`` and ``confusion_matrix_normalized.png`` (rows: predicted, columns: true)."""
    outs = []
    nc = cm.shape[0]
    for normalize in (False, True):
        m = cm.astype(np.float64)
        if normalize:
            m = m / np.maximum(m.sum(0, keepdims=True), 1)
        side = min(2 + nc * 0.5, 14)
        fig = _figure((side, side))
        ax = fig.subplots()
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.93)
        ax.imshow(m, cmap="Blues")
        if nc <= 30:
            ticks = [str(names.get(i, i)) for i in range(nc)]
            ax.set_xticks(range(nc), ticks, rotation=90)
            ax.set_yticks(range(nc), ticks)
            for (i, j), v in np.ndenumerate(m):
                if v:
                    ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center", fontsize=7)
        ax.set_xlabel("True")
        ax.set_ylabel("Predicted")
        ax.set_title("Confusion Matrix" + (" Normalized" if normalize else ""))
        outs.append(_save(fig, save_dir / ("confusion_matrix_normalized.png" if normalize else "confusion_matrix.png"),
                          dpi=120))
    return outs


def plot_batch(images: np.ndarray, labels: np.ndarray, names: dict, path: Path, max_images: int = 16) -> Path:
    """A labelled mosaic of (augmented) training images: ``train_batch{i}.jpg`` (uint8 HWC images; each tile is
    scaled up to at least 128 px, nearest neighbour, so small-imgsz runs stay legible)."""
    from PIL import Image, ImageDraw

    n = min(len(images), max_images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = images.shape[1:3]
    k = max(1, int(np.ceil(128 / max(h, w))))
    th, tw, top, gap = h * k, w * k, 14, 2  # tile size, label strip above each tile, gap between tiles
    canvas = Image.new("RGB", (cols * (tw + gap), rows * (th + top + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = c * (tw + gap), r * (th + top + gap)
        canvas.paste(Image.fromarray(np.asarray(images[i], np.uint8)).resize((tw, th), Image.NEAREST), (x, y + top))
        draw.text((x + 2, y + 1), str(names.get(int(labels[i]), labels[i])), fill=(0, 0, 0))
    return _write(path, lambda tmp: canvas.save(tmp, quality=90))
