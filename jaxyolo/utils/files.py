"""Run-directory naming like Ultralytics 8.4 (runs/classify/train, train-2, train-3, ...) and atomic file copies."""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path


def increment_path(path: str | Path, exist_ok: bool = False, sep: str = "-") -> Path:
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    n = 2
    while (p := path.with_name(f"{path.name}{sep}{n}")).exists():
        n += 1
    return p


def run_dir(project: str | None, name: str | None, mode: str = "train", exist_ok: bool = False) -> Path:
    project = Path(project) if project else Path("runs") / "classify"
    return increment_path(project / (name or mode), exist_ok=exist_ok)


@contextmanager
def atomic_write(path: str | Path):
    """``with atomic_write(path) as f:`` write binary ``f``; on success it is flushed, fsync'ed and renamed onto
    ``path`` (a temporary file in the same folder until then), on any error removed: ``path`` is never seen
    half-written (an interrupted write leaves the old file, or none)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` through ``atomic_write``."""
    with open(src, "rb") as fin, atomic_write(dst) as fout:
        shutil.copyfileobj(fin, fout)
    return Path(dst)
