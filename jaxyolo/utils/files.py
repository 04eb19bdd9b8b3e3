"""Run-directory naming like Ultralytics 8.4 (runs/classify/train, train-2, train-3, ...) and atomic file copies."""

from __future__ import annotations

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


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file in ``dst``'s folder and a rename: ``dst`` is never seen
    half-written (an interrupted copy leaves the old ``dst``, or none)."""
    import os
    import secrets
    import shutil

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dst
