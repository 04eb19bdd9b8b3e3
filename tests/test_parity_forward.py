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
