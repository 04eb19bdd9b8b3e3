"""utils/trace_cache.py: the trainer's traced train step is kept on disk, reused without tracing, and computes exactly
what ``jax.jit`` of the same step computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxyolo import parallel
from jaxyolo.cfg import get_cfg
from jaxyolo.engine import optim
from jaxyolo.engine.model import init_variables, variable_shapes
from jaxyolo.engine.steps import create_state, make_train_step
from jaxyolo.nn.build import build_model
from jaxyolo.utils import trace_cache
from jaxyolo.utils.trace_cache import CachedJit

B, S, NC = 4, 32, 3


@pytest.fixture(scope="module")
def step_parts():
    module, _ = build_model("yolov8n-cls.yaml", nc=NC)
    variables = init_variables(module, 0)
    recipe = optim.resolve_recipe(get_cfg(dict(model="yolov8n-cls.yaml", batch=B, imgsz=S)), NC, 40, 10)
    tx = optim.build_tx(recipe)
    mesh = parallel.make_mesh()
    state = jax.jit(create_state, static_argnums=1)(variables, tx)
    shardings = parallel.state_shardings(mesh, state, False)
    return module, recipe, tx, variables, shardings, parallel.data_sharding(mesh), parallel.replicated(mesh)


def fresh_state(parts):
    _, _, tx, variables, shardings, _, _ = parts
    return jax.device_put(jax.jit(create_state, static_argnums=1)(variables, tx), shardings)


def cached_step(parts, cache_dir, seed=0):
    module, recipe, tx, _, shardings, bsh, rep = parts
    return CachedJit(make_train_step(module, tx, 0.1, jnp.float32, seed), name="train_step",
                     key=(repr(module), repr(recipe), 0.1, "float32", seed), out_tree=jax.tree.structure(
                         (fresh_state(parts), 0)), in_shardings=(shardings, bsh, bsh, rep, rep),
                     out_shardings=(shardings, rep), donate_argnums=(0,), cache_dir=cache_dir)


def batches(n=3):
    rng = np.random.default_rng(0)
    for i in range(n):  # batch 0: gradients accumulated only; 1 and 2: optimizer steps (clip, AdamW, EMA)
        hp = np.array([0.01, 0.01, 0.05, 0.9, float(i > 0)], np.float32)
        yield (rng.integers(0, 256, (B, S, S, 3), dtype=np.uint8), rng.integers(0, NC, B).astype(np.int32), hp,
               np.int32(i))


def run(step, parts):
    state, losses = fresh_state(parts), []
    for x, y, hp, ni in batches():
        state, loss = step(state, x, y, hp, ni)
        losses.append(np.asarray(loss))
    return [np.asarray(v) for v in jax.tree.leaves(state)], losses


def assert_same(a, b):
    (sa, la), (sb, lb) = a, b
    assert len(sa) == len(sb)
    for u, v in zip(la + sa, lb + sb):
        np.testing.assert_array_equal(u, v)


def test_train_step_from_disk_is_untraced_and_bit_exact(step_parts, tmp_path, monkeypatch):
    module, recipe, tx, _, shardings, bsh, rep = step_parts
    plain = jax.jit(make_train_step(module, tx, 0.1, jnp.float32, 0), in_shardings=(shardings, bsh, bsh, rep, rep),
                    out_shardings=(shardings, rep), donate_argnums=(0,))
    expected = run(plain, step_parts)

    first = cached_step(step_parts, tmp_path)
    assert_same(run(first, step_parts), expected)
    assert first.traced == 1
    files = sorted(tmp_path.glob("train_step-*.jaxexport"))
    assert len(files) == 1 and files[0].stat().st_size > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"

    again = cached_step(step_parts, tmp_path)  # a new process would do the same: nothing in memory, one file on disk
    assert_same(run(again, step_parts), expected)
    assert again.traced == 0, "the step was traced although its trace was on disk"

    other = cached_step(step_parts, tmp_path, seed=1)  # another key (the dropout seed): its own trace and file
    run(other, step_parts)
    assert other.traced == 1 and len(list(tmp_path.glob("train_step-*.jaxexport"))) == 2

    files[0].write_bytes(b"not an exported function")  # damaged: traced again, replaced, still exact
    damaged = cached_step(step_parts, tmp_path)
    assert_same(run(damaged, step_parts), expected)
    assert damaged.traced == 1 and files[0].stat().st_size > 10_000

    monkeypatch.setenv("JAXYOLO_TRACE_CACHE", "0")  # no cache folder (cache_dir=None: the default, now off)
    uncached = cached_step(step_parts, None)  # plain jit of the same step
    assert_same(run(uncached, step_parts), expected)
    assert uncached.traced == 1


def test_lowering_ahead_of_the_first_call_uses_the_same_trace(step_parts, tmp_path):
    """The trainer lowers and compiles the step from abstract arguments before the first batch (``_warm_up``)."""
    _, _, _, _, _, bsh, _ = step_parts
    step = cached_step(step_parts, tmp_path)
    sds = jax.ShapeDtypeStruct
    step.lower(fresh_state(step_parts), sds((B, S, S, 3), jnp.uint8, sharding=bsh), sds((B,), jnp.int32, sharding=bsh),
               sds((5,), jnp.float32), sds((), jnp.int32)).compile()
    run(step, step_parts)
    assert step.traced == 1 and len(step._jitted) == 1


def test_cache_folder_follows_the_compilation_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(trace_cache, "_compilation_cache_dir", lambda: str(tmp_path / "xla"))
    monkeypatch.delenv("JAXYOLO_TRACE_CACHE", raising=False)
    assert trace_cache.trace_cache_dir() == tmp_path / "xla" / "jaxyolo-traces"
    monkeypatch.setenv("JAXYOLO_TRACE_CACHE", "0")
    assert trace_cache.trace_cache_dir() is None
    monkeypatch.setenv("JAXYOLO_TRACE_CACHE", "1")
    monkeypatch.setattr(trace_cache, "_compilation_cache_dir", lambda: None)
    assert trace_cache.trace_cache_dir() is None  # no compilation cache: the trace alone would save little


def test_model_init_shapes_from_disk_are_untraced(monkeypatch, tmp_path):
    """``init_variables`` draws into the tree of ``variable_shapes`` (nn/host_init.py), whose Flax init is traced
    once per model and kept on disk: later calls, any seed, read that file without tracing."""
    monkeypatch.setattr(trace_cache, "_compilation_cache_dir", lambda: str(tmp_path))
    monkeypatch.delenv("JAXYOLO_TRACE_CACHE", raising=False)
    traced = []
    real_init = CachedJit.__init__

    def spy(self, fn, **kw):
        real_init(self, fn, **kw)
        traced.append(self)

    monkeypatch.setattr(CachedJit, "__init__", spy)
    module, _ = build_model("yolov8n-cls.yaml", nc=NC)
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    expected = jax.eval_shape(lambda k: module.init(k, x), jax.random.key(0, impl="rbg"))
    for seed in (0, 5):
        got = init_variables(module, seed)
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            assert (a.shape, a.dtype) == (b.shape, b.dtype)
    assert [c.traced for c in traced] == [1, 0]
    assert len(list((tmp_path / "jaxyolo-traces").glob("init-*.jaxexport"))) == 1
    shapes = variable_shapes(module)
    assert traced[-1].traced == 0
    assert jax.tree.structure(shapes) == jax.tree.structure(expected)
    other, _ = build_model("yolov8n-cls.yaml", nc=NC + 1)  # no file for this model yet: traced, then written
    variable_shapes(other)
    assert traced[-1].traced == 1 and len(list((tmp_path / "jaxyolo-traces").glob("init-*.jaxexport"))) == 2