"""The jitted train step's dropout key: the step folds the batch index into PRNGKey(seed) itself (the host passes only
``ni``), so the masks must be what ``fold_in(PRNGKey(seed), ni)`` gives, change with ``ni`` and with ``seed``, and
repeat for the same pair (what an exact resume relies on)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxyolo.engine import optim
from jaxyolo.engine.model import init_variables
from jaxyolo.engine.steps import (create_state, cross_entropy, make_optimizer_step, make_train_step,
                                  step_update, to_input)
from jaxyolo.nn.build import build_model

NC, B, IMGSZ = 5, 4, 32


def _tx(variables):
    """SGD with Ultralytics' parameter groups, batch B of nominal 64 (accumulate 16)."""
    args = dict(batch=B, nbs=64, epochs=1, weight_decay=5e-4, optimizer="SGD", lr0=0.01, momentum=0.9,
                warmup_bias_lr=0.1, warmup_epochs=0.0, warmup_momentum=0.8, lrf=0.01, cos_lr=False)
    return optim.build_tx(optim.resolve_recipe(args, NC, 100, 10))


def _setup(seed: int):
    module, _ = build_model("yolov8n-cls.yaml", nc=NC, dropout=0.5)
    variables = init_variables(module, 0)
    tx = _tx(variables)
    step = jax.jit(make_train_step(module, tx, seed=seed))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (B, IMGSZ, IMGSZ, 3), dtype=np.uint8))
    y = jnp.asarray(rng.integers(0, NC, (B,), dtype=np.int32))
    hp = jnp.asarray([0.01, 0.01, 0.01, 0.9, 0.0], jnp.float32)  # no optimizer update: the loss is all we compare
    return module, variables, create_state(variables, tx), step, x, y, hp


def test_train_step_dropout_key_is_fold_in_of_seed_and_batch_index():
    module, variables, state, step, x, y, hp = _setup(seed=7)
    # Full fp32 on both sides (on GPUs fp32 convolutions may otherwise run as TF32: this test failed there at rtol
    # 1e-5 on an H200, session 16), and rtol 1e-4 for the jitted step's other rounding; another dropout mask moves
    # the loss by ~2-15%.
    with jax.default_matmul_precision("highest"):
        loss = {ni: float(step(state, x, y, hp, np.int32(ni))[1]) for ni in (3, 4)}

    def reference(key):
        with jax.default_matmul_precision("highest"):
            logits, _ = module.apply(variables, to_input(x), train=True, mutable=["batch_stats"], rngs={"dropout": key})
        return float(cross_entropy(logits, y).mean())

    for ni in (3, 4):
        assert np.isclose(loss[ni], reference(jax.random.fold_in(jax.random.PRNGKey(7), ni)), rtol=1e-4, atol=1e-6)
    assert loss[3] != loss[4]  # a new mask per batch (dropout 0.5 on 256 features: equal losses would be a fluke)
    assert float(step(state, x, y, hp, np.int32(3))[1]) == loss[3]  # same (seed, ni): same mask
    other_seed = _setup(seed=8)
    assert float(other_seed[3](other_seed[2], x, y, hp, np.int32(3))[1]) != loss[3]


def test_update_modes_give_the_same_train_state():
    """The ways the step applies the optimizer are one computation: "select" (GPUs) and "split" (two executables,
    CPUs) equal "cond" over an accumulate-2 cadence (hp[4] = 0, 1, 0, 1), and "always" (accumulate 1) equals "cond"
    with hp[4] = 1 every batch.
    A wrong mode choice would cost speed only, a wrong mode would silently change training: this pins the maths."""
    module, variables, state0, _, x, y, hp = _setup(seed=0)
    tx = _tx(variables)
    module = module.clone(dropout=0.0)

    def run(update, flags):
        step = jax.jit(make_train_step(module, tx, update=update))
        s = create_state(variables, tx)
        for ni, f in enumerate(flags):
            s, _ = step(s, x, y, hp.at[4].set(f), np.int32(ni))
        return s

    def assert_same(a, b):
        """Equal up to fusion-order rounding (which a few steps of BatchNorm amplify): the two states differ by under
        1% of how far training moved the parameters, and took the same number of updates."""
        flat = lambda s: np.concatenate([np.ravel(v) for v in jax.tree.leaves((s.params, s.ema, s.opt_state))])
        moved = np.linalg.norm(flat(a) - flat(state0))
        assert int(a.updates) == int(b.updates) and moved > 0
        assert np.linalg.norm(flat(a) - flat(b)) < 0.01 * moved, (np.linalg.norm(flat(a) - flat(b)), moved)

    cadence = [0.0, 1.0, 0.0, 1.0]
    cond, select = run("cond", cadence), run("select", cadence)
    assert int(cond.updates) == 2
    assert_same(cond, select)
    # "split": the host calls the "accumulate" step every batch and the optimizer's after the batches that update;
    # "apply" (bench_train_step's) is both in one executable
    acc, opt = jax.jit(make_train_step(module, tx, update=step_update("split"))), jax.jit(make_optimizer_step(tx))
    apply = jax.jit(make_train_step(module, tx, update="apply"))
    split, fused = create_state(variables, tx), create_state(variables, tx)
    for ni, f in enumerate(cadence):
        split, _ = acc(split, x, y, hp.at[4].set(1.0 - f), np.int32(ni))  # (hp[4] the other way round: ignored)
        fused, _ = (apply if f else acc)(fused, x, y, hp.at[4].set(1.0 - f), np.int32(ni))
        if f:
            (split,) = opt(split, hp)
    assert_same(cond, split)
    assert_same(cond, fused)
    assert not any(np.any(np.asarray(v)) for v in jax.tree.leaves(split.grad_acc))  # zeroed by the last update
    always = run("always", [0.0] * 3)
    assert_same(run("cond", [1.0] * 3), always)  # "always" ignores hp[4]
    assert not any(np.any(np.asarray(v)) for v in jax.tree.leaves(always.grad_acc))  # passed through, still zero


def test_update_mode_choice_and_bad_mode():
    from jaxyolo.engine.steps import update_mode

    assert update_mode(1) == "always"
    assert update_mode(4) == ("select" if jax.default_backend() == "gpu" else "split")
    assert step_update("split") == "accumulate" and step_update("always") == "always"
    try:
        make_train_step(None, None, update="sometimes")
    except ValueError as e:
        assert "update='sometimes'" in str(e) and "always, cond, select, accumulate, apply" in str(e)
    else:
        raise AssertionError("an unknown update mode must be refused")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_cpu_train_step_keeps_ynnpack_for_reductions_only(monkeypatch):
    """The trainer's step on CPU (``train_compiler_options``) runs its convolutions as XLA's own (multi-threaded)
    convolutions and keeps YNNPACK fusions for the reductions; XLA's defaults put the convolutions in YNNPACK fusions
    (one core each in jaxlib 0.10). Both compute the same step. Traced without jaxyolo's oneDNN kernels (which take
    the k x k convolutions out of XLA where installed), as on a machine without them."""
    from jaxyolo.nn import onednn
    from jaxyolo.nn.cpu_options import train_compiler_options

    monkeypatch.setattr(onednn, "available", lambda: False)

    opts = train_compiler_options()
    assert opts == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
    module, _ = build_model("yolov8n-cls.yaml", nc=NC)
    variables = init_variables(module, 0)
    tx = _tx(variables)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.integers(0, 256, (B, 64, 64, 3), dtype=np.uint8))
    y = jnp.asarray(rng.integers(0, NC, (B,), dtype=np.int32))
    hp = jnp.asarray([0.01, 0.01, 0.01, 0.9, 0.0], jnp.float32)
    args = (create_state(variables, tx), x, y, hp, np.int32(15))  # ni 15: accumulate 16, so the optimizer steps

    def convolutions(compiled):  # (all, the ones outside fusions: XLA's own)
        text = compiled.as_text()
        return text.count(" convolution("), text.split("\nENTRY ", 1)[1].count(" convolution(")

    default = jax.jit(make_train_step(module, tx)).lower(*args).compile()
    ours = jax.jit(make_train_step(module, tx), compiler_options=opts).lower(*args).compile()
    n_all, n_own = convolutions(default)
    assert n_own < n_all and "__ynn_fusion" in default.as_text()  # the defaults: most in YNNPACK fusions
    n_all, n_own = convolutions(ours)
    assert n_own == n_all > 0 and "__ynn_fusion" in ours.as_text()  # ours: none; YNNPACK for the reductions
    (s_default, loss_default), (s_ours, loss_ours) = default(*args), ours(*args)
    assert np.isclose(float(loss_ours), float(loss_default), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s_ours.params), jax.tree.leaves(s_default.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != "cpu" or (os.cpu_count() or 1) < 2, reason="XLA:CPU, several cores")
def test_cpu_train_steps_split_their_large_fusions_over_the_cores():
    """The executables the trainer runs on CPU for an accumulating recipe ("split": the "accumulate" step and the
    optimizer's; and bench_train_step's "apply") have no
    conditional, so XLA:CPU partitions their large elementwise fusions over the cores (``outer_dimension_partitions``
    in the optimized HLO). A ``lax.cond`` anywhere in the step ("cond") left every fusion on one core in jaxlib 0.10:
    yolov8n-cls@224 batch 32 ran 333 ms per step against 271 ms (session 26)."""
    import re

    from jaxyolo.engine.steps import update_mode
    from jaxyolo.nn.cpu_options import train_compiler_options

    module, _ = build_model("yolov8n-cls.yaml", nc=NC)
    variables = init_variables(module, 0)
    tx = _tx(variables)
    x = jnp.zeros((8, 128, 128, 3), jnp.uint8)  # the stem's output, 8 x 64 x 64 x 16 floats: 2 MiB
    y = jnp.zeros((8,), jnp.int32)
    args = (create_state(variables, tx), x, y, jnp.ones((5,), jnp.float32), np.int32(0))
    assert update_mode(4) == "split"
    opts = train_compiler_options()
    for update in (step_update("split"), "apply"):
        hlo = jax.jit(make_train_step(module, tx, update=update), compiler_options=opts).lower(*args).compile().as_text()
        assert " conditional(" not in hlo
        assert re.search(r'outer_dimension_partitions":\["[2-9]', hlo), f"{update}: no fusion split over the cores"
    hlo = jax.jit(make_optimizer_step(tx), compiler_options=opts).lower(args[0], args[3]).compile().as_text()
    assert " conditional(" not in hlo


def test_short_cpu_runs_compile_quick(monkeypatch):
    """Training runs whose estimated FLOPs are small (the digits job: yolov8n-cls, 10 epochs of 1,437 images at 32
    px) compile their steps at XLA's backend optimisation level 1, longer ones (the same at 224 px for 100 epochs,
    or ImageNet) at XLA's default; JAXYOLO_QUICK_COMPILE forces either. The options are XLA:CPU's only."""
    from jaxyolo.nn import cpu_options as C

    monkeypatch.delenv("JAXYOLO_QUICK_COMPILE", raising=False)
    on_cpu = jax.default_backend() == "cpu"
    assert C.quick_compile(1_450_000, 32, 10 * 1437) is on_cpu
    assert C.quick_compile(1_450_000, (32, 48), 10 * 1437) is on_cpu
    assert not C.quick_compile(1_450_000, 224, 100 * 1437)
    assert not C.quick_compile(2_720_000, 224, 90 * 1_281_167)
    monkeypatch.setenv("JAXYOLO_QUICK_COMPILE", "0")
    assert not C.quick_compile(1_450_000, 32, 10 * 1437)
    monkeypatch.setenv("JAXYOLO_QUICK_COMPILE", "none")
    assert not C.quick_compile(1_450_000, 32, 10 * 1437)
    monkeypatch.setenv("JAXYOLO_QUICK_COMPILE", "1")
    assert C.quick_compile(2_720_000, 224, 90 * 1_281_167)
    monkeypatch.setenv("JAXYOLO_QUICK_COMPILE", "fast")
    with pytest.raises(ValueError, match="JAXYOLO_QUICK_COMPILE='fast': expected one of 1, true, on, yes"):
        C.quick_compile(1_450_000, 32, 10 * 1437)
    if on_cpu:
        level = {"xla_backend_optimization_level": 1}
        assert C.train_compiler_options(True) == {**C.train_compiler_options(), **level}
        assert C.inference_compiler_options(True) == {**C.inference_compiler_options(), **level}
        assert "xla_backend_optimization_level" not in C.train_compiler_options()
