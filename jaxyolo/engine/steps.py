"""Pure, jit-compiled training and evaluation steps over a functional train state.

The train step accumulates gradients every batch and applies the optimizer (clip 10, EMA update) only when the host
says so (``hp[4] = 1``), exactly reproducing Ultralytics' ``ni - last_opt_step >= accumulate`` cadence without a
device-to-host sync. Hyper-parameters arrive as one small array, so changing them never recompiles.

How the step applies the optimizer (``make_train_step(update=...)``): ``"always"`` when the recipe accumulates one
batch per update (batch >= 43 at nbs 64: every batch updates, so hp[4] is always 1 and no branch is traced).
Otherwise, on GPUs, ``"select"`` computes the update every batch and keeps it or the old state with ``jnp.where``:
XLA:GPU reads a conditional's predicate back to the host and waits for it (yolov8s-cls at 224, batch 256, bf16 on an
H200: 12.9 ms per step with a ``lax.cond``, 10.0 ms without it, where the optimizer and EMA themselves cost ~0.7 ms).
Elsewhere ``"split"``: two executables, the ``"accumulate"`` step (gradients summed into the state, every batch)
and ``make_optimizer_step`` (the optimizer, clip and EMA on that sum, which it zeroes), which the host, knowing the
cadence, calls after the batches that update. One executable holding a ``lax.cond`` (``"cond"``) skips the optimizer
as well, but on XLA:CPU (jaxlib 0.10) a conditional anywhere in the module leaves every elementwise fusion of the
step unpartitioned: one core each, where XLA otherwise splits the large ones over the cores. yolov8n-cls at 224,
batch 32 on 2 cores: 333 ms per step with the cond, 271 ms without it (benchmarks/RESULTS.md, session 26), and the
two executables compile faster than the one (4.7 + 2.3 s on two threads against 7.2 s, digits-sized);
``"select"`` pays a ``jnp.where`` over the whole state instead (yolov8s-cls at 224: +7%)."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxyolo.engine import optim
from jaxyolo.engine.flat import FlatLayout


@flax.struct.dataclass
class TrainState:
    """The train state in its flat layout (``engine/flat.py``): ``params``, ``grad_acc`` and ``ema['params']`` are
    ``{group: 1-D vector}`` dicts, ``ema['batch_stats']`` one vector; ``batch_stats`` stays the model's tree (the
    forward pass reads and returns it). ``layout`` (static) turns the vectors back into trees."""

    params: Any
    batch_stats: Any
    opt_state: Any
    ema: Any  # {'params', 'batch_stats'}, flat: the EMA model used for validation and saved weights
    grad_acc: Any  # gradients summed since the last optimizer step
    updates: jax.Array  # optimizer steps taken (= EMA updates)
    layout: FlatLayout = flax.struct.field(pytree_node=False)

    def variables(self) -> dict:
        """The model's ``{'params', 'batch_stats'}`` as trees: numpy views of the fetched vectors outside a trace."""
        return {"params": self.layout.unravel_params(self.params), "batch_stats": self.batch_stats}

    def ema_variables(self) -> dict:
        """The EMA's ``{'params', 'batch_stats'}`` as trees: numpy views of the fetched vectors outside a trace."""
        return self.layout.unravel_variables(self.ema)


def create_state(variables, tx, xp=jnp) -> TrainState:
    """The train state of a model's variables (trees) for ``tx`` (``optim.build_tx``: it updates ``{group: vector}``
    dicts); ``xp=np`` ravels on the host (no per-leaf device work), jnp inside a jit."""
    layout = FlatLayout.of(variables)
    flat = layout.ravel_variables(variables, xp)
    params = jax.tree.map(jnp.asarray, flat["params"])
    ema = {"params": jax.tree.map(jnp.array, flat["params"]), "batch_stats": jnp.array(flat["batch_stats"])}
    return TrainState(params=params, batch_stats=jax.tree.map(jnp.asarray, variables["batch_stats"]),
                      opt_state=tx.init(params), ema=ema, grad_acc=jax.tree.map(jnp.zeros_like, params),
                      updates=jnp.zeros((), jnp.int32), layout=layout)


def to_input(images, dtype=jnp.float32):
    """uint8 NHWC [0, 255] -> float [0, 1] on device (the pipeline ships uint8: a quarter of the transfer)."""
    return images.astype(dtype) * (1.0 / 255.0) if images.dtype == jnp.uint8 else images.astype(dtype)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    nc = logits.shape[-1]
    onehot = jax.nn.one_hot(labels, nc)
    if label_smoothing:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)


UPDATES = ("always", "cond", "select", "accumulate", "apply")


def update_mode(accumulate: int | None) -> str:
    """How a step for a recipe accumulating ``accumulate`` batches per optimizer step applies the optimizer (None:
    host-driven, any cadence): ``"always"``, ``"select"`` or ``"split"`` (``step_update``'s step every batch, then
    ``make_optimizer_step``'s on the batches that update); see the module docstring."""
    if accumulate == 1:
        return "always"
    return "select" if jax.default_backend() == "gpu" else "split"


def step_update(mode: str) -> str:
    """The ``make_train_step`` update of the step a mode calls every batch: ``"accumulate"`` for ``"split"`` (whose
    batches that update then call ``make_optimizer_step``'s executable), else the mode itself."""
    return "accumulate" if mode == "split" else mode


def make_train_step(module, tx, label_smoothing: float = 0.0, dtype=jnp.float32, seed: int = 0,
                    update: str | None = None):
    """``train_step(state, images, labels, hp, ni)``: ``ni`` (int32 scalar) is the global batch index, folded into
    the run's key *inside* the step (``fold_in(PRNGKey(seed), ni)``, the dropout key), so the host does not dispatch
    a separate computation for it every batch. ``update``: one of ``UPDATES`` (None: one executable for any
    cadence hp[4] sets, ``"select"`` on GPUs, else ``"cond"``); ``"always"``
    ignores hp[4] and applies the optimizer every batch to this batch's gradients, ``"accumulate"`` and ``"apply"``
    ignore it too: the first only adds the gradients to the state's sum (``"split"``), the second adds them and
    applies the optimizer to the sum in the same executable (bench_train_step's step of a batch that updates)."""
    update = update or ("select" if jax.default_backend() == "gpu" else "cond")
    if update not in UPDATES:
        raise ValueError(f"update={update!r}: expected one of {', '.join(UPDATES)}")

    def train_step(state: TrainState, images, labels, hp, ni):
        x = to_input(images, dtype)
        rng = jax.random.fold_in(jax.random.PRNGKey(seed), ni)

        def loss_fn(params):
            variables = {"params": state.layout.unravel_params(params), "batch_stats": state.batch_stats}
            logits, new = module.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": rng})
            return cross_entropy(logits, labels, label_smoothing).mean(), new["batch_stats"]

        def apply(s: TrainState, grads) -> TrainState:  # "always": grad_acc passes through (zero, never summed)
            return apply_optimizer(tx, s, grads, hp, reset=update != "always")

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if update == "always":  # grad_acc stays zero (as after every update), so the sum is the batch's gradients
            return apply(state.replace(batch_stats=batch_stats), grads), loss
        grad_acc = jax.tree.map(jnp.add, state.grad_acc, grads)
        state = state.replace(batch_stats=batch_stats, grad_acc=grad_acc)
        if update == "accumulate":
            return state, loss
        if update == "apply":
            return apply(state, grad_acc), loss
        if update == "cond":
            state = jax.lax.cond(hp[4] > 0.5, lambda s: apply(s, s.grad_acc), lambda s: s, state)
        else:
            state = jax.tree.map(lambda new, old: jnp.where(hp[4] > 0.5, new, old), apply(state, grad_acc), state)
        return state, loss

    return train_step


def apply_optimizer(tx, s: TrainState, grads, hp, reset: bool = True) -> TrainState:
    """One optimizer step on ``grads`` (clip 10, ``tx`` at hp's learning rates and momentum, EMA update); ``reset``
    zeroes the gradient sum, else it passes through."""
    g, _ = optim.clip_by_norm(grads, 10.0)
    opt_state = optim.set_hparams(s.opt_state, hp[:3], hp[3])
    upd, opt_state = tx.update(g, opt_state, s.params)
    params = optax.apply_updates(s.params, upd)
    updates = s.updates + 1
    ema = optim.ema_update(s.ema, {"params": params, "batch_stats": s.layout.ravel_stats(s.batch_stats)}, updates)
    grad_acc = jax.tree.map(jnp.zeros_like, s.grad_acc) if reset else s.grad_acc
    return s.replace(params=params, opt_state=opt_state, ema=ema, updates=updates, grad_acc=grad_acc)


def make_optimizer_step(tx):
    """``optimizer_step(state, hp) -> (state,)``: the optimizer applied to the state's gradient sum, which it zeroes:
    the second executable of ``"split"``, called after the ``"accumulate"`` step on the batches that update."""

    def optimizer_step(state: TrainState, hp):
        return (apply_optimizer(tx, state, state.grad_acc, hp),)

    return optimizer_step


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
