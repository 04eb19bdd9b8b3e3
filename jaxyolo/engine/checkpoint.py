"""Orbax checkpoints of the full train state plus the host-side loop counters, for exact resume.

The state is saved *packed*: its leaves raveled and concatenated into one 1-D array per part and dtype, where the
parts are ``ema`` (the weights ``YOLO('run/checkpoints')`` loads, readable on their own) and ``train`` (everything
else). Orbax's cost is per array: yolov8n-cls's 520 leaves took 0.85 s to save in the background (more than a digits
epoch on 2 busy cores, so the next save waited for it) and 0.12 s on the trainer's thread; packed, 0.06 s and 0.006 s.
Each packed array is sharded over every device of the mesh (padded to a multiple of the device count), so every host
writes only its own slices, FSDP or not; on one device a state of at most ``HOST_PACK_MAX_BYTES`` is packed by numpy
instead (no packer to compile). The JSON ``meta`` item records each leaf's path, shape and dtype, so a checkpoint
stays self-describing, and ``flat_layout`` how the EMA's vectors of the flat train state (``engine/flat.py``) unravel
into the model's tree. Checkpoints of the earlier per-leaf train state (packed, or leaf by leaf from before packing)
no longer resume (``restore`` says so), but their EMA weights still read (``read_ema``). The arrays are stored without
orbax's default zstd compression (``COMPRESS``): on float weights and optimizer moments it saves ~10% of the disk for
~2.5x the CPU of a save (36 MB of random normals: 0.20 vs 0.08 CPU-s), and a save runs beside the train step every
epoch. Compressed checkpoints restore as before (tensorstore reads the codec from the array's metadata).
A host-packed save hands its numpy arrays and a copy of the meta to orbax on the checkpointer's own thread (orbax's
synchronous part, 12-137 ms a digits epoch, no longer holds the trainer); saves keep their order, and ``wait``,
``close``, ``latest_step`` and the restores wait for them and raise a failed one.
"""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxyolo.engine.flat import FlatLayout

FORMAT = 2  # meta["format"]: 2 = packed; absent = one orbax array per leaf
HOST_PACK_MAX_BYTES = 64 << 20  # one device: states of at most this size are packed by numpy (``Checkpointer.save``)
COMPRESS = False  # orbax's default zstd: ~2.5x the CPU of a save, for ~10% less disk on trained weights


def _key(k) -> str | int:
    return k.key if hasattr(k, "key") else k.name if hasattr(k, "name") else k.idx


def _parts(state) -> dict:
    """``{'ema': pytree, 'train': pytree}``: the EMA weights, and the rest of the state."""
    return {"ema": state.ema, "train": state.replace(ema=None)}


def layout(state) -> dict:
    """``{part: [[path, shape, dtype], ...]}`` in flattening order (paths as lists of keys)."""
    return {part: [[[_key(k) for k in path], list(np.shape(x)), np.dtype(x.dtype).name]
                   for path, x in jax.tree_util.tree_leaves_with_path(tree)]
            for part, tree in _parts(state).items()}


def _groups(entries: list) -> dict[str, tuple[list[int], int]]:
    """dtype -> (indices of the leaves of that dtype in order, total size)."""
    out: dict[str, tuple[list[int], int]] = {}
    for i, (_, shape, dtype) in enumerate(entries):
        idx, n = out.get(dtype, ([], 0))
        out[dtype] = (idx + [i], n + int(np.prod(shape, dtype=np.int64)))
    return out


def _padded(n: int, n_dev: int) -> int:
    return max(1, -(-n // n_dev)) * n_dev


def _flat_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(mesh.axis_names))


def _pack_parts(state, lay, n_dev: int, xp=jnp) -> dict:
    """``{part: {dtype: 1-D array}}``: each part's leaves of one dtype raveled, concatenated and padded to a multiple
    of ``n_dev`` (``_unpack_leaves`` reverses it); ``xp``: jnp inside the jitted packer, np on the host."""
    out = {}
    for part, tree in _parts(state).items():
        leaves = jax.tree.leaves(tree)
        out[part] = {}
        for dtype, (idx, n) in _groups(lay[part]).items():
            flat = xp.concatenate([xp.ravel(leaves[i]) for i in idx])
            pad = _padded(n, n_dev) - n
            out[part][dtype] = xp.pad(flat, (0, pad)) if pad else flat
    return out


def _packer(state, mesh):
    """A jitted ``state -> {part: {dtype: 1-D array}}`` (``_pack_parts``), sharded over every device."""
    lay = layout(state)
    n_dev = mesh.devices.size
    return jax.jit(lambda st: _pack_parts(st, lay, n_dev), out_shardings=_flat_sharding(mesh)), lay


def _host_pack(state, lay) -> dict:
    """``_packer``'s arrays made by numpy, for one device (no padding, no sharding): the same layout."""
    return _pack_parts(state, lay, 1, np)


def _unpack_leaves(flat: dict, entries: list, xp=jnp) -> list:
    leaves = [None] * len(entries)
    for dtype, (idx, _) in _groups(entries).items():
        off = 0
        for i in idx:
            shape = entries[i][1]
            n = int(np.prod(shape, dtype=np.int64))
            leaves[i] = xp.reshape(flat[dtype][off:off + n], shape)
            off += n
    return leaves


class Checkpointer:
    """Async ``CheckpointManager`` keeping the newest ``keep`` checkpoints; steps are global batch counts."""

    def __init__(self, directory: str | Path, mesh, keep: int = 3):
        self.directory = Path(directory).absolute()
        self.mesh = mesh
        self._packers = {}  # state structure, shapes and dtypes -> (jitted packer, layout)
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="jaxyolo-checkpoint")  # host-packed saves (save())
        self._saving: list[Future] = []
        self.mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True),
            item_handlers={"state": ocp.PyTreeCheckpointHandler(use_compression=COMPRESS),
                           "meta": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        self._check(wait=True)
        return self.mgr.latest_step()

    def save(self, step: int, state, meta: dict, force: bool = False) -> None:
        leaves, treedef = jax.tree.flatten(state)
        key = (treedef, tuple((x.shape, x.dtype) for x in leaves))
        if key not in self._packers:
            self._packers[key] = _packer(state, self.mesh)
        pack, lay = self._packers[key]
        # One device and a small state (yolov8n-cls: 29 MB): numpy concatenates it on the trainer's thread in ~10 ms
        # (the state is ready: an epoch ends on a sync), where the jitted packer first compiles (0.5 s of a first
        # digits run). Larger states keep the packer, which runs beside the next train steps.
        host = self.mesh.devices.size == 1 and sum(x.nbytes for x in leaves) <= HOST_PACK_MAX_BYTES
        packed = _host_pack(state, lay) if host else pack(state)
        meta = {**copy.deepcopy(meta), "format": FORMAT, "layout": lay}  # (the caller's lists go on changing)
        if getattr(state, "layout", None) is not None:  # the flat train state (engine/flat.py): how to read the EMA
            meta["flat_layout"] = state.layout.describe()
        args = ocp.args.Composite(state=ocp.args.PyTreeSave(packed), meta=ocp.args.JsonSave(meta))
        self._check()
        if host:  # numpy copies of the state: orbax's own synchronous part of a save (directories, metadata, its
            # event loop; 12-137 ms a digits epoch, 0.46 s of the run) runs on a thread of its own, in order
            self._saving.append(self._saver.submit(self.mgr.save, step, args=args, force=force))
        else:
            self.mgr.save(step, args=args, force=force)

    def _check(self, wait: bool = False) -> None:
        """Re-raise the first failed save (``save``'s thread) here; with ``wait``, after every save has started."""
        pending, self._saving = self._saving, []
        for f in pending:
            if wait or f.done():
                f.result()
            else:
                self._saving.append(f)

    def restore(self, step: int, abstract_state):
        """Restore onto the shardings described by ``abstract_state`` (a pytree of ShapeDtypeStruct with sharding)."""
        self._check(wait=True)
        meta = self.restore_meta(step)
        if meta.pop("format", None) != FORMAT or "flat_layout" not in meta:
            raise ValueError(f"{self.directory / str(step)}: written by an earlier jaxyolo, whose train state was one "
                             f"array per parameter; this one keeps it flat (engine/flat.py) and cannot resume it. Its "
                             f"EMA weights still load: YOLO('{self.directory}'), or train with pretrained=<its .pt>")
        part = "model"  # the model's leaves first (the flat layout), then the packed arrays (e.g. another optimizer)
        diff = abstract_state.layout.difference(FlatLayout.from_description(meta.pop("flat_layout")))
        want, got = layout(abstract_state), meta.pop("layout")
        if not diff and want != got:
            part = next(p for p in want if want[p] != got.get(p))
            diff = next((f"{'/'.join(map(str, a[0]))} {a[1]} {a[2]} (checkpoint: {'/'.join(map(str, b[0]))} {b[1]} "
                         f"{b[2]})" for a, b in zip(want[part], got.get(part, [])) if a != b),
                        f"{len(want[part])} arrays (checkpoint: {len(got.get(part, []))})")
        if diff:
            raise ValueError(f"{self.directory / str(step)}: the checkpoint does not match this model and optimizer; "
                             f"first difference in '{part}': {diff}")
        n_dev, sh = self.mesh.devices.size, _flat_sharding(self.mesh)
        abstract = {part: {dtype: jax.ShapeDtypeStruct((_padded(n, n_dev),), dtype, sharding=sh)
                           for dtype, (_, n) in _groups(entries).items()} for part, entries in want.items()}
        packed = self._restore_tree(step, abstract)
        parts = _parts(abstract_state)

        def unpack(pk):
            trees = {part: jax.tree.unflatten(jax.tree.structure(parts[part]), _unpack_leaves(pk[part], want[part]))
                     for part in want}
            return trees["train"].replace(ema=trees["ema"])

        shardings = jax.tree.map(lambda a: a.sharding, abstract_state)
        return jax.jit(unpack, out_shardings=shardings)(packed), meta

    def _restore_tree(self, step: int, abstract):
        args = ocp.args.PyTreeRestore(item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
        return self.mgr.restore(step, args=ocp.args.Composite(state=args))["state"]

    def restore_meta(self, step: int) -> dict:
        """Only the host-side counters of checkpoint ``step`` (cheap: no arrays are read)."""
        self._check(wait=True)
        return self.mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def wait(self) -> None:
        self._check(wait=True)
        self.mgr.wait_until_finished()

    def close(self) -> None:
        try:
            self._check(wait=True)
        finally:
            self._saver.shutdown(wait=True)
            self.mgr.wait_until_finished()
            self.mgr.close()


def read_ema(ckpt_dir: str | Path, step: int) -> dict:
    """The EMA ``{'params', 'batch_stats'}`` of one train-state checkpoint, as numpy (nothing else is read)."""
    step_dir = Path(ckpt_dir).absolute() / str(step)
    meta = {}
    if (step_dir / "meta").is_dir():  # through orbax's JSON handler, not its file layout
        meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(step_dir / "meta", args=ocp.args.JsonRestore())
    ck = ocp.PyTreeCheckpointer()
    tree = ck.metadata(step_dir / "state").item_metadata.tree
    if not isinstance(tree, dict) or "ema" not in tree:
        raise ValueError(f"{step_dir / 'state'}: not a jaxyolo train-state checkpoint (no 'ema' entry)")
    sub = {"ema": tree["ema"]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), sub)
    ema = ck.restore(step_dir / "state", args=ocp.args.PyTreeRestore(item=sub, restore_args=restore_args,
                                                                   partial_restore=True))["ema"]
    if meta.get("format") == FORMAT:
        entries = meta["layout"]["ema"]
        ema = flax.traverse_util.unflatten_dict({tuple(path): leaf for (path, _, _), leaf
                                                 in zip(entries, _unpack_leaves(ema, entries, np))})
    if "flat_layout" in meta:  # the EMA's vectors of the flat train state
        ema = FlatLayout.from_description(meta["flat_layout"]).unravel_variables(ema, np)
    return {"params": ema["params"], "batch_stats": ema["batch_stats"]}


def abstract_like(state, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
