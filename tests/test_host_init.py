"""nn/host_init.py: a model's initial variables drawn by numpy follow the same rules as Flax's ``module.init`` of
modules.py's initialisers (PyTorch's defaults), for every model family; anything else falls back to Flax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxyolo.engine import model as M
from jaxyolo.engine.model import init_variables, variable_shapes
from jaxyolo.nn.build import build_model
from jaxyolo.nn.host_init import host_variables


def flax_init(module, seed=0):
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    return jax.jit(lambda k: module.init(k, x))(jax.random.key(seed, impl="rbg"))


@pytest.mark.parametrize("yaml", ["yolov8n-cls.yaml", "yolo11n-cls.yaml"])
def test_host_init_draws_what_flax_init_draws(yaml):
    """Same tree, shapes and dtypes; constants equal; random leaves from the same U(+-1/sqrt(fan_in)) as PyTorch's
    kaiming_uniform(a=sqrt(5)) and Linear bias (fan_in: every kernel axis but the last), checked on Flax's draws too,
    so a changed initialiser in modules.py fails here."""
    module, _ = build_model(yaml, nc=7)
    ref = flax_init(module)
    got = init_variables(module, 0)
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    flat_ref, flat_got = traverse_util.flatten_dict(ref), traverse_util.flatten_dict(got)
    random = 0
    for path, r in flat_ref.items():
        g, r = np.asarray(flat_got[path]), np.asarray(r)
        assert (g.shape, g.dtype) == (r.shape, r.dtype), path
        *parent, name = path
        kernel = flat_ref.get((*parent, "kernel"))
        if kernel is None:  # BatchNorm: scale 1, bias 0, mean 0, var 1
            np.testing.assert_array_equal(g, r, err_msg=str(path))
            assert np.all(r == (1.0 if name in ("scale", "var") else 0.0)), path
            continue
        random += 1
        bound = 1.0 / math.sqrt(math.prod(kernel.shape[:-1]))
        for draws in (r, g):
            assert np.abs(draws).max() <= bound * (1 + 1e-6), path
            if draws.size >= 4000:  # uniform over the whole interval, not a narrower or normal draw
                assert np.abs(draws).max() > 0.97 * bound, path
                assert abs(draws.std() / (bound / math.sqrt(3)) - 1) < 0.05, path
                assert abs(draws.mean()) < 0.05 * bound, path
        assert not np.array_equal(g, r)
    assert random >= 28  # every convolution kernel, the Linear kernel and bias


def test_host_init_is_the_same_for_a_seed_and_differs_between_seeds():
    module, _ = build_model("yolov8n-cls.yaml", nc=5)
    a, b, c = init_variables(module, 3), init_variables(module, 3), init_variables(module, 4)
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
        np.testing.assert_array_equal(x, y)
    kernels = [(x, z) for x, z in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(c["params"])) if x.ndim == 4]
    assert kernels and all(not np.array_equal(x, z) for x, z in kernels)


def test_unknown_variables_fall_back_to_flax_init(monkeypatch):
    """A variable without a host rule (another collection, another parameter name) returns None, and
    ``init_variables`` then gives exactly Flax's jitted init of the seed's RngBitGenerator key."""
    f32 = jax.ShapeDtypeStruct((3,), jnp.float32)
    assert host_variables({"params": {"m": {"embedding": f32}}}, 0) is None
    assert host_variables({"params": {"m": {"scale": f32}}}, 0) is None  # a scale without its BatchNorm bias
    assert host_variables({"params": {}, "cache": {"m": {"k": f32}}}, 0) is None
    module, _ = build_model("yolov8n-cls.yaml", nc=4)
    shapes = variable_shapes(module)
    assert host_variables(shapes, 0) is not None
    monkeypatch.setattr("jaxyolo.nn.host_init.host_variables", lambda shapes, seed: None)
    got, ref = M.init_variables(module, 2), flax_init(module, 2)
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, b)
