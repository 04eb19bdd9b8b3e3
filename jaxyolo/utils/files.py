"""Run-directory naming like Ultralytics 8.4: runs/classify/train, train-2, train-3, ..."""

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
