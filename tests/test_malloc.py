"""jaxyolo/utils/malloc.py: once ``jaxyolo.engine`` is imported, a compiled step's large buffers are reused, not
page-faulted anew.

Counted in page faults (``ru_minflt``), not time: a 64 MiB output written 10 times by one jitted function. With glibc's
defaults and JAX's asynchronous CPU dispatch every call maps it fresh (~16k faults a call); with jaxyolo's settings
the main thread's heap keeps it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource
import jaxyolo.engine
from jaxyolo.utils import malloc
import jax, jax.numpy as jnp
x = jnp.ones((16 * 1024 * 1024,), jnp.float32)  # 64 MiB
f = jax.jit(lambda a: a * 2.0 + 1.0)
f(x).block_until_ready()
faults = []
for _ in range(10):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = f(x); y.block_until_ready(); del y
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(json.dumps({"state": malloc.state, "faults": faults,
                  "async": jax.config.values["jax_cpu_enable_async_dispatch"]}))
"""


def _probe(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAXYOLO_MALLOC"}
    if setting is not None:
        env["JAXYOLO_MALLOC"] = setting
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_step_buffers_are_reused_not_page_faulted():
    tuned, default = _probe(None), _probe("0")
    assert tuned["state"].startswith("heap only, never trimmed") and "synchronous CPU dispatch" in tuned["state"], tuned
    assert default["state"] == "off (JAXYOLO_MALLOC)" and default["async"] is True, default
    assert tuned["async"] is False, tuned
    pages = 64 * 1024 * 1024 // 4096
    # glibc's defaults: the 64 MiB output is a fresh mapping each call (the check that this test can fail)
    assert min(default["faults"]) > pages // 2, default
    # jaxyolo's settings: most calls reuse heap pages (a few pages at most); a call faults only while the heap grows
    # to its high-water mark (JAX may free the previous output after the next one is allocated)
    assert sorted(tuned["faults"])[len(tuned["faults"]) // 2] < pages // 20, tuned
    assert sum(tuned["faults"]) < sum(default["faults"]) / 2, (tuned, default)


def test_off_switch_user_setting_and_unsupported_platforms(monkeypatch):
    import jax
    from jax._src import xla_bridge

    from jaxyolo.utils import malloc

    monkeypatch.setattr(malloc, "state", malloc.state)  # restored afterwards
    before = jax.config.values["jax_cpu_enable_async_dispatch"]
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)  # as if JAX had not started
    try:
        monkeypatch.setenv("JAX_CPU_ENABLE_ASYNC_DISPATCH", "true")  # the user's own setting wins
        assert malloc._sync_cpu_dispatch() == "asynchronous CPU dispatch (JAX_CPU_ENABLE_ASYNC_DISPATCH)"
        assert jax.config.values["jax_cpu_enable_async_dispatch"] is True
        monkeypatch.delenv("JAX_CPU_ENABLE_ASYNC_DISPATCH")
        assert malloc._sync_cpu_dispatch() == "synchronous CPU dispatch"
        assert jax.config.values["jax_cpu_enable_async_dispatch"] is False
    finally:
        jax.config.update("jax_cpu_enable_async_dispatch", before)
    monkeypatch.setenv("JAXYOLO_MALLOC", "off")
    assert malloc.tune() is False and malloc.state == "off (JAXYOLO_MALLOC)"
    monkeypatch.delenv("JAXYOLO_MALLOC")
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    assert malloc.tune() is False and malloc.state == "not glibc"
