"""Device mesh, shardings and multi-host start-up: the same code on 1 CPU, N devices, GPU, TPU and several hosts."""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

LOGGER = logging.getLogger("jaxyolo")
DATA = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Start multi-host JAX when asked (explicit coordinator) or when the platform provides the settings (TPU pods,
    SLURM/Open MPI clusters: ``jax.distributed.initialize()`` auto-detects them). A no-op for one process."""
    if jax.distributed.is_initialized():
        return
    if coordinator_address:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    elif os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(","):
        jax.distributed.initialize()
    else:
        return
    LOGGER.info(f"jax.distributed: process {jax.process_index()}/{jax.process_count()}, "
                f"{jax.local_device_count()} local / {jax.device_count()} global devices")


def make_mesh() -> Mesh:
    """A 1-D data-parallel mesh over every device of every host."""
    return Mesh(np.asarray(jax.devices()), (DATA,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], n: int) -> P:
    """Shard the largest axis divisible by the device count over the data axis (FSDP); replicate small leaves."""
    if n == 1 or not shape or int(np.prod(shape)) < 2 ** 14:
        return P()
    axes = sorted(range(len(shape)), key=lambda a: -shape[a])
    for a in axes:
        if shape[a] % n == 0:
            spec = [None] * len(shape)
            spec[a] = DATA
            return P(*spec)
    return P()


def state_shardings(mesh: Mesh, state, fsdp: bool):
    """Shardings for a train-state pytree: replicated, or FSDP-sharded parameters and optimizer moments."""
    n = mesh.devices.size
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), n) if fsdp else P()), state)


def global_batch(sharding: NamedSharding, *local_arrays):
    """Host-local numpy batches -> global jax.Arrays split over the data axis."""
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in local_arrays)
