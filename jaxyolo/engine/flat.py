"""The train state's flat layout: the model's parameters as one 1-D vector per optimizer parameter group, and its
BatchNorm statistics as one more.

The optimizer, the gradient clip, the gradient sum and the EMA work on these few vectors instead of on ~130 parameter
leaves. XLA:CPU compiles every output of every leaf of an elementwise update as its own fusion: yolov8n-cls's train
step (AdamW, clip, EMA) had 1019 fusions and compiled in 7.0 s on the 2-core VM, 538 and 4.7 s with the flat state,
the largest cost of a first (cold) training run; GPUs launch correspondingly fewer kernels. The forward pass reads
each leaf as a slice of its group's vector (``jnp.split``, whose gradient is one concatenation), so the step's
gradients arrive flat.

Each vector is padded with zeros to a multiple of ``PAD`` elements so FSDP can shard it evenly over any power-of-two
device count up to ``PAD`` (the padding's gradient is zero, and so is every optimizer's update of it). The layout is
static (hashable): a ``TrainState`` carries it, jit treats it as a constant, and ``describe()`` writes it into a
checkpoint's meta so the EMA weights can be read back as a tree (``checkpoint.read_ema``).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxyolo.engine.optim import GROUPS, param_labels

PAD = 1024  # each flat vector's length is a multiple of this (FSDP shards it evenly over <= PAD devices)


def _padded(n: int) -> int:
    return -(-n // PAD) * PAD


def _host_or_traced(tree, xp):
    """``(xp, tree)``: the given xp, else jnp for traced arrays (inside a jit) or numpy on the fetched arrays (no
    per-leaf dispatch or compile outside one)."""
    if xp is not None:
        return xp, tree
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree)):
        return jnp, tree
    return np, jax.device_get(tree)


def _leaves(tree) -> list[tuple[tuple, tuple, str]]:
    """``[(path, shape, dtype name)]`` in flattening order (paths as tuples of dict keys)."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))
    return [(tuple(path), tuple(int(d) for d in np.shape(x)), np.dtype(x.dtype).name) for path, x in flat.items()]


@dataclass(frozen=True)
class Segment:
    """The leaves stored in one flat vector: their paths and shapes, in order, and the vector's dtype."""

    paths: tuple
    shapes: tuple
    dtype: str

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(s, dtype=np.int64)) for s in self.shapes]

    @property
    def length(self) -> int:
        return _padded(sum(self.sizes))

    def ravel(self, flat_tree: dict, xp=jnp):
        parts = [xp.ravel(flat_tree[p]).astype(self.dtype) for p in self.paths]
        pad = self.length - sum(self.sizes)
        if pad or not parts:
            parts.append(xp.zeros((pad,), self.dtype))
        return xp.concatenate(parts)

    def unravel(self, vec, xp=jnp) -> dict:
        """``{path: leaf}``: jnp splits inside a trace (one concatenation in the gradient); numpy gives views."""
        cuts = np.cumsum(self.sizes)
        pieces = xp.split(vec, [int(c) for c in cuts]) if len(cuts) else []
        return {p: xp.reshape(x, s) for p, s, x in zip(self.paths, self.shapes, pieces)}


@dataclass(frozen=True)
class FlatLayout:
    """``params`` as one vector per parameter group (``optim.GROUPS``), ``batch_stats`` as one vector."""

    groups: tuple  # ((group name, Segment), ...) in GROUPS order
    stats: Segment

    @classmethod
    def of(cls, variables) -> "FlatLayout":
        """The layout of a model's ``{'params', 'batch_stats'}`` (arrays or ShapeDtypeStructs)."""
        labels = flax.traverse_util.flatten_dict(param_labels(variables["params"]))
        leaves = _leaves(variables["params"])
        groups = []
        for g in GROUPS:
            mine = [(p, s, d) for p, s, d in leaves if labels[p] == g]
            dtypes = {d for _, _, d in mine}
            if len(dtypes) > 1:
                raise ValueError(f"parameter group '{g}' mixes dtypes {sorted(dtypes)}; the train state needs one")
            groups.append((g, Segment(tuple(p for p, _, _ in mine), tuple(s for _, s, _ in mine),
                                      dtypes.pop() if dtypes else "float32")))
        stats = _leaves(variables.get("batch_stats", {}))
        sdt = {d for _, _, d in stats}
        if len(sdt) > 1:
            raise ValueError(f"BatchNorm statistics mix dtypes {sorted(sdt)}; the train state needs one")
        return cls(tuple(groups), Segment(tuple(p for p, _, _ in stats), tuple(s for _, s, _ in stats),
                                          sdt.pop() if sdt else "float32"))

    # ---- parameters ------------------------------------------------------------------------------------------------
    def ravel_params(self, params, xp=jnp) -> dict:
        flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
        return {g: seg.ravel(flat, xp) for g, seg in self.groups}

    def unravel_params(self, flat: dict, xp=None) -> dict:
        xp, flat = _host_or_traced(flat, xp)
        leaves = {}
        for g, seg in self.groups:
            leaves.update(seg.unravel(flat[g], xp))
        return flax.traverse_util.unflatten_dict(leaves)

    # ---- BatchNorm statistics --------------------------------------------------------------------------------------
    def ravel_stats(self, batch_stats, xp=jnp):
        return self.stats.ravel(flax.traverse_util.flatten_dict(flax.core.unfreeze(batch_stats)), xp)

    def unravel_stats(self, vec, xp=None) -> dict:
        xp, vec = _host_or_traced(vec, xp)
        return flax.traverse_util.unflatten_dict(self.stats.unravel(vec, xp))

    # ---- both ------------------------------------------------------------------------------------------------------
    def ravel_variables(self, variables, xp=jnp) -> dict:
        return {"params": self.ravel_params(variables["params"], xp),
                "batch_stats": self.ravel_stats(variables["batch_stats"], xp)}

    def unravel_variables(self, flat: dict, xp=None) -> dict:
        """``{'params', 'batch_stats'}`` trees from their flat form (``xp``: see ``_host_or_traced``)."""
        xp, flat = _host_or_traced(flat, xp)
        return {"params": self.unravel_params(flat["params"], xp), "batch_stats": self.unravel_stats(
            flat["batch_stats"], xp)}

    def difference(self, other: "FlatLayout") -> str:
        """The first leaf where ``other`` (a checkpoint's layout) differs, as ``path shape dtype (checkpoint: ...)``;
        '' when the two are the same."""
        def entries(lay):
            segs = [("params", s) for _, s in lay.groups] + [("batch_stats", lay.stats)]
            return [("/".join(map(str, (top, *p))), list(sh), s.dtype) for top, s in segs
                    for p, sh in zip(s.paths, s.shapes)]

        mine, theirs = entries(self), entries(other)
        for a, b in zip(mine, theirs):
            if a != b:
                return f"{a[0]} {a[1]} {a[2]} (checkpoint: {b[0]} {b[1]} {b[2]})"
        if len(mine) != len(theirs) or [g for g, _ in self.groups] != [g for g, _ in other.groups]:
            return f"{len(mine)} arrays (checkpoint: {len(theirs)})"
        return ""

    # ---- JSON (a checkpoint's meta) --------------------------------------------------------------------------------
    def describe(self) -> dict:
        def seg(s: Segment) -> dict:
            return {"dtype": s.dtype, "leaves": [[list(p), list(sh)] for p, sh in zip(s.paths, s.shapes)]}

        return {"pad": PAD, "groups": {g: seg(s) for g, s in self.groups}, "batch_stats": seg(self.stats)}

    @classmethod
    def from_description(cls, d: dict) -> "FlatLayout":
        if int(d.get("pad", -1)) != PAD:
            raise ValueError(f"flat layout padded to {d.get('pad')} elements; this jaxyolo pads to {PAD}")

        def seg(e: dict) -> Segment:
            return Segment(tuple(tuple(p) for p, _ in e["leaves"]), tuple(tuple(s) for _, s in e["leaves"]),
                           e["dtype"])

        return cls(tuple((g, seg(e)) for g, e in d["groups"].items()), seg(d["batch_stats"]))
