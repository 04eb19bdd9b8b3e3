""".pt interop both ways: Ultralytics checkpoints load into jaxyolo, jaxyolo writes checkpoints Ultralytics loads.

Also: the restricted unpickler refuses code-running pickles, broken files fail with the file named, and reading and
writing work where neither ultralytics nor torchvision can be imported.
"""

import collections
import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters.torch_weights.load import CheckpointMismatchError, NotAClassifierError, load_pt  # noqa: E402
from converters.torch_weights.mapping import state_dict_to_variables, variables_to_state_dict  # noqa: E402
from converters.torch_weights import writer  # noqa: E402
from converters.torch_weights.mirror import MIRROR, build_mirror, ultralytics_pickling  # noqa: E402
from converters.torch_weights.save import save_pt  # noqa: E402
from converters.torch_weights.unpickler import (CheckpointFormatError, UnsafeCheckpointError,  # noqa: E402
                                                read_checkpoint)
from jaxyolo import YOLO  # noqa: E402
from jaxyolo.nn.build import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCHS = [f"yolov8{s}" for s in "nsmlx"] + [f"yolo11{s}" for s in "nsmlx"]
SWEEP = [(a, 10) for a in ARCHS] + [("yolov8n", 1000), ("yolo11n", 1000)]
IMGSZ = 32


def _ultralytics():
    return pytest.importorskip("ultralytics")


def calibrate_bn(model, seed=0):
    """Give every BatchNorm the statistics of a random batch (then jitter them and the affine parameters) and scale
    the Linear layer so logits have a spread of about 2.

    With its default init a deep network's activations shrink layer by layer and the output hardly depends on the
    input, which would make parity checks weak; calibrated statistics keep every layer's signal alive.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = torch.rand(8, 3, IMGSZ, IMGSZ, generator=g)
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=g).mul(0.4).add(0.8))
            m.bias.copy_(torch.rand(m.num_features, generator=g).sub(0.5).mul(0.4))
            m.momentum = 1.0  # running stats := this batch's stats
        model.train()
        logits = model(x)
        for m in bns:
            m.momentum = 0.1
            m.running_mean += torch.rand(m.num_features, generator=g).sub(0.5).mul(0.1) * m.running_var.sqrt()
            m.running_var *= torch.rand(m.num_features, generator=g).mul(0.2).add(0.9)
            m.running_var += 0.15 * m.running_var.mean()  # no near-zero variances from a small batch
        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        scale = 2.0 / float(logits.std())
        linear.weight.mul_(scale)
        linear.bias.mul_(scale)
    return model.eval()


def randomized_ultralytics(yaml_name, nc, seed=0):
    """An Ultralytics ClassificationModel with random weights, non-trivial BatchNorm statistics and custom names."""
    from ultralytics.nn.tasks import ClassificationModel

    torch.manual_seed(seed)
    m = ClassificationModel(yaml_name, nc=nc, verbose=False)
    m.names = {i: f"cls_{i}" for i in range(nc)}
    return calibrate_bn(m, seed)


def torch_probs(model, x_nhwc):
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
    return (out[0] if isinstance(out, (tuple, list)) else out).float().numpy()


def random_variables(module, seed=0, ch=3):
    """Random, non-trivial Flax variables for a module from its shapes alone (no slow jit-compiled init)."""
    shapes = jax.eval_shape(lambda k: module.init(k, jnp.zeros((1, 32, 32, ch), jnp.float32)), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = path[-1].key
        if name == "kernel":
            a = rng.uniform(-1, 1, s.shape) * np.sqrt(3.0 / np.prod(s.shape[:-1]))
        elif name == "var":
            a = rng.uniform(0.5, 2.0, s.shape)
        elif name == "scale":
            a = rng.uniform(0.5, 1.5, s.shape)
        else:  # mean, bias
            a = rng.uniform(-0.2, 0.2, s.shape)
        return a.astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def state_dict_np(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------------
# All ten architectures, both directions
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.ultralytics
@pytest.mark.parametrize("name,nc", SWEEP, ids=[f"{a}-nc{n}" for a, n in SWEEP])
def test_roundtrip_all_architectures(name, nc, tmp_path):
    ultralytics = _ultralytics()
    ref = randomized_ultralytics(f"{name}-cls.yaml", nc)
    sd_ref = state_dict_np(ref)
    x = np.random.default_rng(1).random((2, IMGSZ, IMGSZ, 3), dtype=np.float32)
    p_ref = torch_probs(ref, x)
    assert np.abs(p_ref[0] - p_ref[1]).max() > 1e-2  # the output really depends on the input (a meaningful check)
    train_args = {"task": "classify", "imgsz": IMGSZ, "model": f"{name}-cls.yaml"}

    # Ultralytics -> .pt: an fp32 file via torch.save, an fp16 one via Ultralytics' own Model.save
    f32, f16 = tmp_path / "u32.pt", tmp_path / "u16.pt"
    torch.save({"model": ref, "train_args": train_args}, f32)
    ultralytics.YOLO(str(f32)).save(str(f16))

    # -> jaxyolo
    y = YOLO(str(f32))
    assert y.nc == nc and y.names == ref.names and y.overrides["imgsz"] == IMGSZ and y.ckpt_path == str(f32)
    assert y.module.specs == build_model(f"{name}-cls.yaml", nc=nc)[0].specs
    fwd = jax.jit(lambda v, a: y.module.apply(v, a))
    p32 = np.asarray(fwd(y.variables, x))
    assert np.abs(p32 - p_ref).max() <= 1e-4
    _, v16, meta16 = load_pt(f16)
    assert meta16["dtype"] == "float16" and meta16["names"] == ref.names and meta16["imgsz"] == IMGSZ
    f32.unlink()  # the x models' files are large; keep the disk footprint of a run small
    f16.unlink()
    p16 = np.asarray(fwd(v16, x))
    assert np.abs(p16 - p_ref).max() <= 5e-3
    assert np.abs(p16 - torch_probs(copy.deepcopy(ref).half().float(), x)).max() <= 1e-4  # same fp16 weights

    # the torch mirror (what jaxyolo writes) computes the same function; 96x96 so attention sees 3x3 positions
    mirror = build_mirror(y.module.specs, y.cfg, y.names, y.variables)
    xb = np.random.default_rng(2).random((2, 96, 96, 3), dtype=np.float32)
    assert np.abs(torch_probs(mirror, xb) - torch_probs(ref, xb)).max() <= 1e-4

    # jaxyolo -> .pt -> Ultralytics: fp16 (default) and fp32; fp32 weights come back bit-exact
    for half, tol in ((True, 5e-3), (False, 1e-4)):
        out = y.save(tmp_path / f"j{16 if half else 32}.pt", half=half)
        u = ultralytics.YOLO(str(out))
        assert u.task == "classify" and u.names == ref.names and u.overrides["imgsz"] == IMGSZ
        p_u = torch_probs(u.model, x)
        assert np.abs(p_u - p_ref).max() <= tol
        if half:  # exactly the fp16-rounded weights Ultralytics itself writes
            assert np.abs(p_u - p16).max() <= 1e-4
        out.unlink()
        if not half:
            sd = state_dict_np(u.model)
            assert sd.keys() == sd_ref.keys()
            for k, v in sd_ref.items():
                if not k.endswith("num_batches_tracked"):
                    assert v.dtype == sd[k].dtype and np.array_equal(v, sd[k]), k


# ----------------------------------------------------------------------------------------------------------------------
# A checkpoint from a real `yolo classify train` run
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch Ultralytics training run on 5 tiny generated classes; returns (best.pt, [val image paths])."""
    ultralytics = _ultralytics()
    from PIL import Image

    root = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    val = []
    for split, n in (("train", 8), ("val", 4)):
        for c in range(5):
            d = root / "data" / split / f"class{c}"
            d.mkdir(parents=True)
            for j in range(n):
                a = np.clip(rng.normal(40 * c + 30, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{j}.png")
                if split == "val":
                    val.append(d / f"{j}.png")
    model = ultralytics.YOLO("yolov8n-cls.yaml")
    model.train(data=str(root / "data"), epochs=1, imgsz=IMGSZ, batch=8, device="cpu", workers=0, plots=False,
                project=str(root / "runs"), name="t", exist_ok=True, verbose=False)
    best = root / "runs" / "t" / "weights" / "best.pt"
    assert best.is_file()
    return best, val


@pytest.mark.ultralytics
def test_trained_checkpoint_matches_ultralytics_predict(trained):
    ultralytics = _ultralytics()
    best, images = trained
    y = YOLO(str(best))
    assert y.names == {i: f"class{i}" for i in range(5)}
    assert y.overrides["imgsz"] == IMGSZ and y.ckpt["weights"] == "model" and y.ckpt["dtype"] == "float16"

    u = ultralytics.YOLO(str(best))
    seen = []
    u.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    results = u.predict([str(p) for p in images[:6]], imgsz=IMGSZ, verbose=False)
    x = torch.cat(seen)[-6:].numpy().transpose(0, 2, 3, 1)  # exactly Ultralytics' preprocessed batch, NHWC
    assert x.shape == (6, IMGSZ, IMGSZ, 3)
    ref = np.stack([r.probs.data.numpy() for r in results])
    ours = y.forward(x)
    assert np.abs(ours - ref).max() <= 1e-4
    assert [results[i].names[int(ref[i].argmax())] for i in range(6)] == [y.names[int(k)] for k in ours.argmax(1)]


@pytest.mark.ultralytics
def test_transfer_weights_like_ultralytics_load(trained, capsys, monkeypatch, tmp_path):
    best, _ = trained
    monkeypatch.setattr("jaxyolo.engine.model.init_variables", lambda m, seed=0, ch=3: random_variables(m, seed, ch))
    src = YOLO(str(best))
    same = YOLO("yolov8n-cls.yaml", nc=5).load(str(best))
    n = len(jax.tree.leaves(src.variables))
    assert f"Transferred {n}/{n} items" in capsys.readouterr().out
    assert same.names == src.names
    for a, b in zip(jax.tree.leaves(same.variables), jax.tree.leaves(src.variables)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = YOLO("yolov8n-cls.yaml", nc=3).load(str(best), verbose=False)  # new head: all but the Linear transfer
    assert other.names == {0: "0", 1: "1", 2: "2"}
    sd_src, sd_other = variables_to_state_dict(src.variables), variables_to_state_dict(other.variables)
    moved = [k for k in sd_other if np.array_equal(sd_other[k], sd_src[k])]
    assert sorted(set(sd_other) - set(moved)) == ["model.9.linear.bias", "model.9.linear.weight"]
    # a grayscale model takes the RGB filters summed, like Ultralytics
    gray_yaml = tmp_path / "yolov8n-cls.yaml"
    gray_yaml.write_text((ROOT / "jaxyolo/cfg/models/yolov8-cls.yaml").read_text() + "\nchannels: 1\n")
    gray = YOLO(str(gray_yaml), nc=5).load(str(best), verbose=False)
    k = gray.variables["params"]["model_0"]["conv"]["kernel"]
    assert k.shape[2] == 1
    np.testing.assert_allclose(k, src.variables["params"]["model_0"]["conv"]["kernel"].sum(2, keepdims=True), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Legacy widths, mismatches, other tasks
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.ultralytics
def test_legacy_nc512_checkpoint(tmp_path):
    ultralytics = _ultralytics()
    module, cfg = build_model("yolo11n-cls.yaml", nc=512, legacy_nc_width=True)
    names = {i: f"c{i}" for i in range(512)}
    mirror = calibrate_bn(build_mirror(module.specs, cfg, names, random_variables(module, seed=3)), seed=3)
    variables = state_dict_to_variables(state_dict_np(mirror))
    n = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n > 6_000_000  # the legacy rule leaves the 512-wide layers unscaled (formula: ~2.2 M)
    path = save_pt(tmp_path / "legacy512.pt", module, variables, cfg, names,
                   train_args={"imgsz": IMGSZ}, half=False)

    y = YOLO(str(path))
    assert y.ckpt["legacy_nc_width"] is True and y.module.specs == module.specs and y.nc == 512
    for a, b in zip(jax.tree.leaves(y.variables), jax.tree.leaves(variables)):
        assert np.array_equal(np.asarray(a), b)
    x = np.random.default_rng(2).random((2, IMGSZ, IMGSZ, 3), dtype=np.float32)
    u = ultralytics.YOLO(str(path))  # the real Ultralytics runs the pickled legacy-width module
    assert u.names == names and u.overrides["imgsz"] == IMGSZ
    p = torch_probs(u.model, x)
    assert np.abs(p[0] - p[1]).max() > 1e-3
    assert np.abs(y.forward(x) - p).max() <= 1e-4


def test_mismatched_tensors_are_refused_with_the_keys(tmp_path):
    module, cfg = build_model("yolov8n-cls.yaml", nc=10)
    variables = random_variables(module)
    lying = {**cfg, "scale": "s"}  # the yaml says 's', the tensors are 'n'
    path = save_pt(tmp_path / "lying.pt", module, variables, lying, {i: str(i) for i in range(10)})
    with pytest.raises(CheckpointMismatchError) as e:
        load_pt(path)
    msg = str(e.value)
    assert str(path) in msg and "model.0.conv.weight" in msg and "(16, 3, 3, 3)" in msg


@pytest.mark.ultralytics
def test_detection_checkpoint_is_refused(tmp_path):
    _ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    det = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    path = tmp_path / "det.pt"
    torch.save({"model": det.half(), "train_args": {"task": "detect", "imgsz": 64}}, path)
    with pytest.raises(NotAClassifierError, match="detect model.*Detect"):
        YOLO(str(path))


# ----------------------------------------------------------------------------------------------------------------------
# Safety and broken files
# ----------------------------------------------------------------------------------------------------------------------

class _Evil:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _evil_ckpt(path, payload):
    torch.save({"model": payload, "train_args": {"task": "classify"}}, path)
    return path


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen", "getattr"])
def test_malicious_checkpoint_is_refused_and_nothing_runs(kind, tmp_path):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": _Evil(subprocess.Popen, ["touch", str(marker)]),
        "getattr": _Evil(getattr, collections.OrderedDict, "fromkeys"),  # getattr on anything but a stub enum
    }[kind]
    path = _evil_ckpt(tmp_path / f"evil-{kind}.pt", payload)
    expected = {"os.system": os.system.__module__ + ".system", "builtins.eval": "builtins.eval",
                "subprocess.Popen": "subprocess.Popen", "getattr": "builtins.getattr"}[kind]
    with pytest.raises(UnsafeCheckpointError) as e:
        YOLO(str(path))
    assert expected in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()
    if kind == "os.system":  # the payload is real: an unrestricted torch.load runs it
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_broken_files_fail_clearly(tmp_path):
    module, cfg = build_model("yolov8n-cls.yaml", nc=10)
    good = save_pt(tmp_path / "good.pt", module, random_variables(module), cfg, list("abcdefghij"))
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "tail-cut.pt": data[:-64],
        "empty.pt": b"",
        "text.pt": b"this is not a checkpoint\n",
        "rawpickle.pt": pickle.dumps({"model": 1}, protocol=2),
    }
    for name, blob in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(CheckpointFormatError) as e:
            YOLO(str(p))
        assert str(p) in str(e.value), name
    sd = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), sd)
    with pytest.raises(CheckpointFormatError, match="plain state_dict"):
        load_pt(sd)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pt(tmp_path / "missing.pt")


def test_save_is_atomic_and_keeps_extra_keys(tmp_path, monkeypatch):
    module, cfg = build_model("yolo11n-cls.yaml", nc=4)
    variables = random_variables(module)
    path = tmp_path / "last.pt"
    save_pt(path, module, variables, cfg, ["a", "b", "c", "d"], train_args={"imgsz": 64, "epochs": 3}, epoch=2,
            best_fitness=np.float32(0.75), train_metrics={"metrics/accuracy_top1": np.float64(0.5)},
            train_results={"epoch": [1, 2], "train/loss": [np.float32(1.5), 1.25]})
    ck = read_checkpoint(path)
    assert ck["epoch"] == 2 and ck["best_fitness"] == 0.75 and ck["train_metrics"] == {"metrics/accuracy_top1": 0.5}
    assert ck["train_results"]["train/loss"] == [1.5, 1.25]
    assert ck["train_args"] == {"task": "classify", "imgsz": 64, "model": "yolo11n-cls.yaml", "epochs": 3}
    assert ck["model"].names == {0: "a", 1: "b", 2: "c", 3: "d"} and ck["model"].task == "classify"
    layer = ck["model"]._modules["model"]._modules["9"]
    assert (layer.i, layer.f, layer.type, layer.c) == (9, -1, "ultralytics.nn.modules.block.C2PSA", 128)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="names"):
        save_pt(path, module, variables, cfg, ["a", "b"])

    def broken_save(f, obj, *a, **k):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(writer, "write_checkpoint", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_pt(path, module, variables, cfg, ["a", "b", "c", "d"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_mirror_pickling_restores_sys_modules_and_classes(tmp_path):
    before = {k: v for k, v in sys.modules.items() if k == "ultralytics" or k.startswith("ultralytics.")}
    module, cfg = build_model("yolov8n-cls.yaml", nc=2)
    with ultralytics_pickling():
        torch.save(build_mirror(module.specs, cfg, {0: "a", 1: "b"}, random_variables(module)), tmp_path / "m.pt")
    after = {k: v for k, v in sys.modules.items() if k == "ultralytics" or k.startswith("ultralytics.")}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert all(c.__module__ == "converters.torch_weights.mirror" for c in MIRROR.values())


def _walk_same(a, b, leaf, where="ckpt"):
    """Walk two trees in step through dicts (same type, keys and key order), lists and tuples (same type and length);
    ``leaf(a, b, where)`` checks everything else."""
    if isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), f"{where}: {type(a)} {list(a)} vs {type(b)} {list(b)}"
        for k in a:
            _walk_same(a[k], b[k], leaf, f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _walk_same(x, y, leaf, f"{where}[{i}]")
    else:
        leaf(a, b, where)


def _same_torch_objects(a, b, where="ckpt"):
    """Two ``torch.load`` results hold the same classes, ``__dict__`` layouts, tensors (type, dtype, shape, stride,
    requires_grad, values) and plain values."""

    def leaf(a, b, where):
        assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
        if isinstance(a, torch.Tensor):
            assert (a.dtype, a.shape, a.stride(), a.requires_grad) == (b.dtype, b.shape, b.stride(),
                                                                       b.requires_grad), where
            assert torch.equal(a, b), where
        elif isinstance(a, torch.nn.Module):
            assert list(vars(a)) == list(vars(b)), f"{where}: {list(vars(a))} vs {list(vars(b))}"
            _walk_same(vars(a), vars(b), leaf, where)
        else:
            assert a == b, f"{where}: {a!r} vs {b!r}"

    assert type(a) is type(b), where
    _walk_same(a, b, leaf, where)


@pytest.mark.ultralytics
@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_torch_free_writer_equals_torch_save(name, tmp_path):
    """``save_pt`` writes without torch (``torchless`` + ``writer``); ``torch.load`` of its file gives the very objects
    ``torch.save`` of the torch mirror gives: every module's class and ``__dict__`` (torch's own attributes, hooks
    and Ultralytics' layer metadata), every parameter and buffer with its dtype, stride and requires_grad. yolo11n
    covers C3k2/C3k/C2PSA/Attention; both precisions; storages are 64-byte aligned (``mmap=True`` loads)."""
    _ultralytics()
    import zipfile

    module, cfg = build_model(f"{name}-cls.yaml", nc=3)
    variables = random_variables(module, seed=4)
    names = {0: "a", 1: "b", 2: "c"}
    for half in (True, False):
        ours = save_pt(tmp_path / "ours.pt", module, variables, cfg, names, train_args={"imgsz": 32}, half=half,
                       epoch=4, train_results={"epoch": [1, 2]})
        ck = read_checkpoint(ours)
        ref = build_mirror(module.specs, cfg, names, variables)
        for p in ref.parameters():
            p.requires_grad_(False)
        ck["model"] = ref.half() if half else ref
        with ultralytics_pickling():
            torch.save(ck, tmp_path / "ref.pt")
        a = torch.load(ours, map_location="cpu", weights_only=False, mmap=True)
        b = torch.load(tmp_path / "ref.pt", map_location="cpu", weights_only=False)
        _same_torch_objects(a, b)
        assert type(a["model"]).__module__ == "ultralytics.nn.tasks"
        with zipfile.ZipFile(ours) as z, open(ours, "rb") as f:
            for info in z.infolist():
                f.seek(info.header_offset + 26)
                n, m = (int(v) for v in np.frombuffer(f.read(4), "<u2"))  # name and extra-field lengths
                assert (info.header_offset + 30 + n + m) % 64 == 0, info.filename


# ----------------------------------------------------------------------------------------------------------------------
# Without torch, ultralytics and torchvision
# ----------------------------------------------------------------------------------------------------------------------

_BLOCKED = textwrap.dedent("""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ultralytics", "torchvision", "torch"):
                raise ImportError(f"blocked for this test: {name}")

    sys.meta_path.insert(0, Block())
    for name in ("ultralytics", "torchvision", "torch"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} imported although blocked")
""")


@pytest.mark.ultralytics
def test_read_and_write_without_torch_ultralytics_or_torchvision(trained, tmp_path):
    ultralytics = _ultralytics()
    best, _ = trained
    x = np.random.default_rng(5).random((2, IMGSZ, IMGSZ, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "written.pt"
    script = _BLOCKED + textwrap.dedent(f"""
        import json, numpy as np
        from jaxyolo import YOLO
        y = YOLO({str(best)!r})
        p = y.forward(np.load({str(tmp_path / 'x.npy')!r}))
        y.save({str(out)!r})
        assert not any(k.split(".")[0] in ("ultralytics", "torchvision", "torch") for k in sys.modules), "leaked"
        print("RESULT", json.dumps({{"names": y.names, "imgsz": y.overrides["imgsz"], "probs": p.tolist()}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT", 1)[1])
    assert res["names"] == {str(i): f"class{i}" for i in range(5)} and res["imgsz"] == IMGSZ
    ref = torch_probs(ultralytics.YOLO(str(best)).model, x)
    assert np.abs(np.array(res["probs"]) - ref).max() <= 1e-4
    u = ultralytics.YOLO(str(out))  # written with none of the three importable; Ultralytics reads it
    assert u.task == "classify" and u.names == {i: f"class{i}" for i in range(5)} and u.overrides["imgsz"] == IMGSZ
    assert np.abs(torch_probs(u.model, x) - ref).max() <= 5e-3


def test_old_layout_checkpoint(tmp_path, monkeypatch):
    """8.0-era details: args as ``ultralytics.yolo.utils.IterableSimpleNamespace`` on the model and no train_args,
    names as a list, an enum pickled as ``getattr(InterpolationMode, 'BILINEAR')`` (Python >= 3.12 style)."""
    import types

    class IterableSimpleNamespace(types.SimpleNamespace):
        pass

    class InterpolationMode:
        pass

    class Bilinear:
        def __reduce__(self):
            return getattr, (InterpolationMode, "BILINEAR")

    for cls, mod in ((IterableSimpleNamespace, "ultralytics.yolo.utils"),
                     (InterpolationMode, "torchvision.transforms.functional")):
        cls.__module__, cls.__qualname__ = mod, cls.__name__
        fake = types.ModuleType(mod)
        setattr(fake, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, mod, fake)
        parts = mod.split(".")
        for k in range(1, len(parts)):
            if ".".join(parts[:k]) not in sys.modules:  # stand-in parents, removed again afterwards
                monkeypatch.setitem(sys.modules, ".".join(parts[:k]), types.ModuleType(".".join(parts[:k])))
    module, cfg = build_model("yolov8n-cls.yaml", nc=3)
    variables = random_variables(module)
    model = build_mirror(module.specs, cfg, {0: "a", 1: "b", 2: "c"}, variables).half()
    model.names = ["a", "b", "c"]
    model.args = IterableSimpleNamespace(task="classify", imgsz=48)
    model.transforms = Bilinear()
    path = tmp_path / "old.pt"
    with ultralytics_pickling():
        torch.save({"model": model, "ema": None, "optimizer": None, "best_fitness": np.float64(0.5)}, path)
    ck = read_checkpoint(path)
    assert ck["model"].transforms.name == "BILINEAR" and ck["best_fitness"] == 0.5
    y = YOLO(str(path))
    assert y.names == {0: "a", 1: "b", 2: "c"} and y.overrides["imgsz"] == 48
    assert y.ckpt["train_args"]["task"] == "classify"
    for a, b in zip(jax.tree.leaves(y.variables), jax.tree.leaves(variables)):
        assert np.array_equal(np.asarray(a), b.astype(np.float16).astype(np.float32))


# ----------------------------------------------------------------------------------------------------------------------
# Reading without torch (converters/torch_weights/arrays.py)
# ----------------------------------------------------------------------------------------------------------------------

def _same_tree(a, b, where="ckpt"):
    """``read_checkpoint`` (torch tensors) and ``read_checkpoint_arrays`` (numpy) hold the same values and dtypes."""
    from converters.torch_weights.unpickler import InertObject

    def leaf(a, b, where):
        if isinstance(a, torch.Tensor):
            assert isinstance(b, np.ndarray), where
            assert str(a.dtype).replace("torch.", "") == str(b.dtype) and tuple(a.shape) == b.shape, where
            ref = a.detach().float().numpy() if a.dtype == torch.bfloat16 else a.detach().numpy()
            assert np.array_equal(ref, b.astype(ref.dtype)), where
        elif isinstance(a, InertObject):
            assert type(a) is type(b), where
            _walk_same(vars(a), vars(b), leaf, where)
        elif not callable(a):
            assert type(a) is type(b) and a == b, where

    _walk_same(a, b, leaf, where)


@pytest.mark.ultralytics
def test_reading_without_torch_gives_the_same_checkpoint(trained, tmp_path):
    """Every tensor, dtype and object of an Ultralytics checkpoint, and of tensors with views, offsets, strides,
    shared storage, 0-d, bfloat16, integer and bool dtypes, read without torch equals torch.load's."""
    from converters.torch_weights.arrays import read_checkpoint_arrays

    best, _ = trained
    _same_tree(read_checkpoint(best), read_checkpoint_arrays(best))
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    odd = {"t": base.transpose(0, 2), "view": base[1, 1:, 2:], "shared": base, "step": base[:, ::2, 1::3],
           "scalar": torch.tensor(3.5), "bf16": torch.randn(7).to(torch.bfloat16), "half": torch.randn(2, 3).half(),
           "long": torch.arange(5), "bool": torch.tensor([True, False]), "empty": torch.zeros(0, 3),
           "param": torch.nn.Parameter(torch.ones(2)), "size": torch.Size([1, 2])}
    path = tmp_path / "odd.pt"
    torch.save(odd, path)
    a, b = read_checkpoint(path), read_checkpoint_arrays(path)
    _same_tree({k: v for k, v in a.items() if k != "size"}, {k: v for k, v in b.items() if k != "size"})
    assert tuple(b["size"]) == (1, 2)


def test_a_tensor_past_its_storage_is_refused(tmp_path):
    import zipfile

    from converters.torch_weights.arrays import _rebuild, read_checkpoint_arrays

    storage = np.arange(6, dtype=np.float32)
    assert np.array_equal(_rebuild(storage, 1, (2, 2), (3, 1)), [[1, 2], [4, 5]])
    for offset, size, stride in ((1, (2, 3), (3, 1)), (0, (7,), (1,)), (-1, (2,), (1,)), (0, (2,), (-1,))):
        with pytest.raises(CheckpointFormatError):
            _rebuild(storage, offset, size, stride)
    # in a file: a (2, 3) tensor whose pickled size is edited to (2, 4); the error names the file
    path = tmp_path / "past.pt"
    torch.save({"t": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, path)
    with zipfile.ZipFile(path) as z:
        blobs = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in blobs if n.endswith("data.pkl"))
    assert blobs[pkl].count(b"K\x02K\x03\x86") == 1  # the size tuple (BININT1 2, BININT1 3, TUPLE2)
    blobs[pkl] = blobs[pkl].replace(b"K\x02K\x03\x86", b"K\x02K\x04\x86")
    with zipfile.ZipFile(path, "w") as z:
        for n, b in blobs.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointFormatError, match="reaches past its storage") as e:
        read_checkpoint_arrays(path)
    assert str(e.value).startswith(str(path))


@pytest.mark.ultralytics
def test_loading_predicting_and_validating_never_import_torch_or_tensorflow(trained, tmp_path):
    """``YOLO('x.pt')``, its forward pass and ``val`` on an image folder need neither torch (~2 s to import) nor
    TensorFlow (~2.5 s): every CLI val/predict pays neither."""
    from jaxyolo.data import load_dataset

    best, _ = trained
    data = best.parents[3] / "data"
    load_dataset(str(data))  # a folder's first scan verifies every file with the TF decoders (then it is cached)
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from jaxyolo import YOLO
        y = YOLO({str(best)!r})
        y.forward(np.zeros((1, {IMGSZ}, {IMGSZ}, 3), np.float32))
        m = y.val(data={str(data)!r}, imgsz={IMGSZ}, plots=False)
        assert m.n == 20, m.n
        print("TORCH", "torch" in sys.modules, "TF", "tensorflow" in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TORCH False TF False" in r.stdout


@pytest.mark.ultralytics
def test_validation_images_equal_ultralytics_validation_images(trained):
    """``eval_batches`` of an image folder gives the very pixels Ultralytics' ClassificationDataset validates on
    (40x48 PNGs resized and centre-cropped to 32: torchvision's Pillow resize, not TF's float one)."""
    _ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import ClassificationDataset

    from jaxyolo.data import eval_batches, load_dataset

    best, _ = trained
    data = best.parents[3] / "data"
    ref = ClassificationDataset(str(data / "val"), get_cfg(overrides={"imgsz": IMGSZ}), augment=False)
    theirs = {}
    for k in range(len(ref)):
        item = ref[k]
        img = (item["img"].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        theirs[str(Path(ref.samples[k][0]).resolve())] = (img, int(item["cls"]))
    ds = load_dataset(str(data))
    files = [str(Path(f).resolve()) for f in ds.records["val"].files]
    i = 0
    for x, y, m in eval_batches(ds, "val", imgsz=IMGSZ, batch_size=8):
        for img, label in zip(x[m], y[m]):
            ref_img, ref_label = theirs[files[i]]
            assert np.array_equal(img, ref_img) and label == ref_label, files[i]
            i += 1
    assert i == len(theirs) == 20
