"""The train state's flat layout (``jaxyolo.engine.flat``): vectors per parameter group round-trip to the model's
trees on the host and inside a jit, their gradients are the trees' gradients, and an optimizer step on the flat state
(clip, SGD or AdamW per group, EMA) equals the same step taken leaf by leaf on the trees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxyolo.engine import optim
from jaxyolo.engine.flat import PAD, FlatLayout
from jaxyolo.engine.steps import apply_optimizer, create_state


@pytest.fixture(scope="module")
def variables():
    from jaxyolo.engine.model import init_variables
    from jaxyolo.nn.build import build_model

    module, _ = build_model("yolov8n-cls.yaml", nc=7)
    v = init_variables(module, 0)
    rng = np.random.default_rng(0)  # distinct BatchNorm statistics, so a swapped leaf cannot pass
    v["batch_stats"] = jax.tree.map(lambda x: rng.standard_normal(np.shape(x)).astype(np.float32), v["batch_stats"])
    return v


def assert_trees_equal(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **(tol or {"rtol": 0, "atol": 0}))


def test_round_trip_on_the_host_and_in_a_jit(variables):
    lay = FlatLayout.of(variables)
    flat = lay.ravel_variables(variables, np)
    assert sorted(flat["params"]) == sorted(optim.GROUPS)
    for vec in [*flat["params"].values(), flat["batch_stats"]]:
        assert vec.ndim == 1 and vec.size % PAD == 0
    n = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    assert sum(v.size for v in flat["params"].values()) - n < PAD * len(optim.GROUPS)
    assert_trees_equal(lay.unravel_variables(flat), variables)  # numpy views
    labels = optim.param_labels(variables["params"])
    weight = [x for x, g in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(labels)) if g == "weight"]
    np.testing.assert_array_equal(flat["params"]["weight"][:sum(x.size for x in weight)],
                                  np.concatenate([np.ravel(x) for x in weight]))  # group order = tree order
    assert not np.any(flat["params"]["weight"][sum(x.size for x in weight):])  # zero padding
    jitted = jax.jit(lambda f: lay.unravel_variables(f))(jax.tree.map(jnp.asarray, flat))
    assert_trees_equal(jitted, variables)
    assert_trees_equal(jax.jit(lambda v: lay.ravel_variables(v))(variables), flat)
    assert FlatLayout.from_description(lay.describe()) == lay and hash(lay) == hash(FlatLayout.of(variables))


def test_gradients_through_the_layout_are_the_trees_gradients(variables):
    lay = FlatLayout.of(variables)
    leaves = jax.tree.leaves(variables["params"])
    w = [jnp.asarray(np.random.default_rng(i).standard_normal(np.shape(x)), jnp.float32) for i, x in enumerate(leaves)]

    def loss(params):
        return sum(jnp.sum(jnp.sin(p) * c) for p, c in zip(jax.tree.leaves(params), w))

    tree_grads = jax.grad(loss)(variables["params"])
    flat_grads = jax.jit(jax.grad(lambda f: loss(lay.unravel_params(f))))(lay.ravel_params(variables["params"]))
    np.testing.assert_allclose(np.concatenate([np.ravel(flat_grads[g]) for g in optim.GROUPS]),
                               np.concatenate([np.ravel(lay.ravel_params(tree_grads, np)[g]) for g in optim.GROUPS]),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_flat_optimizer_step_equals_the_step_leaf_by_leaf(variables, name):
    args = dict(batch=16, nbs=64, epochs=2, weight_decay=5e-4, optimizer=name, lr0=0.05, momentum=0.9,
                warmup_bias_lr=0.1, warmup_epochs=0.0, warmup_momentum=0.8, lrf=0.01, cos_lr=False)
    recipe = optim.resolve_recipe(args, 7, 64, 4)
    tx = optim.build_tx(recipe)
    state = create_state(variables, tx, np)
    # the reference: the same transforms on the trees, labelled leaf by leaf
    ref_tx = optax.multi_transform({g: optim._group_optimizer(name, g == "weight")(
        learning_rate=recipe.lr0, momentum=recipe.momentum, weight_decay=recipe.weight_decay) for g in optim.GROUPS},
        optim.param_labels(variables["params"]))
    params = jax.tree.map(jnp.asarray, variables["params"])
    ref = {"params": params, "opt": ref_tx.init(params),
           "ema": jax.tree.map(jnp.asarray, variables), "n": jnp.zeros((), jnp.int32)}

    @jax.jit
    def ref_step(r, grads, hp):
        g, _ = optim.clip_by_norm(grads, 10.0)
        opt = optim.set_hparams(r["opt"], hp[:3], hp[3])
        upd, opt = ref_tx.update(g, opt, r["params"])
        p = optax.apply_updates(r["params"], upd)
        n = r["n"] + 1
        ema = optim.ema_update(r["ema"], {"params": p, "batch_stats": variables["batch_stats"]}, n)
        return {"params": p, "opt": opt, "ema": ema, "n": n}

    flat_step = jax.jit(lambda s, g, hp: apply_optimizer(tx, s, g, hp))
    rng = np.random.default_rng(1)
    for i in range(3):  # large gradients on the first step, so the clip acts
        grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(np.shape(x)) * (5.0 if i == 0 else 0.01),
                                                   jnp.float32), variables["params"])
        hp = jnp.asarray([0.05, 0.02, 0.1 + i, 0.9, 1.0], jnp.float32)  # per-group lrs differ
        ref = ref_step(ref, grads, hp)
        state = flat_step(state, state.layout.ravel_params(grads, np), hp)
    # atol: a few float32 ulps of the parameters' magnitude (~3): a value near 0 after an update of ~2 (lr 2.1, AdamW)
    # keeps the rounding of the terms it came from (4e-7 on an AMD Zen 5, where XLA contracted differently)
    assert_trees_equal(state.variables()["params"], ref["params"], rtol=2e-5, atol=1e-6)
    assert_trees_equal(state.ema_variables(), ref["ema"], rtol=2e-5, atol=1e-6)
    for g, seg in state.layout.groups:  # the padding stays zero
        real, vec = sum(seg.sizes), np.asarray(state.params[g])
        assert vec.size % PAD == 0 and not np.any(vec[real:]) and not np.any(np.asarray(state.ema["params"][g])[real:])
    assert sum(dict(state.layout.groups)["weight"].sizes) < state.params["weight"].size  # (padding to look at)


def test_difference_names_the_first_leaf(variables):
    from jaxyolo.engine.model import init_variables
    from jaxyolo.nn.build import build_model

    lay = FlatLayout.of(variables)
    assert lay.difference(lay) == ""
    other = FlatLayout.of(init_variables(build_model("yolov8n-cls.yaml", nc=3)[0], 0))
    assert lay.difference(other) == ("params/model_9/linear/kernel [1280, 7] float32 (checkpoint: "
                                     "params/model_9/linear/kernel [1280, 3] float32)")
