"""Pure, jit-compiled training and evaluation steps over a functional train state.

The train step accumulates gradients every batch and applies the optimizer (clip 10, EMA update) only when the host
says so (``hp[4] = 1``), exactly reproducing Ultralytics' ``ni - last_opt_step >= accumulate`` cadence without a
device-to-host sync. Hyper-parameters arrive as one small array, so changing them never recompiles.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxyolo.engine import optim


@flax.struct.dataclass
class TrainState:
    params: Any
    batch_stats: Any
    opt_state: Any
    ema: Any  # {'params', 'batch_stats'}: the EMA model used for validation and saved weights
    grad_acc: Any  # gradients summed since the last optimizer step
    updates: jax.Array  # optimizer steps taken (= EMA updates)

    def ema_variables(self) -> dict:
        return {"params": self.ema["params"], "batch_stats": self.ema["batch_stats"]}


def create_state(variables, tx) -> TrainState:
    params = variables["params"]
    ema = jax.tree.map(jnp.array, {"params": params, "batch_stats": variables["batch_stats"]})
    return TrainState(params=params, batch_stats=variables["batch_stats"], opt_state=tx.init(params), ema=ema,
                      grad_acc=jax.tree.map(jnp.zeros_like, params), updates=jnp.zeros((), jnp.int32))


def to_input(images, dtype=jnp.float32):
    """uint8 NHWC [0, 255] -> float [0, 1] on device (the pipeline ships uint8: a quarter of the transfer)."""
    return images.astype(dtype) * (1.0 / 255.0) if images.dtype == jnp.uint8 else images.astype(dtype)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    nc = logits.shape[-1]
    onehot = jax.nn.one_hot(labels, nc)
    if label_smoothing:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)


def make_train_step(module, tx, label_smoothing: float = 0.0, dtype=jnp.float32, seed: int = 0):
    """``train_step(state, images, labels, hp, ni)``: ``ni`` (int32 scalar) is the global batch index, folded into
    the run's key *inside* the step (``fold_in(PRNGKey(seed), ni)``, the dropout key), so the host does not dispatch
    a separate computation for it every batch."""

    def train_step(state: TrainState, images, labels, hp, ni):
        x = to_input(images, dtype)
        rng = jax.random.fold_in(jax.random.PRNGKey(seed), ni)

        def loss_fn(params):
            logits, new = module.apply({"params": params, "batch_stats": state.batch_stats}, x, train=True,
                                       mutable=["batch_stats"], rngs={"dropout": rng})
            return cross_entropy(logits, labels, label_smoothing).mean(), new["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_acc = jax.tree.map(jnp.add, state.grad_acc, grads)
        state = state.replace(batch_stats=batch_stats, grad_acc=grad_acc)

        def apply(s: TrainState) -> TrainState:
            g, _ = optim.clip_by_norm(s.grad_acc, 10.0)
            opt_state = optim.set_hparams(s.opt_state, hp[:3], hp[3])
            upd, opt_state = tx.update(g, opt_state, s.params)
            params = optax.apply_updates(s.params, upd)
            updates = s.updates + 1
            ema = optim.ema_update(s.ema, {"params": params, "batch_stats": s.batch_stats}, updates)
            return s.replace(params=params, opt_state=opt_state, ema=ema, updates=updates,
                             grad_acc=jax.tree.map(jnp.zeros_like, s.grad_acc))

        state = jax.lax.cond(hp[4] > 0.5, apply, lambda s: s, state)
        return state, loss

    return train_step


def make_eval_step(module, nc: int, dtype=jnp.float32):
    """Masked sums over a (padded) global batch: count, top-1/top-5 hits, CE loss and the confusion matrix."""
    k = min(nc, 5)

    def eval_step(variables, images, labels, mask):
        logits = module.apply(variables, to_input(images, dtype), logits=True).astype(jnp.float32)
        topk = jax.lax.top_k(logits, k)[1]
        m = mask.astype(jnp.float32)
        hit1 = (topk[:, 0] == labels).astype(jnp.float32)
        hitk = jnp.any(topk == labels[:, None], axis=1).astype(jnp.float32)
        loss = cross_entropy(logits, labels)
        cm = jnp.zeros((nc, nc), jnp.int32).at[topk[:, 0], labels].add(mask.astype(jnp.int32))  # [pred, true]
        return {"n": m.sum(), "top1": (hit1 * m).sum(), "top5": (hitk * m).sum(), "loss": (loss * m).sum(), "cm": cm}

    return eval_step
