"""Traced steps kept on disk beside JAX's compilation cache, so a repeat run does not trace them again.

JAX's persistent cache keeps compiled executables, but a process must still trace and lower a jitted function before
it can look one up: ~1.5-2 s of single-threaded Python for yolov8n-cls's train step, while the trainer waits for it
(and the input pipeline competes for the same GIL). ``CachedJit`` keeps the lowered function (``jax.export``,
serialized StableHLO) in ``<compilation cache>/jaxyolo-traces/`` and a repeat run jits ``Exported.call`` instead
(~0.3 s; the compiled step then comes from the compilation cache as before). The computation is the same one:
``tests/test_trace_cache.py`` checks train steps bit for bit against ``jax.jit``.

A file's name is a hash of everything the trace depends on:

* the caller's description of the function (``key``: model, optimizer recipe, dtype, seed, ...),
* the arguments' tree structures, shapes, dtypes and shardings,
* jaxyolo's source files, the versions of Python, jax, jaxlib, flax, optax, numpy and ml_dtypes, the backend and
  its devices, the host's core count, JAX's configuration flags, and on CPU whether (and which build of) jaxyolo's
  oneDNN extension is used (``nn/onednn.py``; its calls are kept in the file as custom calls).

A file is only trusted if its argument and result shapes match the call; an unreadable, stale or mismatching file is
traced and written again (atomically). The cache is off with ``JAXYOLO_TRACE_CACHE=0``, when JAX's compilation cache
is off or not a local folder, and in multi-process runs; then ``CachedJit`` is plain ``jax.jit``. Its files
count towards the compilation cache's size limit and are pruned with it, least recently used first
(``jaxyolo.utils.jax_cache.prune``; ~0.4 MB per yolov8n-cls step).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from importlib import metadata
from pathlib import Path

import jax

from jaxyolo.utils.files import atomic_write
from jaxyolo.utils.host import host_cores
from jaxyolo.utils.jax_cache import switched_off

LOGGER = logging.getLogger("jaxyolo")
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "ml_dtypes")
_SKIP_FLAGS = re.compile(r"cache|_dir$|log")  # flags that name places or logging, not what a trace computes
_FINGERPRINT: list = []


def trace_cache_dir() -> Path | None:
    """``<JAX compilation cache>/jaxyolo-traces`` when traces may be cached in this process, else None."""
    if switched_off("JAXYOLO_TRACE_CACHE"):
        return None
    base = _compilation_cache_dir()
    if not base or "://" in str(base) or jax.process_count() != 1:
        return None
    return Path(base) / "jaxyolo-traces"


def _compilation_cache_dir() -> str | None:
    return jax.config.jax_compilation_cache_dir


def _fingerprint() -> str:
    """jaxyolo's sources, package versions, backend, devices and JAX flags (computed once per process)."""
    if not _FINGERPRINT:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parents[1]
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
        versions = []
        for name in _PACKAGES:
            try:
                versions.append((name, metadata.version(name)))
            except metadata.PackageNotFoundError:
                versions.append((name, None))
        flags = sorted((k, repr(v)) for k, v in jax.config.values.items() if not _SKIP_FLAGS.search(k))
        devices = [(d.platform, d.device_kind, d.id) for d in jax.devices()]
        cores = host_cores()  # XLA:CPU traces slice some kernel gradients per core (nn.cpu_conv)
        onednn = _onednn_key()
        h.update(repr((sys.version, versions, jax.default_backend(), devices, cores, flags, onednn)).encode())
        _FINGERPRINT.append(h.hexdigest())
    return _FINGERPRINT[0]


def _onednn_key() -> tuple:
    """On XLA:CPU, traces call jaxyolo's oneDNN kernels where the extension is available (``nn/onednn.py``)."""
    if jax.default_backend() != "cpu":
        return ()
    from jaxyolo.nn import onednn

    return onednn.trace_key()


def _cache_path(directory: Path, name: str, described, suffix: str) -> Path:
    """``directory/<name>-<hash>.<suffix>``, the hash of ``repr(described)`` and the fingerprint."""
    h = hashlib.sha256(repr(described).encode())
    h.update(_fingerprint().encode())
    return directory / f"{name}-{h.hexdigest()[:40]}.{suffix}"


def _write_cache_file(path: Path, write) -> None:
    """``write(f)`` into ``path`` atomically; a cache that cannot be written (read-only) must not stop a run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            write(f)
    except OSError as e:
        LOGGER.debug(f"{path}: not written ({e})")


def _leaf_shardings(sharding, tree, what: str) -> list:
    """One sharding per leaf: ``sharding`` is one for all leaves, or a tree of shardings matching ``tree``."""
    n = tree.num_leaves
    if sharding is None or isinstance(sharding, jax.sharding.Sharding):
        return [sharding] * n
    leaves = jax.tree.leaves(sharding)
    if len(leaves) != n:
        raise ValueError(f"{what}: {len(leaves)} shardings for {n} leaves")
    return leaves


def _device_count(shardings) -> int:
    return max([len(s.device_set) for s in jax.tree.leaves(shardings) if s is not None] or [1])


def _aval(x):
    """(shape, dtype) of an array, ShapeDtypeStruct or abstract value. Computed for every leaf of every call (520 for
    the train state), so no string conversion here: ``str(dtype)`` alone cost ~2.5 ms a train step."""
    return (x.shape, x.dtype)


class CachedJit:
    """``jax.jit(fn, in_shardings, out_shardings, donate_argnums, compiler_options)`` whose traces are cached on disk
    (see the module docstring). Called like the jitted function, and ``lower(*args)`` like ``jit(...).lower``.

    ``out_tree`` is the tree structure of ``fn``'s results (any pytree: ``jax.tree.structure`` of an example), with
    ``out_shardings`` one entry per top-level result; or None when the results are nested dicts/lists/tuples of
    arrays, which ``jax.export`` keeps itself (then shardings are left to JAX: ``in_shardings``/``out_shardings``
    None)."""

    def __init__(self, fn, *, name: str, key, out_tree=None, in_shardings=None, out_shardings=None,
                 donate_argnums=(), compiler_options=None, cache_dir: Path | None = None):
        if out_tree is None and (in_shardings is not None or out_shardings is not None):
            raise ValueError(f"{name}: shardings need out_tree")
        self.fn, self.name, self.key, self.out_tree = fn, name, key, out_tree
        self.in_shardings = None if in_shardings is None else tuple(in_shardings)
        self.out_shardings = None if out_shardings is None else tuple(out_shardings)
        self.donate_argnums, self.compiler_options = tuple(donate_argnums), compiler_options
        self.cache_dir = cache_dir if cache_dir is not None else trace_cache_dir()
        self._jitted: dict = {}  # (arg trees, arg avals) -> jitted flat function
        self.traced = 0  # how many times fn itself was traced (0 when every signature came from the disk cache)

    # -- calls ----------------------------------------------------------------------------------------------------
    def __call__(self, *args):
        flat, sig = self._flatten(args)
        out = self._fn(sig, args)(*flat)
        return out if self.out_tree is None else jax.tree.unflatten(self.out_tree, out)

    def lower(self, *args):
        flat, sig = self._flatten(args)
        return self._fn(sig, args).lower(*flat)

    def bind(self, *args):
        """The jitted function for arguments shaped like ``args`` (arrays or ``ShapeDtypeStruct``s), called with each
        argument's leaves -- ``f(leaves_0, leaves_1, ...)`` -> the results' leaves (``out_tree``'s order). A loop
        that keeps its state as leaves skips ``__call__``'s flattening, signature and unflattening every call
        (the train state has ~520 leaves: ~2 ms of Python a step, several times that while the input pipeline's
        threads compete for the GIL)."""
        return self._fn(self._flatten(args)[1], args)

    def _fn(self, sig, args):
        return self._jitted.get(sig) or self._build(sig, args)

    @staticmethod
    def _flatten(args):
        flat, trees = [], []
        for a in args:
            leaves, tree = jax.tree.flatten(a)
            flat.append(leaves)
            trees.append(tree)
        return flat, (tuple(trees), tuple(_aval(x) for leaves in flat for x in leaves))

    def eval_shape(self, *args):
        """``jax.eval_shape(fn, *args)``, read from the trace on disk when there is one (no tracing), else traced
        (and, with ``out_tree=None``, exported and written for later calls, as ``__call__`` would)."""
        flat, sig = self._flatten(args)
        if self.cache_dir is not None and self.out_tree is None:
            try:
                exp = self._exported(self._flat_fn(sig[0]), self._jit_kw(sig[0]), sig, args)
                return jax.tree.unflatten(exp.out_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype)
                                                         for a in exp.out_avals])
            except Exception as e:  # noqa: BLE001  (not exportable here: trace as jax.eval_shape does)
                LOGGER.debug(f"{self.name}: trace cache not used ({type(e).__name__}: {e})")
        return jax.eval_shape(self.fn, *args)

    # -- building -------------------------------------------------------------------------------------------------
    def _jit_kw(self, trees) -> dict:
        jit_kw: dict = dict(donate_argnums=self.donate_argnums)
        if self.out_tree is not None:
            out_parts = self.out_tree.children()
            out_sh = self.out_shardings or (None,) * len(out_parts)
            if len(out_parts) != len(out_sh):
                raise ValueError(f"{self.name}: out_shardings has {len(out_sh)} entries for {len(out_parts)} results")
            jit_kw["in_shardings"] = tuple(_leaf_shardings(s, t, f"{self.name} argument {i}") for i, (s, t) in
                                           enumerate(zip(self.in_shardings or (None,) * len(trees), trees)))
            jit_kw["out_shardings"] = [s for sh, t in zip(out_sh, out_parts)
                                       for s in _leaf_shardings(sh, t, f"{self.name} result")]
        if self.compiler_options:
            jit_kw["compiler_options"] = self.compiler_options
        return jit_kw

    def _build(self, sig, args):
        trees = sig[0]
        jit_kw = self._jit_kw(trees)
        flat_fn = self._flat_fn(trees)
        fn = None
        if self.cache_dir is not None:
            try:
                fn = jax.jit(self._exported(flat_fn, jit_kw, sig, args).call, **jit_kw)
            except Exception as e:  # noqa: BLE001  (not exportable here: trace it as plain jit does)
                LOGGER.debug(f"{self.name}: trace cache not used ({type(e).__name__}: {e})")
        if fn is None:
            fn = jax.jit(flat_fn, **jit_kw)
        self._jitted[sig] = fn
        return fn

    def _flat_fn(self, trees):
        def flat_fn(*arg_leaves):
            self.traced += 1
            out = self.fn(*[jax.tree.unflatten(t, leaves) for t, leaves in zip(trees, arg_leaves)])
            if self.out_tree is None:
                return out
            leaves, tree = jax.tree.flatten(out)
            if tree != self.out_tree:
                raise ValueError(f"{self.name}: results have structure {tree}, expected {self.out_tree}")
            return leaves

        return flat_fn

    def _path(self, sig, shardings) -> Path:
        return _cache_path(self.cache_dir, self.name, (self.name, self.key, sig, shardings, self.donate_argnums,
                                                       self.compiler_options), "jaxexport")

    def _exported(self, flat_fn, jit_kw, sig, args):
        from jax import export

        path = self._path(sig, (jit_kw.get("in_shardings"), jit_kw.get("out_shardings")))
        avals = list(sig[1])
        try:
            exp = export.deserialize(bytearray(path.read_bytes()))
            n_out = len(exp.out_avals) if self.out_tree is None else self.out_tree.num_leaves
            if ([_aval(a) for a in exp.in_avals] == avals and len(exp.out_avals) == n_out
                    and exp.nr_devices == _device_count(jit_kw.get("in_shardings"))):
                return exp
            LOGGER.debug(f"{path}: other shapes than this call; tracing again")
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001  (a damaged or foreign file: trace again and replace it)
            LOGGER.debug(f"{path}: unreadable ({type(e).__name__}: {e}); tracing again")
        abstract = [[jax.ShapeDtypeStruct(x.shape, x.dtype) for x in jax.tree.leaves(a)] for a in args]
        # The lowering platform ('cuda'/'rocm', not jax.default_backend()'s 'gpu': an Exported for 'gpu' cannot be
        # called on a CUDA device, which broke every step on GPUs until session 16).
        from jaxyolo.nn.onednn import TARGETS  # jaxyolo's own FFI calls (registered in this process: _fingerprint)

        checks = [export.DisabledSafetyCheck.custom_call(t) for t in TARGETS]
        exp = export.export(jax.jit(flat_fn, **jit_kw), platforms=[export.default_export_platform()],
                            disabled_checks=checks)(*abstract)
        _write_cache_file(path, lambda f: f.write(exp.serialize()))
        return exp
