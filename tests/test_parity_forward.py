"""The Flax architecture computes what Ultralytics' torch model computes, given the same weights."""

import numpy as np
import pytest

from converters.torch_weights.mapping import state_dict_to_variables, variables_to_state_dict
from jaxyolo.nn.build import build_model

torch = pytest.importorskip("torch")
tasks = pytest.importorskip("ultralytics.nn.tasks")

pytestmark = pytest.mark.ultralytics


def randomized_ultralytics(yaml_name, nc, seed=0):
    torch.manual_seed(seed)
    m = tasks.ClassificationModel(yaml_name, nc=nc, verbose=False)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial BN statistics and affine, not the init values
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n", "yolo11m"])
def test_eval_probabilities_match_ultralytics(name):
    ref = randomized_ultralytics(f"{name}-cls.yaml", nc=10)
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    variables = state_dict_to_variables(sd)
    model, _ = build_model(f"{name}-cls.yaml", nc=10)
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    with torch.no_grad():
        out = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    ref_probs = (out[0] if isinstance(out, tuple) else out).numpy()
    ours = np.asarray(model.apply(variables, x))
    assert np.abs(ours - ref_probs).max() <= 1e-4
    # and the mapping is lossless in both directions
    back = variables_to_state_dict(variables)
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            assert np.array_equal(back[k], v), k


@pytest.mark.parametrize("name,imgsz", [("yolov8n", 32), ("yolo11n", 64)])
def test_train_mode_step_matches_ultralytics(name, imgsz):
    """One train-mode forward/backward: logits, the cross-entropy gradient of every weight and the updated BatchNorm
    running statistics equal torch's. Batch 8 at 32 px leaves 1x1 maps at the last stage, where torch's unbiased
    running variance is 8/7 of the biased one (the rule Flax's own BatchNorm does not follow). Gradients through a
    BatchNorm over few values are ill-conditioned in float32 (at batch 4 XLA and torch, whose summation order depends
    on its thread count, differed by 1e-3 of a tensor's largest entry), hence the 1% bound."""
    import jax

    ref = randomized_ultralytics(f"{name}-cls.yaml", nc=10).train()
    sd = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    variables = state_dict_to_variables(sd)
    model, _ = build_model(f"{name}-cls.yaml", nc=10)
    rng = np.random.default_rng(1)
    x = rng.random((8, imgsz, imgsz, 3), dtype=np.float32)
    labels = rng.integers(0, 10, 8)

    logits_t = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    torch.nn.functional.cross_entropy(logits_t, torch.from_numpy(labels)).backward()

    def loss_fn(params):
        logits, new = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                                  mutable=["batch_stats"])
        logp = jax.nn.log_softmax(logits)
        return -logp[np.arange(8), labels].mean(), (logits, new["batch_stats"])

    (_, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    assert np.abs(np.asarray(logits) - logits_t.detach().numpy()).max() <= 1e-4

    ours = variables_to_state_dict({"params": grads, "batch_stats": stats})
    theirs = {k: v for k, v in ref.state_dict().items()}
    grads_t = {k: p.grad.numpy() for k, p in ref.named_parameters()}
    checked = 0
    for k, v in grads_t.items():
        assert np.abs(ours[k] - v).max() <= 1e-2 * np.abs(v).max() + 1e-7, k  # (+1e-7: gradients that are 0 + noise)
        checked += 1
    for k, v in theirs.items():
        if k.endswith(("running_mean", "running_var")):
            v = v.numpy()
            assert np.abs(ours[k] - v).max() <= 1e-5 * (1 + np.abs(v).max()), k
            checked += 1
    assert checked > 100
