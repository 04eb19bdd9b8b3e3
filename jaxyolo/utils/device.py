"""Ultralytics' ``device=`` argument for JAX.

JAX places work on every visible device of its platform, and the platform and the visible GPUs are fixed when its
backends start (the first ``jax.devices()`` or computation of a process). ``device=`` is applied before that where it
can be (the CLI applies it first thing): ``cpu`` selects the CPU platform, ``0`` / ``cuda:0`` / ``0,1`` / ``[0, 1]``
the NVIDIA GPUs listed (``CUDA_VISIBLE_DEVICES``); ``mps`` and anything else are a clear error. Afterwards (a Python
session that already ran JAX) a request the running backend cannot meet is an error that says how to start instead,
and a GPU list narrower than the GPUs JAX already uses is a warning. A CUDA request on a machine whose JAX has no GPU
is an error, as Ultralytics' ``Invalid CUDA 'device=0' requested``.
"""

from __future__ import annotations

import logging
import os

LOGGER = logging.getLogger("jaxyolo")


def parse_device(device) -> tuple[str, tuple[int, ...]] | None:
    """``None`` (no request: JAX's default), ``("cpu", ())`` or ``("gpu", (indices...))``; ``ValueError`` naming the
    value otherwise."""
    if device is None or (isinstance(device, str) and not device.strip()):
        return None
    if isinstance(device, bool):
        raise ValueError(f"device={device!r} is invalid: expected cpu, a GPU index (0), indices (0,1) or cuda:0")
    items = list(device) if isinstance(device, (list, tuple)) else str(device).lower().replace(" ", "").split(",")
    items = [str(i).strip().strip("[]()").removeprefix("cuda:").removeprefix("cuda") for i in items]
    items = [i for i in items if i != ""]
    if items == ["cpu"]:
        return "cpu", ()
    if items == []:  # 'cuda' alone: GPU 0, as torch
        return "gpu", (0,)
    if items == ["mps"]:
        raise ValueError("device=mps: Apple GPUs are not a JAX platform jaxyolo supports; use device=cpu")
    if all(i.isdigit() for i in items):
        return "gpu", tuple(int(i) for i in items)
    raise ValueError(f"device={device!r} is invalid: expected cpu, a GPU index (0), indices (0,1 or [0, 1]) or "
                     f"cuda:0")


def select_device(device) -> None:
    """Apply ``device=`` (see the module docstring); a no-op for ``None``/empty."""
    req = parse_device(device)
    if req is None:
        return
    import jax

    platform, gpus = req
    if platform == "cpu":
        jax.config.update("jax_platforms", "cpu")  # (no effect once the backends have started: checked below)
    elif "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    running = jax.default_backend()  # starts the backends if they have not started yet
    if platform == "cpu" and running != "cpu":
        raise ValueError(f"device=cpu: JAX already runs on {running} in this process; start Python with "
                         f"JAX_PLATFORMS=cpu (or pass device=cpu on the command line)")
    if platform == "gpu":
        if running != "gpu":
            raise ValueError(f"Invalid CUDA 'device={device}' requested: JAX sees no NVIDIA GPU here (its devices: "
                             f"{', '.join(sorted({d.platform for d in jax.devices()}))}); use device=cpu or leave "
                             f"device unset (JAX uses every visible device)")
        if jax.local_device_count() != len(gpus):
            LOGGER.warning(f"WARNING: device={device}: JAX uses {jax.local_device_count()} GPU(s) in this process "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} when it started); set "
                           f"CUDA_VISIBLE_DEVICES before starting Python to choose them")
