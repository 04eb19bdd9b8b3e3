"""Run plots: results.png, confusion matrices and training-batch mosaics (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(csv_path: Path) -> Path:
    plt = _plt()
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k not in ("epoch", "time")]
    fig, axes = plt.subplots(2, (len(keys) + 1) // 2, figsize=(3 * ((len(keys) + 1) // 2), 6), tight_layout=True)
    epochs = [int(r["epoch"]) for r in rows]
    for ax, k in zip(axes.ravel(), keys):
        ax.plot(epochs, [float(r[k]) for r in rows], marker=".", label="results")
        ax.set_title(k, fontsize=10)
    out = csv_path.with_name("results.png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_confusion_matrix(cm: np.ndarray, names: dict, save_dir: Path) -> list[Path]:
    """``confusion_matrix.png`` and ``confusion_matrix_normalized.png`` (rows: predicted, columns: true)."""
    plt = _plt()
    outs = []
    nc = cm.shape[0]
    for normalize in (False, True):
        m = cm.astype(np.float64)
        if normalize:
            m = m / np.maximum(m.sum(0, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(min(2 + nc * 0.5, 14), min(2 + nc * 0.5, 14)), tight_layout=True)
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
        out = save_dir / ("confusion_matrix_normalized.png" if normalize else "confusion_matrix.png")
        fig.savefig(out, dpi=120)
        plt.close(fig)
        outs.append(out)
    return outs


def plot_batch(images: np.ndarray, labels: np.ndarray, names: dict, path: Path, max_images: int = 16) -> Path:
    """A labelled mosaic of (augmented) training images: ``train_batch{i}.jpg``."""
    plt = _plt()
    n = min(len(images), max_images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows), tight_layout=True)
    for ax, i in zip(np.ravel(axes), range(rows * cols)):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i])
            ax.set_title(str(names.get(int(labels[i]), labels[i])), fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
