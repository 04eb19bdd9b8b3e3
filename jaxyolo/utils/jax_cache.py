"""JAX's persistent compilation cache, on by default for jaxyolo's entry points.

Repeat runs (the same model, image size and batch) then load the compiled train/eval steps from disk instead of
recompiling them (~5-10 s each on a CPU). The cache lives in ``$JAXYOLO_COMPILATION_CACHE`` or
``~/.cache/jaxyolo/xla`` (``$XDG_CACHE_HOME`` honoured); ``JAXYOLO_COMPILATION_CACHE=0`` turns it off, and a cache the
user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR`` / ``jax.config``) is left as it is. JAX decides once per
process whether to use a cache, at the first compilation, so this must run before anything is compiled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOGGER = logging.getLogger("jaxyolo")
OFF = ("0", "false", "off", "no", "none")


def switched_off(variable: str) -> bool:
    """Whether environment ``variable`` is set to one of the ``OFF`` words (unset or empty: not off)."""
    return os.environ.get(variable, "").strip().lower() in OFF and bool(os.environ.get(variable, "").strip())


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxyolo" / "xla"


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at jaxyolo's cache folder; returns the folder in use (or None)."""
    import jax

    if switched_off("JAXYOLO_COMPILATION_CACHE"):
        return None
    setting = os.environ.get("JAXYOLO_COMPILATION_CACHE", "")
    current = jax.config.jax_compilation_cache_dir
    if current:  # the user's own choice wins
        return str(current)
    path = Path(setting).expanduser() if setting.strip() else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as e:  # a read-only home must not stop a run: compile every time instead
        LOGGER.debug(f"compilation cache disabled: {e}")
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return str(path)
