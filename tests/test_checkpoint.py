"""Train-state checkpoints (``jaxyolo.engine.checkpoint``): the packed format restores exactly, onto the same
shardings, on 1 device and FSDP-sharded over 8; the EMA reads on its own; checkpoints of the earlier per-leaf train
state still read but say why they cannot resume; restoring into another model names the first leaf that differs."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def make_state(nc: int = 10, seed: int = 0):
    from jaxyolo.engine import optim
    from jaxyolo.engine.model import init_variables
    from jaxyolo.engine.steps import create_state
    from jaxyolo.nn.build import build_model

    module, _ = build_model("yolov8n-cls.yaml", nc=nc)
    v = init_variables(module, seed)
    args = dict(batch=16, nbs=64, epochs=2, weight_decay=5e-4, optimizer="SGD", lr0=0.01, momentum=0.937,
                warmup_bias_lr=0.1, warmup_epochs=0.0, warmup_momentum=0.8, lrf=0.01, cos_lr=False)
    tx = optim.build_tx(optim.resolve_recipe(args, nc, 64, 4))
    state = create_state(v, tx)
    rng = np.random.default_rng(seed)  # every part distinct, so a swapped or shifted leaf cannot pass
    noise = lambda x: x + jnp.asarray(rng.standard_normal(x.shape), x.dtype) if x.dtype == jnp.float32 else x + 3
    return state.replace(ema=jax.tree.map(noise, state.ema), grad_acc=jax.tree.map(noise, state.grad_acc),
                         opt_state=jax.tree.map(noise, state.opt_state), updates=jnp.asarray(7, jnp.int32))


def assert_same(a, b, shardings=None):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if shardings is not None:
        for x, s in zip(la, jax.tree.leaves(shardings)):
            assert x.sharding.is_equivalent_to(s, x.ndim), (x.sharding, s)


def roundtrip(d: Path, fsdp: bool) -> None:
    from jaxyolo import parallel
    from jaxyolo.engine.checkpoint import Checkpointer, abstract_like, read_ema

    mesh = parallel.make_mesh()
    first, state = make_state(seed=0), make_state(seed=1)
    shardings = parallel.state_shardings(mesh, state, fsdp)
    if fsdp:
        assert any(s.spec != jax.sharding.PartitionSpec() for s in jax.tree.leaves(shardings))
    first, state = jax.device_put(first, shardings), jax.device_put(state, shardings)
    ck = Checkpointer(d, mesh, keep=2)
    ck.save(5, first, {"epoch": 1, "batch": 2})
    ck.save(9, state, {"epoch": 2, "batch": 0})
    ck.close()
    assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["5", "9"]
    ck = Checkpointer(d, mesh)
    restored, meta = ck.restore(9, abstract_like(state, shardings))
    assert meta == {"epoch": 2, "batch": 0} and ck.restore_meta(5)["epoch"] == 1
    assert_same(restored, state, shardings)
    assert_same(ck.restore(5, abstract_like(state, shardings))[0], first)
    ck.close()
    ema = read_ema(d, 9)
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(ema))
    assert_same(ema, state.ema_variables())


@pytest.mark.parametrize("host_pack", [True, False])
def test_packed_roundtrip_one_device(tmp_path, monkeypatch, host_pack):
    """One device: a small state packed by numpy, a larger one by the jitted packer; the same format."""
    from jaxyolo.engine import checkpoint as C

    calls = []
    real = C._host_pack
    monkeypatch.setattr(C, "_host_pack", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(C, "HOST_PACK_MAX_BYTES", C.HOST_PACK_MAX_BYTES if host_pack else 0)
    roundtrip(tmp_path / "ck", fsdp=False)
    assert len(calls) == (2 if host_pack else 0)


def test_a_failed_background_save_is_raised(tmp_path, monkeypatch):
    """A host-packed save runs on the checkpointer's own thread: it records the meta as it was when save() was
    called (the trainer's history list grows afterwards), restoring waits for it, and its failure is raised by the
    next call that waits (wait(), here), not lost."""
    from jaxyolo import parallel
    from jaxyolo.engine.checkpoint import Checkpointer, abstract_like

    mesh = parallel.make_mesh()
    state = make_state(seed=2)
    ck = Checkpointer(tmp_path / "ck", mesh)
    meta = {"epoch": 1, "history": [[1, 0.5]]}
    ck.save(3, state, meta)
    meta["history"].append([2, 0.25])
    restored, got = ck.restore(3, abstract_like(state, jax.tree.map(lambda x: x.sharding, state)))
    assert got == {"epoch": 1, "history": [[1, 0.5]]}
    assert_same(restored, state)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck.mgr, "save", broken)
    ck.save(4, state, {"epoch": 2})  # returns: the save runs on the thread
    with pytest.raises(OSError, match="disk full"):
        ck.wait()
    ck.close()


@pytest.mark.slow
def test_packed_roundtrip_fsdp_over_eight_devices(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    r = subprocess.run([sys.executable, __file__, str(tmp_path / "ck")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and "roundtrip ok on 8 devices" in r.stdout, r.stderr[-3000:]


def test_checkpoints_of_the_per_leaf_train_state_read_but_do_not_resume(tmp_path):
    """Checkpoints from before the flat train state (one orbax array per leaf, no 'format' in the meta): their EMA
    weights still read as the model's tree; resuming one says why it cannot, instead of a shape mismatch."""
    import orbax.checkpoint as ocp

    from jaxyolo import parallel
    from jaxyolo.engine.checkpoint import Checkpointer, abstract_like, read_ema

    state = make_state()
    ema = state.ema_variables()
    old = {"params": state.variables()["params"], "batch_stats": state.batch_stats, "ema": ema,
           "updates": state.updates}  # the per-leaf TrainState's tree, in its fields' order
    mgr = ocp.CheckpointManager(tmp_path / "ck", options=ocp.CheckpointManagerOptions(create=True))
    mgr.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(old), meta=ocp.args.JsonSave({"epoch": 1})))
    mgr.wait_until_finished()
    mgr.close()
    assert_same(read_ema(tmp_path / "ck", 4), ema)
    mesh = parallel.make_mesh()
    ck = Checkpointer(tmp_path / "ck", mesh)
    with pytest.raises(ValueError, match=r"ck/4: written by an earlier jaxyolo, whose train state was one array per "
                                         r"parameter; .* cannot resume it\. Its EMA weights still load"):
        ck.restore(4, abstract_like(state, parallel.state_shardings(mesh, state, False)))
    ck.close()


def test_restoring_into_another_model_names_the_difference(tmp_path):
    from jaxyolo import parallel
    from jaxyolo.engine.checkpoint import Checkpointer, abstract_like

    mesh = parallel.make_mesh()
    ck = Checkpointer(tmp_path / "ck", mesh)
    ck.save(1, make_state(nc=10), {"epoch": 1})
    ck.wait()
    other = make_state(nc=5)
    with pytest.raises(ValueError, match=r"does not match this model and optimizer; first difference in 'model': "
                                         r"params/model_9/linear/kernel \[1280, 5\] float32 \(checkpoint: "
                                         r"params/model_9/linear/kernel \[1280, 10\] float32\)"):
        ck.restore(1, abstract_like(other, parallel.state_shardings(mesh, other, False)))
    ck.close()


if __name__ == "__main__":  # the 8-device case runs here, in a process started with 8 simulated CPU devices
    roundtrip(Path(sys.argv[1]), fsdp=True)
    print(f"roundtrip ok on {jax.device_count()} devices")
