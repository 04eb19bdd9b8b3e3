"""JAX's persistent compilation cache, on by default for jaxyolo's entry points.

Repeat runs (the same model, image size and batch) then load the compiled train/eval steps from disk instead of
recompiling them (~5-10 s each on a CPU). The cache lives in ``$JAXYOLO_COMPILATION_CACHE`` or
``~/.cache/jaxyolo/xla`` (``$XDG_CACHE_HOME`` honoured); ``JAXYOLO_COMPILATION_CACHE=0`` turns it off, and a cache the
user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR`` / ``jax.config``) is left as it is. JAX decides once per
process whether to use a cache, at the first compilation, so this must run before anything is compiled.

Executables go to a subfolder per core count (``cores-<n>``: the cores this process may run on, its CPU affinity).
XLA:CPU splits large elementwise loops over the cores it sees when it compiles, and JAX's cache key does not
include them (jaxlib 0.10): an executable compiled in a process pinned to one core (``taskset``, a container's
cpuset, ``benchmarks/profile_step.py --one-core``) was loaded by every later process on all the cores and ran its
loops on one (yolov8n-cls inference at 64 px, batch 32, 2 cores: 0 of 185 fusions split, 11.5-12.0 ms per batch
against 9.9-10.7 ms compiled there; benchmarks/RESULTS.md, session 27).

jaxyolo's folder is kept under ``$JAXYOLO_COMPILATION_CACHE_MAX_MB`` (default 2048 MiB; ``0`` or ``off``: no limit):
when a process starts with the folder over the limit, the least recently used files (JAX's executables and
``jaxyolo-traces/``) are deleted until it is under three quarters of it. Every new jaxyolo, jax or model
configuration adds entries (~2 MB each) and nothing else removes the old ones. A deleted entry costs one compilation.
A cache folder of the user's own (``JAX_COMPILATION_CACHE_DIR``) is never pruned.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from jaxyolo.utils.host import host_cores

LOGGER = logging.getLogger("jaxyolo")
OFF = ("0", "false", "off", "no", "none")
DEFAULT_LIMIT_MB = 2048


def switched_off(variable: str) -> bool:
    """Whether environment ``variable`` is set to one of the ``OFF`` words (unset or empty: not off)."""
    return os.environ.get(variable, "").strip().lower() in OFF and bool(os.environ.get(variable, "").strip())


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxyolo" / "xla"


def executables_dir(root: Path) -> Path:
    """The folder of jaxyolo's cache ``root`` that JAX's executables go to in this process: one per core count."""
    return Path(root) / f"cores-{host_cores()}"


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at jaxyolo's cache folder (its subfolder for this process's core
    count, ``executables_dir``); returns the folder in use (or None)."""
    import jax

    if switched_off("JAXYOLO_COMPILATION_CACHE"):
        return None
    setting = os.environ.get("JAXYOLO_COMPILATION_CACHE", "")
    current = jax.config.jax_compilation_cache_dir
    if current:  # the user's own choice wins
        return str(current)
    root = Path(setting).expanduser() if setting.strip() else default_cache_dir()
    path = executables_dir(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as e:  # a read-only home must not stop a run: compile every time instead
        LOGGER.debug(f"compilation cache disabled: {e}")
        return None
    prune(root, cache_limit_bytes())  # the whole folder: other core counts' executables and earlier layouts too
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return str(path)


def cache_limit_bytes() -> int | None:
    """``$JAXYOLO_COMPILATION_CACHE_MAX_MB`` in bytes (unset: ``DEFAULT_LIMIT_MB``; ``0``/``off``: None, no limit).
    A value that is not a number is reported and the default used: a cache setting must not stop a run."""
    raw = os.environ.get("JAXYOLO_COMPILATION_CACHE_MAX_MB", "").strip()
    if not raw:
        return DEFAULT_LIMIT_MB << 20
    if raw.lower() in OFF:
        return None
    try:
        mb = float(raw)
        if mb < 0 or mb != mb:
            raise ValueError
    except ValueError:
        LOGGER.warning(f"JAXYOLO_COMPILATION_CACHE_MAX_MB={raw!r} is not a size in MiB (e.g. 2048, or 0 for no "
                       f"limit); using {DEFAULT_LIMIT_MB}")
        return DEFAULT_LIMIT_MB << 20
    return int(mb * (1 << 20)) or None


def prune(path: Path, limit: int | None) -> int:
    """Delete the least recently used files under ``path`` (by the later of access and modification time) until they
    total at most 3/4 of ``limit`` bytes, when they total more than ``limit``; returns how many were deleted. A file
    another process is reading stays readable by it (POSIX), and one that is gone is simply compiled again."""
    if not limit:
        return 0
    files = []
    for f in Path(path).rglob("*"):
        try:
            st = f.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        if f.is_file() and not f.name.startswith(".lock"):
            files.append((max(st.st_atime, st.st_mtime), st.st_size, f))
    total = sum(size for _, size, _ in files)
    if total <= limit:
        return 0
    removed = 0
    for _, size, f in sorted(files, key=lambda t: t[0]):
        if total <= limit * 3 // 4:
            break
        try:
            f.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
    LOGGER.debug(f"compilation cache {path}: pruned {removed} least recently used files")
    return removed
