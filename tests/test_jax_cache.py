"""jaxyolo's compilation-cache folder stays under its size limit (``jaxyolo.utils.jax_cache``)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxyolo.utils import jax_cache

ROOT = Path(__file__).resolve().parents[1]


def _fill(folder: Path, names_ages: dict, size: int = 100_000):
    """Files of ``size`` bytes whose access and modification times are ``age`` seconds ago."""
    now = time.time()
    for name, age in names_ages.items():
        f = folder / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x" * size)
        os.utime(f, (now - age, now - age))


def test_prune_deletes_least_recently_used_files_to_three_quarters(tmp_path):
    ages = {f"jit_step-{i}-cache": 1000 - i for i in range(6)}  # -0 oldest ... -5 newest
    ages.update({"jaxyolo-traces/train-old.jaxexport": 5000, "jaxyolo-traces/train-new.jaxexport": 1, ".lockfile": 9e9})
    _fill(tmp_path, ages)
    assert jax_cache.prune(tmp_path, 10_000_000) == 0  # under the limit: nothing goes
    assert jax_cache.prune(tmp_path, None) == 0  # no limit
    removed = jax_cache.prune(tmp_path, 600_000)  # 8 files of 100 kB (the lock file aside): down to <= 450 kB
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert removed == 4
    assert left == [".lockfile", "jaxyolo-traces/train-new.jaxexport", "jit_step-3-cache", "jit_step-4-cache",
                    "jit_step-5-cache"]


@pytest.mark.parametrize("value,want", [("", 2048 << 20), ("100", 100 << 20), ("0.5", 1 << 19), ("0", None),
                                        ("off", None), ("lots", 2048 << 20), ("-3", 2048 << 20)])
def test_cache_limit_setting(monkeypatch, caplog, value, want):
    monkeypatch.setenv("JAXYOLO_COMPILATION_CACHE_MAX_MB", value)
    assert jax_cache.cache_limit_bytes() == want
    if value in ("lots", "-3"):  # a bad value is named, and the run goes on with the default
        assert f"JAXYOLO_COMPILATION_CACHE_MAX_MB={value!r}" in caplog.text


def test_a_process_prunes_its_own_cache_folder_but_not_the_users(tmp_path):
    """Importing jaxyolo.engine (every entry point does) prunes jaxyolo's folder to its limit; a JAX cache folder
    the user configured is left whole."""
    own, users = tmp_path / "own", tmp_path / "users"
    for folder in (own, users):
        _fill(folder, {f"old-{i}-cache": 1000 + i for i in range(4)} | {"new-cache": 1}, size=400_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "JAXYOLO_COMPILATION"))}
    code = "import jaxyolo.engine, jax; print(jax.config.jax_compilation_cache_dir)"
    run = lambda extra: subprocess.run([sys.executable, "-c", code], env={**env, **extra}, cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout.strip()
    assert run({"JAXYOLO_COMPILATION_CACHE": str(own), "JAXYOLO_COMPILATION_CACHE_MAX_MB": "1"}) == str(
        jax_cache.executables_dir(own))
    # 2 MB > 1 MiB: down to <= 0.75 MiB, newest kept (files of an earlier layout, outside the cores-<n> folders, too)
    assert sorted(p.name for p in own.iterdir() if p.is_file()) == ["new-cache"]
    assert run({"JAX_COMPILATION_CACHE_DIR": str(users), "JAXYOLO_COMPILATION_CACHE_MAX_MB": "1"}) == str(users)
    assert len(list(users.iterdir())) == 5


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and at least two cores")
def test_a_process_on_fewer_cores_keeps_its_own_executables(tmp_path):
    """XLA:CPU splits loops over the cores it sees when it compiles, and JAX's cache key leaves them out: an
    executable compiled in a process pinned to one core must not be loaded by a process on all of them (session 27:
    it was, and ran its loops on one core). Each core count gets its own folder and its own compiled entry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "JAXYOLO_COMPILATION"))}
    env["JAXYOLO_COMPILATION_CACHE"] = str(tmp_path)
    code = ("import os, sys\n"
            "if sys.argv[1] == 'one': os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "import jaxyolo.engine, jax, jax.numpy as jnp\n"
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
            "jax.jit(lambda x: jnp.tanh(x) * 3 + 1)(jnp.ones((512, 512))).block_until_ready()\n"
            "print(jax.config.jax_compilation_cache_dir)")
    folders = [subprocess.run([sys.executable, "-c", code, which], env=env, cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip().splitlines()[-1] for which in ("one", "all")]
    assert folders == [str(tmp_path / "cores-1"), str(jax_cache.executables_dir(tmp_path))]
    for folder in folders:  # each process compiled and wrote its own executable
        assert any(p.name.startswith("jit_") for p in Path(folder).iterdir()), sorted(os.listdir(folder))
