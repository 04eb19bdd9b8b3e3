"""Ultralytics' classification training recipe on optax: optimizer choice, parameter groups, LR/momentum schedule,
warmup with ramping gradient accumulation, and the model EMA.

Everything here is a pure function of the batch counter ``ni`` and the epoch, so the host loop can compute the
hyper-parameters of a batch without touching the device, and a resumed run reproduces them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

GROUPS = ("weight", "bn", "bias")  # Ultralytics' pg0, pg1, pg2: decayed kernels, BatchNorm scales, all biases
OPTIMIZERS = ("SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")


def param_labels(params) -> dict:
    """Group label per parameter: conv/dense kernels decay ('weight'), BatchNorm scales ('bn') and biases don't."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
    labels = {}
    for path in flat:
        leaf = path[-1]
        labels[path] = "bias" if leaf == "bias" else "bn" if leaf == "scale" else "weight"
    return flax.traverse_util.unflatten_dict(labels)


@dataclass(frozen=True)
class Recipe:
    """Resolved optimizer settings for one run (after the 'auto' rule)."""

    name: str
    lr0: float
    momentum: float  # SGD momentum / Adam beta1 chosen by the optimizer rule
    weight_decay: float  # already scaled by batch * accumulate / nbs
    accumulate: int  # nominal gradient accumulation (batches per optimizer step)
    warmup_iters: int
    warmup_bias_lr: float
    warmup_momentum: float
    final_momentum: float  # what warmup ramps momentum to (args.momentum, also under 'auto', as Ultralytics does)
    lrf: float
    epochs: int
    cos_lr: bool
    nb: int  # batches per epoch

    def lf(self, epoch: float) -> float:
        if self.cos_lr:
            return ((1 - math.cos(epoch * math.pi / self.epochs)) / 2) * (self.lrf - 1) + 1
        return max(1 - epoch / self.epochs, 0) * (1.0 - self.lrf) + self.lrf

    def batch_hparams(self, ni: int, epoch: int) -> tuple[list[float], float, int]:
        """(lr per group [pg0, pg1, pg2], momentum, accumulate) in effect for global batch ``ni`` of ``epoch``."""
        target = self.lr0 * self.lf(epoch)
        nw = self.warmup_iters
        ramp_momentum = self.name in ("SGD", "RMSProp")  # torch Adam-family groups have betas, not 'momentum'
        if nw and ni <= nw:
            xi = [0, nw]
            acc = max(1, int(np.round(np.interp(ni, xi, [1, self.accumulate]))))
            lrs = [float(np.interp(ni, xi, [self.warmup_bias_lr if g == "bias" else 0.0, target])) for g in GROUPS]
            mom = float(np.interp(ni, xi, [self.warmup_momentum, self.final_momentum])) if ramp_momentum else self.momentum
            return lrs, mom, acc
        mom = self.final_momentum if nw and ramp_momentum else self.momentum
        return [target] * 3, mom, self.accumulate


def resolve_recipe(args: dict, nc: int, n_train: int, nb: int) -> Recipe:
    """Apply Ultralytics' rules: accumulation to nbs, decay scaling, warmup length and the 'auto' optimizer."""
    batch, nbs, epochs = int(args["batch"]), int(args["nbs"]), int(args["epochs"])
    accumulate = max(round(nbs / batch), 1)
    weight_decay = float(args["weight_decay"]) * batch * accumulate / nbs
    accumulate = min(accumulate, nb * epochs)
    name, lr0, momentum = str(args["optimizer"]), float(args["lr0"]), float(args["momentum"])
    warmup_bias_lr = float(args["warmup_bias_lr"])
    if name.lower() == "auto":
        iterations = math.ceil(n_train / max(batch, nbs)) * epochs
        lr_fit = round(0.002 * 5 / (4 + nc), 6)
        # Ultralytics 8.4 picks MuSGD above 10k iterations; we use its SGD half (Nesterov SGD, as 8.0-8.3 did)
        name, lr0, momentum = ("SGD", 0.01, 0.9) if iterations > 10000 else ("AdamW", lr_fit, 0.9)
        warmup_bias_lr = 0.0
    canon = {o.lower(): o for o in OPTIMIZERS}
    canon["rmsprop"] = "RMSProp"
    if name.lower() not in canon:
        raise ValueError(f"optimizer={name!r} is not supported; choose one of auto, {', '.join(OPTIMIZERS)}")
    warmup_epochs = min(float(args["warmup_epochs"]), max(epochs - 1, 0))
    nw = round(warmup_epochs * nb) if warmup_epochs > 0 else 0
    return Recipe(canon[name.lower()], lr0, momentum, weight_decay, accumulate, nw, warmup_bias_lr,
                  float(args["warmup_momentum"]), float(args["momentum"]), float(args["lrf"]), epochs,
                  bool(args["cos_lr"]), nb)


def _group_optimizer(name: str, decay: bool):
    """An optax transform with runtime ``learning_rate``/``momentum`` (injected) for one parameter group."""

    def make(learning_rate, momentum, weight_decay):
        wd = weight_decay if decay else 0.0
        if name == "SGD":  # torch SGD(nesterov=True): L2 added to the gradient, then momentum, then lr
            return optax.chain(optax.add_decayed_weights(wd), optax.sgd(learning_rate, momentum, nesterov=True))
        if name == "AdamW":
            return optax.adamw(learning_rate, b1=momentum, b2=0.999, eps=1e-8, weight_decay=wd)
        if name == "Adam":
            return optax.chain(optax.add_decayed_weights(wd), optax.adam(learning_rate, b1=momentum, b2=0.999))
        if name == "NAdam":
            return optax.chain(optax.add_decayed_weights(wd), optax.nadam(learning_rate, b1=momentum, b2=0.999))
        if name == "RAdam":
            return optax.chain(optax.add_decayed_weights(wd), optax.radam(learning_rate, b1=momentum, b2=0.999))
        if name == "RMSProp":  # torch RMSprop defaults: alpha 0.99, eps 1e-8 outside the square root
            return optax.chain(optax.add_decayed_weights(wd),
                               optax.rmsprop(learning_rate, decay=0.99, eps=1e-8, momentum=momentum,
                                             eps_in_sqrt=False))
        raise ValueError(name)

    return optax.inject_hyperparams(make)


def build_tx(recipe: Recipe) -> optax.GradientTransformation:
    """Three parameter groups, each with injectable lr/momentum (set per batch by ``set_hparams``), over the train
    state's flat parameters ``{group: vector}`` (``engine/flat.py``; ``param_labels`` says which leaf is in which)."""
    transforms = {g: _group_optimizer(recipe.name, g == "weight")(learning_rate=recipe.lr0, momentum=recipe.momentum,
                                                                    weight_decay=recipe.weight_decay)
                  for g in GROUPS}
    return optax.multi_transform(transforms, {g: g for g in GROUPS})


def set_hparams(opt_state, lrs, momentum):
    """Return ``opt_state`` with the learning rate of each group and the momentum replaced (traceable)."""
    inner = dict(opt_state.inner_states)
    for i, g in enumerate(GROUPS):
        masked = inner[g]
        st = masked.inner_state
        hp = dict(st.hyperparams)
        hp["learning_rate"] = jnp.asarray(lrs[i], hp["learning_rate"].dtype)
        hp["momentum"] = jnp.asarray(momentum, hp["momentum"].dtype)
        inner[g] = masked._replace(inner_state=st._replace(hyperparams=hp))
    return opt_state._replace(inner_states=inner)


def clip_by_norm(grads, max_norm: float = 10.0):
    """torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1."""
    norm = optax.global_norm(grads)
    coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree.map(lambda g: g * coef, grads), norm


def ema_decay(updates, decay: float = 0.9999, tau: float = 2000.0):
    return decay * (1 - jnp.exp(-updates / tau))


def ema_update(ema, new, updates):
    """EMA over every float tensor (parameters and BatchNorm statistics), after ``updates`` optimizer steps."""
    d = ema_decay(updates.astype(jnp.float32))
    return jax.tree.map(lambda e, m: d * e + (1 - d) * m, ema, new)
