"""The ``jaxyolo`` command line: Ultralytics' parsing rules, special commands, clean errors, and train -> val -> predict
end to end in subprocesses (as a user runs it)."""

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxyolo import cli
from jaxyolo.cfg import DEFAULT_CFG

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jaxyolo.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr[-3000:]


# ------------------------------------------------------------------------------------------------------ parsing


def test_merge_equals_and_brackets():
    assert cli.merge_equals_args(["imgsz", "=", "32", "epochs=", "2", "batch", "=16", "imgsz=[224,", "192]"]) == [
        "imgsz=32", "epochs=2", "batch=16", "imgsz=[224,192]"]


def test_parse_rules(jlog):
    o, special = cli.parse_args(["classify", "train", "imgsz=224,192", "plots", "--epochs=3", "lr0=0.01,", "name=007",
                                 "data=path/to/root", "cos_lr=true", "freeze=None"])
    assert special is None
    assert o == {"task": "classify", "mode": "train", "imgsz": (224, 192), "plots": True, "epochs": 3, "lr0": 0.01,
                 "name": "007", "data": "path/to/root", "cos_lr": True, "freeze": None}
    text = "\n".join(jlog)
    assert "leading dashes" in text and "trailing comma" in text
    # name/project always strings, like Ultralytics
    assert cli.check_args({"name": 7, "project": 1.5}) == {"name": "7", "project": "1.5"}


def test_cfg_file_overrides_defaults_and_args_override_cfg(tmp_path):
    f = tmp_path / "custom.yaml"
    f.write_text("epochs: 7\nimgsz: [64, 48]\nlr0: 0.5\n")
    o, _ = cli.parse_args(["train", f"cfg={f}", "lr0=0.1"])
    assert o == {"epochs": 7, "imgsz": (64, 48), "lr0": 0.1, "mode": "train"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    with pytest.raises(KeyError, match="did you mean 'epochs'"):
        cli.parse_args(["train", f"cfg={bad}"])


@pytest.mark.parametrize("argv, message", [
    (["train", "imgs=32"], "'imgs' is not a valid jaxyolo argument.*did you mean 'imgsz'"),
    (["trian"], "'trian' is not a valid jaxyolo mode.*did you mean 'train'"),
    (["train", "epochs"], "missing an '=' sign.*epochs=100"),
    (["train", "epochs="], "missing 'epochs' value"),
    (["detect", "train"], "supports only image classification"),
    (["segment", "predict", "model=x.pt", "source=a.jpg"], "supports only image classification"),
    (["val", "epochs=2.5"], "'epochs' must be an int"),
    (["train", "plots=1"], "'plots' must be a bool"),
    (["train", "lr0=fast"], "'lr0' must be a number"),
    (["train", "aug_backend=torch"], "aug_backend='torch' is invalid: expected one of opencv, pillow"),
    (["train", "seed=-1"], "seed=-1 is invalid: expected an integer from 0 to 4294967295"),
    (["predict", "model=yolov8n-cls.yaml"], "source= is required"),
    (["val"], "model= is required for val"),
    (["track", "model=x.pt"], "mode=track is not available"),
    (["settings"], "no jaxyolo equivalent"),
    (["val", "model=yolov8n-cls.pt"], "cannot download pretrained weights"),
    (["train", "cfg=/does/not/exist.yaml"], "no such file"),
    (["train", "imgsz=0,0"], r"imgsz=\(0, 0\) is invalid: expected a positive int"),
    (["train", "batch=-1"], "batch=-1 must be a positive multiple .*AutoBatch.* is not available"),
    (["val", "model=yolov8n-cls.yaml", "batch=0"], "batch=0 is invalid: expected a positive integer"),
    (["predict", "model=yolov8n-cls.yaml", "source=a.jpg", "batch=-2"], "batch=-2 is invalid"),
    (["export", "model=yolov8n-cls.yaml", "imgsz=0"], "imgsz=0 is invalid: expected a positive int"),
    (["export", "model=yolov8n-cls.yaml", "imgsz=32,0", "format=onnx"], r"imgsz=\(32, 0\) is invalid"),
    (["export", "model=yolov8n-cls.yaml", "batch=0"], "batch=0 is invalid"),
    (["val", "model=yolov8n-cls.yaml", "device=0"], r"Invalid CUDA 'device=0' requested: JAX sees no NVIDIA GPU"),
    (["train", "device=cuda:1"], r"Invalid CUDA 'device=cuda:1' requested"),
    (["predict", "model=yolov8n-cls.yaml", "source=a.jpg", "device=mps"], "device=mps: Apple GPUs are not"),
    (["val", "model=yolov8n-cls.yaml", "device=npu"], "device='npu' is invalid: expected cpu, a GPU index"),
])
def test_user_errors_are_one_clean_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (train's digits and any run folder land here)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # (device=0 sets it; restored afterwards)
    monkeypatch.setenv("JAXYOLO_DATASETS_DIR", str(tmp_path / "datasets"))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert cli.entrypoint(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxyolo: error: "), err
    import re

    assert re.search(message, err[0]), err[0]


def test_detection_yaml_is_refused(tmp_path, capsys):
    det = tmp_path / "yolov8n.yaml"
    det.write_text("nc: 80\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\n  - [-1, 1, SPPF, [64, 5]]\n"
                   "head:\n  - [[1], 1, Detect, [nc]]\n")
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    assert cli.entrypoint(["predict", f"model={det}", f"source={tmp_path / 'img.png'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"jaxyolo: error: {det}: "), err
    assert "a detect model YAML (its head is Detect, not Classify)" in err[0] and "classification" in err[0]


def test_special_commands(capsys, tmp_path, monkeypatch):
    import jaxyolo

    assert cli.entrypoint([]) == 0 and "Usage: jaxyolo [TASK] MODE" in capsys.readouterr().out
    assert cli.entrypoint(["help"]) == 0
    out = capsys.readouterr().out
    for mode in ("train", "val", "predict", "export"):  # each mode with its Ultralytics equivalent
        assert f"jaxyolo classify {mode}" in out or f"jaxyolo {mode}" in out
        assert f"yolo classify {mode}" in out or f"yolo {mode}" in out
    assert cli.entrypoint(["version"]) == 0 and capsys.readouterr().out.strip() == jaxyolo.__version__
    assert cli.entrypoint(["cfg"]) == 0 and "lr0: 0.01" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert cli.entrypoint(["copy-cfg"]) == 0
    assert (tmp_path / "default_copy.yaml").is_file()
    # no mode and no source: help, not a guess
    assert cli.entrypoint(["classify"]) == 0 and "Usage" in capsys.readouterr().out


def test_checks_lists_versions_devices_and_backends(capsys, monkeypatch):
    # each back-end is imported in its own subprocess (coremltools' import segfaults on this machine); that takes
    # ~30 s for all of them, so the probe itself is tested on cheap modules and stubbed for the listing
    probed = cli._probe_imports(["json", "no_such_module_xyz"])
    assert probed == {"json": (True, ""), "no_such_module_xyz": (False, "not installed")}
    monkeypatch.setattr(cli, "_probe_imports", lambda mods, timeout=120: {m: (m != "tensorrt", "") for m in mods})
    assert cli.entrypoint(["checks"]) == 0
    out = capsys.readouterr().out
    for word in ("jax", "flax", "optax", "orbax-checkpoint", "tensorflow", "torch", "Devices:", "onnxruntime",
                 "openvino", "tensorrt", "coremltools", "paddle", "ncnn", "pnnx", "tensorflowjs", "tfjs environment"):
        assert word in out, word


def test_device_argument(monkeypatch):
    """Ultralytics' device= spellings: cpu, an index, indices, cuda:N, a list; cpu applies on this CPU machine."""
    from jaxyolo.utils.device import parse_device, select_device

    assert parse_device(None) is None and parse_device("") is None
    assert parse_device("cpu") == parse_device("CPU") == ("cpu", ())
    assert parse_device(0) == parse_device("0") == parse_device("cuda:0") == parse_device("cuda") == ("gpu", (0,))
    assert parse_device("0,1") == parse_device([0, 1]) == parse_device("cuda:0,1") == ("gpu", (0, 1))
    select_device("cpu")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(ValueError, match=r"Invalid CUDA 'device=1,2' requested"):
        select_device("1,2")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,2"  # set for JAX's start (too late here: it runs on the CPU)
    code = ("from jaxyolo.utils.device import select_device; select_device('cpu'); import jax; "
            "print(jax.config.jax_platforms)")
    p = subprocess.run([sys.executable, "-c", code], env={**os.environ, "JAX_PLATFORMS": "cuda,cpu"}, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["cpu"], p.stderr[-2000:]  # a fresh process: device=cpu wins over JAX_PLATFORMS


def test_all_default_keys_are_accepted():
    assert cli.check_args(dict(DEFAULT_CFG)) is not None


@pytest.mark.ultralytics
def test_every_ultralytics_argument_is_accepted(jlog):
    """Every key of the real Ultralytics default.yaml (at its default value) is a jaxyolo argument or accepted and
    ignored with a warning, so a script written for Ultralytics runs; 'cfg' is the settings-file argument."""
    import yaml

    ultralytics = pytest.importorskip("ultralytics")
    theirs = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "default.yaml").read_text())
    theirs.pop("cfg")
    theirs.pop("task"), theirs.pop("mode")  # (their defaults are detect / train)
    cli.check_args(theirs)
    assert "'cls_pw=0.0' has no effect on classification" in "\n".join(jlog)


def test_quantize_is_ultralytics_84s_half_and_int8():
    assert cli.check_args({"quantize": 16}) == {"half": True, "int8": False}
    assert cli.check_args({"quantize": "fp16"}) == {"half": True, "int8": False}
    assert cli.check_args({"quantize": "int8", "half": True}) == {"half": False, "int8": True}  # quantize wins
    assert cli.check_args({"quantize": 32, "int8": True}) == {"half": False, "int8": False}
    assert cli.check_args({"quantize": None, "half": True}) == {"half": True}
    with pytest.raises(cli.CLIError, match="quantize=w8a16 is invalid: expected 16/fp16"):
        cli.check_args({"quantize": "w8a16"})
    with pytest.raises(cli.CLIError, match="knowledge distillation is not available"):
        cli.check_args({"distill_model": "teacher.pt"})
    from jaxyolo.engine.train import train

    with pytest.raises(ValueError, match="quantization-aware training\\) is not available"):
        train({"quantize": 8})


# (key, value): Ultralytics' ranges (its check_cfg) for the keys jaxyolo uses, inside, at and past the ends
RANGE_CASES = [(k, v) for k in ("fliplr", "lr0", "dropout", "hsv_h", "erasing", "scale", "momentum", "weight_decay")
               for v in (0.0, 0.5, 1.0, 1.5, -0.1)] + \
              [("epochs", v) for v in (1, 0, -1, 100.0)] + [("patience", v) for v in (0, -1, 5)] + \
              [("nbs", v) for v in (1, 0)]


@pytest.mark.ultralytics
def test_value_ranges_are_ultralytics(capsys):
    """A value out of Ultralytics' range is one clean line naming the key, the value and the range, and exactly the
    values Ultralytics' own check (``ultralytics.cfg.check_cfg``, the real package) refuses are refused."""
    check_cfg = pytest.importorskip("ultralytics.cfg").check_cfg
    for k, v in RANGE_CASES:
        try:
            check_cfg({k: v})
            theirs = True
        except (TypeError, ValueError):
            theirs = False
        ours = cli.entrypoint(["val", f"{k}={v}", "model=missing.pt"]) == 1 and "invalid value" in (
            err := capsys.readouterr().err)
        assert ours != theirs, (k, v, err)
        if ours:
            assert err.strip().startswith(f"jaxyolo: error: '{k}={v}' is an invalid value: '{k}' must be "), err
    assert cli.check_args({"epochs": 100.0, "nbs": 1e2}) == {"epochs": 100, "nbs": 100}  # integral floats, as theirs
    with pytest.raises(cli.CLIError, match="'lr0=None' is an invalid value"):
        cli.check_args({"lr0": None})


def test_value_ranges_in_a_config_run(tmp_path):
    """The trainer checks the same ranges (experiment configs do not pass the CLI's checks), before any file is
    written."""
    from jaxyolo.engine.train import train

    with pytest.raises(ValueError, match="'fliplr=1.5' is an invalid value: 'fliplr' must be a number from 0.0 to 1.0"):
        train({"data": "digits", "fliplr": 1.5}, save_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_subprocess_error_has_no_traceback(tmp_path):
    p = run_cli("classify", "train", "imgsz=32", "epohcs=2", cwd=tmp_path, timeout=120)
    assert p.returncode == 1
    no_traceback(p)
    assert p.stderr.strip().splitlines()[-1] == ("jaxyolo: error: 'epohcs' is not a valid jaxyolo argument "
                                                "(command line); did you mean 'epochs'?")


# ------------------------------------------------------------------------------------------ train -> val -> predict


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, colour_folder):
    tmp = tmp_path_factory.mktemp("cli")
    folder = colour_folder(tmp / "tinycls")
    p = run_cli("classify", "train", f"data={folder}", "model=yolov8n-cls.yaml", "epochs=2", "imgsz=32", "batch=32",
                f"project={tmp / 'P'}", "name=N", "plots=False", "workers=2", cwd=tmp)
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp, folder, tmp / "P" / "N"


def test_cli_train_writes_run(trained):
    _, _, run = trained
    assert (run / "weights" / "best.pt").is_file() and (run / "weights" / "last.pt").is_file()
    rows = read_csv(run / "results.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert (run / "args.yaml").is_file()


def test_cli_val_reproduces_best_epoch(trained):
    """best.pt holds the EMA weights of the best epoch (the first epoch with the highest fitness: fitness must
    strictly improve to overwrite best.pt), so `val` must print that epoch's top-1/top-5 (results.csv row), which is
    the last epoch's whenever the last epoch improved. Printed with 3 significant digits like Ultralytics; the
    dataset has 32 val images, so accuracies are multiples of 1/32 and 3 digits tell them apart."""
    tmp, folder, run = trained
    p = run_cli("classify", "val", f"model={run / 'weights' / 'best.pt'}", f"data={folder}", "imgsz=32", cwd=tmp)
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_csv(run / "results.csv")
    fit = [(float(r["metrics/accuracy_top1"]) + float(r["metrics/accuracy_top5"])) / 2 for r in rows]
    best = rows[int(np.argmax(fit))]  # argmax = first maximum, as the trainer keeps it
    line = next(ln for ln in p.stdout.splitlines() if ln.split()[:1] == ["all"])
    top1, top5 = map(float, line.split()[1:3])
    assert top1 == pytest.approx(float(best["metrics/accuracy_top1"]), abs=6e-4)
    assert top5 == pytest.approx(float(best["metrics/accuracy_top5"]), abs=6e-4)


def test_cli_val_without_data_uses_the_trained_ones(trained, capsys):
    """The seed document's "val needs no arguments": data and imgsz come from the checkpoint (in-process: cheaper)."""
    tmp, folder, run = trained
    assert cli.entrypoint(["val", f"model={run}"]) == 0  # a run directory means its weights/best.pt
    out = capsys.readouterr().out
    assert f"{folder} val: 32 images, imgsz=32" in out


def test_cli_predict_save_txt_and_unreadable_image(trained):
    tmp, folder, run = trained
    src = tmp / "predict_src"
    src.mkdir()
    imgs = sorted((folder / "val").glob("*/*.png"))[:6]
    for f in imgs:
        (src / f.name).write_bytes(f.read_bytes())
    (src / "broken.jpg").write_bytes(b"this is not a jpeg")
    (src / "notes.md").write_text("not an image: ignored")
    p = run_cli("classify", "predict", f"model={run / 'weights' / 'best.pt'}", f"source={src}", "save_txt=True",
                f"project={tmp / 'pred'}", cwd=tmp)
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    # the unreadable image: one warning line naming it; the others are still predicted (below)
    out = (p.stdout + p.stderr).splitlines()
    assert [ln for ln in out if "broken.jpg" in ln] == [f"WARNING: image read error, skipped: {src / 'broken.jpg'}"]
    save_dir = tmp / "pred" / "predict"
    labels = sorted((save_dir / "labels").glob("*.txt"))
    assert [f.stem for f in labels] == sorted(f.stem for f in imgs)
    names = {f"class{c}" for c in range(4)}
    for f in labels:
        lines = f.read_text().splitlines()
        assert len(lines) == 4  # top-5 of a 4-class model
        confs = [float(ln.split()[0]) for ln in lines]
        assert confs == sorted(confs, reverse=True) and {ln.split()[1] for ln in lines} == names
    # like Ultralytics' CLI, annotated images are saved by default
    assert sorted(f.stem for f in save_dir.glob("*.jpg")) == sorted(f.stem for f in imgs)


def test_cli_missing_mode_with_source_predicts(trained, jlog, capsys):
    tmp, folder, run = trained
    img = sorted((folder / "val").glob("*/*.png"))[0]
    assert cli.entrypoint([f"model={run}", f"source={img}", "save=False"]) == 0
    assert any("'mode' argument is missing" in r and "mode=predict" in r for r in jlog)
    assert f"image 1/1 {img}: 32x32 class" in capsys.readouterr().out


def test_cli_missing_source_is_one_line(trained, capsys):
    tmp, _, run = trained
    assert cli.entrypoint(["classify", "predict", f"model={run}", f"source={tmp / 'nope'}"]) == 1
    assert capsys.readouterr().err.strip() == f"jaxyolo: error: source '{tmp / 'nope'}' does not exist"


class FakeYOLO:
    """Stands in for jaxyolo.engine.model.YOLO to check what the CLI passes to each mode (no JAX work)."""

    calls: list = []

    def __init__(self, model):
        FakeYOLO.calls.append(("init", model))
        self.overrides = {}

    def train(self, **kw):
        FakeYOLO.calls.append(("train", kw))

    def val(self, **kw):
        FakeYOLO.calls.append(("val", kw))

    def predict(self, stream=False, **kw):
        FakeYOLO.calls.append(("predict", kw))
        return iter([])

    def export(self, **kw):
        FakeYOLO.calls.append(("export", kw))
        return "out.torchscript"


def test_mode_defaults(monkeypatch, jlog, tmp_path, capsys):
    import jaxyolo.engine.model as model_mod

    monkeypatch.setattr(model_mod, "YOLO", FakeYOLO)
    FakeYOLO.calls = []
    assert cli.entrypoint(["classify", "train", "epochs=1"]) == 0
    assert FakeYOLO.calls == [("init", "yolov8n-cls.yaml"), ("train", {"epochs": 1, "data": "digits"})]
    assert any("data=digits" in r for r in jlog) and any("yolov8n-cls.yaml" in r for r in jlog)
    FakeYOLO.calls = []
    assert cli.entrypoint(["export", "model=best.pt", "imgsz=64"]) == 0
    assert FakeYOLO.calls == [("init", "best.pt"), ("export", {"imgsz": 64})]  # YOLO.export defaults to torchscript
    assert any("torchscript" in r for r in jlog)
    assert capsys.readouterr().out.strip().splitlines()[-1] == "out.torchscript"
    FakeYOLO.calls = []
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    assert cli.entrypoint(["predict", "model=best.pt", f"source={tmp_path}", "conf=0.5"]) == 0
    assert FakeYOLO.calls == [("init", "best.pt"), ("predict", {"source": str(tmp_path), "save": True})]
    assert any("'conf=0.5' has no effect on classification" in r for r in jlog)
    FakeYOLO.calls = []
    assert cli.entrypoint(["val", "model=best.pt", "save_txt"]) == 0
    assert FakeYOLO.calls == [("init", "best.pt"), ("val", {"save_txt": True})]


@pytest.mark.ultralytics
def test_detection_checkpoint_is_refused(tmp_path, capsys):
    if importlib.util.find_spec("ultralytics") is None:  # not imported here: see below
        pytest.skip("ultralytics is not installed")
    det = tmp_path / "det.pt"
    # in a subprocess: importing ultralytics monkey-patches PIL.Image.open for the whole process
    code = "import sys, ultralytics; ultralytics.YOLO('yolov8n.yaml').save(sys.argv[1])"
    p = subprocess.run([sys.executable, "-c", code, str(det)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "YOLO_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    assert cli.entrypoint(["predict", f"model={det}", f"source={tmp_path / 'img.png'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a detect model (its head is Detect, not Classify)" in err[0], err


# ---------------------------------------------------------------------------------------------- sources and bad input


def test_cli_list_source_is_predicted_as_a_list(trained, capsys):
    """`source=['a.png','b.png']` (smart_value makes it a list) is passed on as a list, not str()-ed into a path that
    does not exist; a missing entry is named in a one-line error."""
    tmp, folder, run = trained
    a, b = sorted((folder / "val").glob("*/*.png"))[:2]
    assert cli.entrypoint(["predict", f"model={run}", f"source=['{a}', '{b}']", "save=False"]) == 0
    out = capsys.readouterr().out
    assert f"image 1/2 {a}: 32x32 class" in out and f"image 2/2 {b}: 32x32 class" in out
    missing = tmp / "missing.png"
    assert cli.entrypoint(["predict", f"model={run}", f"source=['{a}','{missing}']"]) == 1
    assert capsys.readouterr().err.strip() == f"jaxyolo: error: source '{missing}' does not exist"


def _detect_onnx(path: Path) -> None:
    """A tiny ONNX graph whose Ultralytics metadata says task=detect (what `yolo export model=yolov8n.pt` writes)."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 32, 32])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "det", [x], [y]))
    for k, v in {"task": "detect", "names": "{0: 'person'}", "imgsz": "[32, 32]", "batch": "1"}.items():
        m.metadata_props.add(key=k, value=v)
    save(m, str(path))


@pytest.mark.parametrize("name, write, message", [
    ("garbage.pt", lambda p: p.write_bytes(b"\x00\x01 not a checkpoint"), "not a PyTorch checkpoint"),
    ("empty.pt", lambda p: p.write_bytes(b""), "empty file"),
    ("photo.jpg", lambda p: Image.new("RGB", (8, 8)).save(p), "unsupported model source"),
    ("garbage.onnx", lambda p: p.write_bytes(b"\xff\xfe not protobuf"), "cannot be loaded as an exported model"),
    ("det.onnx", _detect_onnx, "an exported detect model"),
])
def test_bad_model_files_are_one_clean_line(name, write, message, tmp_path, capsys):
    """A file that is not a classification model: one `jaxyolo: error:` line naming the file, no traceback."""
    if name.endswith(".onnx"):
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    f = tmp_path / name
    write(f)
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    assert cli.entrypoint(["predict", f"model={f}", f"source={tmp_path / 'img.png'}", "save=False"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"jaxyolo: error: {f}"), err
    assert message in err[0], err[0]


def test_bad_input_in_a_subprocess_is_one_line(tmp_path):
    """As a user sees it: the whole stderr is the one error line (a missing source; a detection model YAML)."""
    p = run_cli("classify", "predict", "model=yolov8n-cls.yaml", f"source={tmp_path / 'nope'}", cwd=tmp_path,
                timeout=300)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"jaxyolo: error: source '{tmp_path / 'nope'}' does not exist"]
    det = tmp_path / "yolov8n.yaml"
    det.write_text("nc: 80\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc]]\n")
    Image.new("RGB", (40, 30)).save(tmp_path / "img.png")
    p = run_cli("predict", f"model={det}", f"source={tmp_path / 'img.png'}", cwd=tmp_path, timeout=300)
    assert p.returncode == 1
    no_traceback(p)
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"jaxyolo: error: {det}: a detect model YAML"), p.stderr[-2000:]
