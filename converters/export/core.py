"""Shared export plumbing: argument resolution, atomic outputs, clear errors, and the dispatch to format modules.

Format module contract (``converters/export/<module>.py``):
    export(yolo, out: Path, *, imgsz: tuple[int, int], batch: int, meta: dict, **fmt_args) -> None
        writes the artifact at ``out`` (a file or directory path that does not exist yet; ``core`` makes it atomic)
        A module whose ``export`` also takes ``final`` gets the artifact's final path (to place side outputs next to
        it, e.g. Edge TPU's int8 input model).
    load(path: Path) -> Backend
        an inference object (see jaxyolo/engine/backends.py) reading names/imgsz from the artifact's metadata
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path

from converters.export.formats import get_format
from converters.export.metadata import build_metadata
from jaxyolo.data.host_eval import parse_hw

LOGGER = logging.getLogger("jaxyolo")


class ExportError(RuntimeError):
    """An export that cannot be done (missing back-end, bad argument); says what to install or change."""


def require(module: str, fmt: str, extra: str, pip_name: str | None = None):
    """Import a back-end package or fail with the exact install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(f"format={fmt} needs the '{pip_name or module}' package ({e}); install it with "
                          f"pip install 'jaxyolo[{extra}]'") from None


def resolve_imgsz(imgsz, yolo) -> tuple[int, int]:
    if imgsz is None:
        imgsz = (getattr(yolo, "overrides", {}) or {}).get("imgsz", 224)
    return parse_hw(imgsz)


@contextlib.contextmanager
def atomic_output(final: Path):
    """Yield a temporary path next to ``final``; move it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp = tmpdir / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise ExportError(f"export produced nothing at {tmp}")
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def output_path(yolo, fmt, out_dir: Path | None = None, args: dict | None = None) -> Path:
    src = getattr(yolo, "ckpt_path", None) or str(yolo.cfg.get("yaml_file", "model.yaml"))
    src = Path(src)
    stem = src.stem
    base = out_dir or (src.parent if getattr(yolo, "ckpt_path", None) else Path.cwd())
    # absolute: several converters (pnnx, onnx2tf) run in another working directory
    return (Path(base) / f"{stem}{fmt.suffix_for(args)}").absolute()


def export(yolo, format: str = "torchscript", *, imgsz=None, batch: int = 1, out_dir=None, **kw) -> str:
    """Export ``yolo`` (a jaxyolo ``YOLO``) to ``format``; returns the output path. Nothing half-written is left."""
    fmt = get_format(format)
    unknown = [k for k, v in kw.items() if k not in fmt.args and v not in (None, False)]
    if unknown:
        LOGGER.warning(f"format={fmt.arg} ignores {', '.join(unknown)} (it accepts {', '.join(fmt.args)})")
    size = resolve_imgsz(imgsz, yolo)
    if int(batch) < 1:
        raise ExportError(f"batch={batch} must be a positive integer")
    mod = importlib.import_module(f"converters.export.{fmt.module}")
    args = {k: v for k, v in kw.items() if k in fmt.args}
    final = output_path(yolo, fmt, Path(out_dir) if out_dir else None, args)
    meta = build_metadata(yolo, size, int(batch), {"batch": int(batch), **args})
    LOGGER.info(f"Exporting {final.name} ({fmt.name}) at imgsz={list(size)}, batch={batch} ...")
    extra = {"final": final} if "final" in inspect.signature(mod.export).parameters else {}  # side outputs' folder
    with atomic_output(final) as tmp:
        mod.export(yolo, tmp, imgsz=size, batch=int(batch), meta=meta, **args, **extra)
    LOGGER.info(f"Exported {final}")
    return str(final)
