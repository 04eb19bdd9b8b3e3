"""The seed document's Python API examples, run as written with ``jaxyolo`` for ``ultralytics`` and ``data='digits'``
for ``data='mnist160'`` (smaller epochs/imgsz so the suite stays fast), plus the other model sources ``YOLO`` accepts.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMGSZ = 32


@pytest.fixture(scope="module")
def trained(workdir):
    from jaxyolo import YOLO

    # --- Train (seed document): build a new model from YAML, then train it --------------------------------------
    model = YOLO("yolov8n-cls.yaml")  # build a new model from YAML
    results = model.train(data="digits", epochs=1, imgsz=IMGSZ, batch=32, fraction=0.25, plots=False)
    return model, results


def test_train_returns_metrics_and_reloads_best(trained, workdir):
    model, results = trained
    run = Path(results.save_dir)
    assert run.resolve() == (workdir / "runs" / "classify" / "train").resolve()
    assert (run / "weights" / "best.pt").is_file()
    assert 0.0 <= results.top1 <= results.top5 <= 1.0
    assert set(results.results_dict) == {"metrics/accuracy_top1", "metrics/accuracy_top5", "fitness"}
    # like Ultralytics, the YOLO object now holds the run's best.pt, with the dataset's names and settings
    assert Path(model.ckpt_path).resolve() == (run / "weights" / "best.pt").resolve()
    assert model.names == {i: str(i) for i in range(10)} and model.task == "classify"
    assert model.overrides["imgsz"] == IMGSZ and model.overrides["data"] == "digits"


def test_val_needs_no_arguments(trained, workdir):
    """Seed document: `metrics = model.val()  # no arguments needed, dataset and settings remembered`."""
    model, results = trained
    metrics = model.val()
    metrics.top1  # top1 accuracy
    metrics.top5  # top5 accuracy
    assert metrics.n == 360  # the digits val split
    # the trainer validated the fp32 EMA weights; best.pt stores them in fp16 like Ultralytics: same up to rounding
    assert abs(metrics.top1 - results.top1) <= 2 / 360 and abs(metrics.top5 - results.top5) <= 2 / 360
    again = model.val(data="digits", imgsz=IMGSZ, batch=64, split="val")
    assert again.top1 == metrics.top1 and again.top5 == metrics.top5
    # like `yolo classify val`: the confusion matrices ([pred, true], top-1) go to runs/classify/val, then val-2, ...
    cm = metrics.confusion_matrix
    assert cm.sum() == 360 and np.trace(cm) == round(metrics.top1 * 360)
    runs = workdir / "runs" / "classify"
    assert [Path(m.save_dir).resolve() for m in (metrics, again)] == [(runs / "val").resolve(), (runs / "val-2").resolve()]
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png"):
        with Image.open(runs / "val" / name) as im:
            assert min(im.size) >= 200
    assert sorted(p.name for p in (runs / "val").iterdir()) == ["confusion_matrix.png", "confusion_matrix_normalized.png"]
    quiet = model.val(plots=False)
    assert quiet.save_dir is None and not (runs / "val-3").exists() and quiet.top1 == metrics.top1


def test_predict_on_an_image(trained, workdir):
    """Seed document: `results = model('image.jpg')` (a local file: nothing is downloaded)."""
    model, _ = trained
    digit = next((workdir / "datasets" / "digits" / "val" / "3").glob("*.png"))
    Image.open(digit).convert("RGB").resize((96, 96), Image.NEAREST).save("image.jpg", quality=95)
    results = model("image.jpg")  # predict on an image
    r = results[0]
    assert r.probs.top1 in r.names and len(r.probs.top5) == 5 and r.path == str(workdir / "image.jpg")
    assert r.probs.data.shape == (10,) and abs(float(r.probs.data.sum()) - 1) < 1e-5
    assert float(r.probs.top1conf) == pytest.approx(float(r.probs.data.max()))
    assert set(r.speed) == {"preprocess", "inference", "postprocess"}


def test_three_ways_to_get_a_model(trained, workdir):
    """Seed document: YOLO('yolov8n-cls.yaml'), YOLO('yolov8n-cls.pt'), YOLO('yolov8n-cls.yaml').load('yolov8n-cls.pt').
    Pretrained weights cannot be downloaded: a local .pt stands in for yolov8n-cls.pt."""
    from jaxyolo import YOLO

    model, _ = trained
    with pytest.raises(FileNotFoundError, match="cannot download"):
        YOLO("yolov8n-cls.pt")  # not here, and never downloaded
    shutil.copy(model.ckpt_path, "yolov8n-cls.pt")
    m_pt = YOLO("yolov8n-cls.pt")  # load a pretrained model (recommended for training)
    m_tr = YOLO("yolov8n-cls.yaml").load("yolov8n-cls.pt")  # build from YAML and transfer weights
    x = np.random.default_rng(0).integers(0, 256, (2, IMGSZ, IMGSZ, 3), dtype=np.uint8)
    np.testing.assert_allclose(m_pt.forward(x), model.forward(x), atol=1e-6)
    # nc=1000 (the YAML's) vs 10: everything but the Linear layer transfers, as in Ultralytics
    assert m_tr.nc == 1000
    k = ("model_0", "conv", "kernel")
    np.testing.assert_array_equal(np.asarray(m_tr.variables["params"][k[0]][k[1]][k[2]]),
                                  np.asarray(m_pt.variables["params"][k[0]][k[1]][k[2]]))
    assert m_tr.pretrained == "yolov8n-cls.pt"  # .train() would start from these weights (pretrained=...)


def test_run_directory_and_orbax_checkpoint(trained):
    """A run directory means its weights/best.pt; its checkpoints/ folder holds the full-precision EMA weights."""
    from jaxyolo import YOLO

    model, results = trained
    run = Path(results.save_dir)
    by_dir = YOLO(run)
    assert Path(by_dir.ckpt_path) == run / "weights" / "best.pt"
    orbax = YOLO(run / "checkpoints")
    assert orbax.kind == "orbax" and orbax.names == model.names and orbax.overrides["imgsz"] == IMGSZ
    x = np.random.default_rng(1).integers(0, 256, (4, IMGSZ, IMGSZ, 3), dtype=np.uint8)
    np.testing.assert_allclose(orbax.forward(x), model.forward(x), atol=5e-3)  # fp32 EMA vs its fp16 copy
    m = orbax.val()  # the remembered data/imgsz come from the run's args.yaml
    assert m.n == 360


def test_export_and_predict_with_the_exported_model(trained):
    """Seed document: `model.export(format='onnx')`; exported models predict and validate directly."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from converters.export.formats import get_format
    from jaxyolo import YOLO

    model, _ = trained
    try:
        import importlib

        importlib.import_module(f"converters.export.{get_format('onnx').module}")
    except ImportError:
        pytest.skip("the ONNX exporter is not in this checkout yet")
    path = model.export(format="onnx")  # export the model
    assert Path(path).is_file() and path.endswith("best.onnx")
    onnx_model = YOLO(path)
    assert onnx_model.names == model.names and onnx_model.kind == "exported"
    a, b = onnx_model("image.jpg", verbose=False)[0], model("image.jpg", verbose=False)[0]
    assert a.probs.top1 == b.probs.top1 and np.abs(a.probs.data - b.probs.data).max() < 1e-4
    m = onnx_model.val(data="digits")
    assert m.n == 360 and abs(m.top1 - model.val().top1) <= 2 / 360
