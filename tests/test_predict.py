"""Prediction: sources, Results/Probs, saving, bad input (parity with Ultralytics: test_predict_ultralytics.py)."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxyolo.engine.predict import SourceError, classify_transform, padded_size
from jaxyolo.engine.results import Probs, Results

IMGSZ = 32


@pytest.fixture(scope="module")
def model():
    from jaxyolo import YOLO

    m = YOLO("yolov8n-cls.yaml", nc=4)
    m.names = {i: f"c{i}" for i in range(4)}
    m.overrides["imgsz"] = IMGSZ
    return m


def write_images(d: Path, n=5, seed=0) -> list[Path]:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = d / f"im{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


# -------------------------------------------------------------------------------------------------- Results, Probs


def test_probs_and_results():
    p = np.array([0.05, 0.4, 0.1, 0.3, 0.02, 0.13], np.float32)
    names = {i: n for i, n in enumerate(["a", "b", "c", "d", "e", "f"])}
    probs = Probs(p)
    assert probs.top1 == 1 and probs.top5 == [1, 3, 5, 2, 0]
    assert float(probs.top1conf) == pytest.approx(0.4) and np.allclose(probs.top5conf, [0.4, 0.3, 0.13, 0.1, 0.05])
    img = np.zeros((40, 60, 3), np.uint8)
    r = Results(img, "x/img.jpg", names, p)
    assert r.names == names and r.path == "x/img.jpg" and r.orig_shape == (40, 60) and r.boxes is None
    assert r.verbose() == "b 0.40, d 0.30, f 0.13, c 0.10, a 0.05, "
    assert r.summary()[0] == {"name": "b", "class": 1, "confidence": 0.4}
    assert json.loads(r.to_json())[1]["name"] == "d"
    plotted = r.plot()
    assert plotted.shape == img.shape and plotted.dtype == np.uint8 and plotted.any()  # text was drawn
    assert not img.any()  # on a copy
    assert r.plot(pil=True).size == (60, 40)
    with tempfile.TemporaryDirectory() as d:
        txt = Path(d) / "labels" / "img.txt"
        r.save_txt(txt)
        assert txt.read_text().splitlines() == ["0.40 b", "0.30 d", "0.13 f", "0.10 c", "0.05 a"]
        out = r.save(Path(d) / "annotated.png")
        assert Image.open(out).size == (60, 40)


def test_classify_transform_equals_torchvision():
    """The predict preprocessing is torchvision's Resize(imgsz) + CenterCrop(imgsz) on PIL images, bit for bit."""
    T = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(0)
    for imgsz in (32, 33, 224, (40, 24)):
        ref = T.Compose([T.Resize(imgsz if isinstance(imgsz, int) else imgsz), T.CenterCrop(imgsz)])
        for _ in range(6):
            h, w = int(rng.integers(8, 300)), int(rng.integers(8, 300))
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            assert np.array_equal(classify_transform(img, imgsz), np.asarray(ref(Image.fromarray(img))))


# ---------------------------------------------------------------------------------------------------------- sources


def test_every_source_kind_gives_the_same_result(model, tmp_path):
    files = write_images(tmp_path / "imgs")
    ref = model.predict(tmp_path / "imgs", verbose=False)
    assert [r.path for r in ref] == [str(f.absolute()) for f in files]
    P = np.stack([r.probs.data for r in ref])
    assert np.allclose(P.sum(1), 1, atol=1e-5)

    def probs(results):
        return np.stack([r.probs.data for r in results])

    (tmp_path / "list.txt").write_text("\n".join(f"imgs/{f.name}" for f in files))  # relative to the list's folder
    bgr = [np.asarray(Image.open(f).convert("RGB"))[..., ::-1].copy() for f in files]
    for source in (str(tmp_path / "imgs" / "*"), [str(f) for f in files], str(tmp_path / "list.txt"), bgr,
                   [Image.open(f) for f in files]):
        np.testing.assert_allclose(probs(model.predict(source, verbose=False)), P, atol=1e-6)
    one = model(str(files[0]), verbose=False)  # __call__ is predict
    assert len(one) == 1 and np.allclose(one[0].probs.data, P[0], atol=1e-6)
    assert model.predict(bgr[0], verbose=False)[0].path == "image0.jpg"
    # batching pads to a compiled size: any batch gives the same numbers
    np.testing.assert_allclose(probs(model.predict(files, batch=2, verbose=False)), P, atol=1e-5)
    gen = model.predict(files, stream=True, verbose=False)
    assert not isinstance(gen, list) and len(list(gen)) == len(files)
    # the batch function on exactly the predict preprocessing gives the same probabilities
    x = np.stack([classify_transform(np.asarray(Image.open(f).convert("RGB")), IMGSZ) for f in files])
    np.testing.assert_allclose(model.forward(x), P, atol=1e-5)


def test_padded_size_reuses_compiled_shapes():
    class R:
        sizes = {16}

    assert padded_size(R(), 8, 16) == 16
    R.sizes = set()
    assert padded_size(R(), 1, 16) == 1 and padded_size(R(), 5, 16) == 8 and padded_size(R(), 20, 16) == 16


def test_speed_excludes_the_first_call_of_each_batch_shape(tmp_path):
    """As Ultralytics' ``warmup()``: the first call of a batch shape (the jit compile, a runtime's first run) happens
    untimed, so ``Results.speed`` is the steady per-image time; the images are still classified once each."""
    import time

    from jaxyolo.engine.predict import predict

    class SlowFirst:
        sizes: set = set()
        fixed_batch = None

        def __init__(self):
            self.calls = []

        def __call__(self, x):
            self.calls.append(x.shape)
            if self.calls.count(x.shape) == 1:
                time.sleep(0.5)  # "compiling"
            return np.tile(np.eye(4, dtype=np.float32)[1], (len(x), 1))

    write_images(tmp_path, n=5)
    runner = SlowFirst()
    results = list(predict(runner, {i: str(i) for i in range(4)}, tmp_path, imgsz=IMGSZ, batch=2, verbose=False))
    assert len(results) == 5 and all(r.probs.top1 == 1 for r in results)
    assert max(r.speed["inference"] for r in results) < 100  # ms per image; the 0.5 s first calls are not in it
    shapes = [s for s in runner.calls]
    assert sorted(set(shapes)) == [(1, IMGSZ, IMGSZ, 3), (2, IMGSZ, IMGSZ, 3)]
    assert len(shapes) == 3 + 2  # 3 timed batches (2 + 2 + 1), one untimed first call per shape
    list(predict(runner, {i: str(i) for i in range(4)}, tmp_path, imgsz=IMGSZ, batch=2, verbose=False))
    assert len(runner.calls) == 5 + 3  # the same runner again (as YOLO.predict per frame): no second warm-up


def test_unreadable_image_is_skipped_with_a_warning(model, tmp_path, jlog):
    files = write_images(tmp_path, n=3)
    (tmp_path / "broken.jpg").write_bytes(b"\x00not an image")
    results = model.predict(tmp_path, verbose=False)
    assert sorted(r.path for r in results) == sorted(str(f.absolute()) for f in files)
    assert any("broken.jpg" in r and "read error" in r for r in jlog)


def test_bad_sources_fail_clearly(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.predict(tmp_path / "missing.jpg")
    with pytest.raises(SourceError, match="no images or videos found"):
        model.predict(tmp_path)
    with pytest.raises(SourceError, match="offline"):
        model.predict("https://ultralytics.com/images/bus.jpg")
    with pytest.raises(SourceError, match="no source given"):
        model.predict()
    with pytest.raises(SourceError, match="HWC"):
        model.predict(np.zeros((4, 4, 5), np.uint8), verbose=False)


def test_save_and_save_txt(model, tmp_path):
    files = write_images(tmp_path / "src", n=3)
    (tmp_path / "src" / "im0.png").write_bytes(files[1].read_bytes())  # same stem as im0.jpg: gets im0-2
    project = tmp_path / "runs"
    model.predict(tmp_path / "src", save=True, save_txt=True, project=project, verbose=False)
    d = project / "predict"
    assert sorted(p.name for p in d.glob("*.jpg")) == ["im0-2.jpg", "im0.jpg", "im1.jpg", "im2.jpg"]
    labels = sorted(p.name for p in (d / "labels").glob("*.txt"))
    assert labels == ["im0-2.txt", "im0.txt", "im1.txt", "im2.txt"]
    lines = (d / "labels" / "im1.txt").read_text().splitlines()
    assert len(lines) == 4 and all(ln.split()[1] in model.names.values() for ln in lines)
    model.predict(files[0], save_txt=True, project=project, verbose=False)
    assert (project / "predict-2" / "labels" / "im0.txt").is_file()  # runs/classify/predict, predict-2, ...


def test_video_source(model, tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    rng = np.random.default_rng(0)
    for _ in range(6):
        w.write(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    w.release()
    results = model.predict(path, vid_stride=2, save_txt=True, project=tmp_path / "runs", verbose=False)
    assert len(results) == 3 and all(r.path == str(path) for r in results)
    assert sorted(p.name for p in (tmp_path / "runs" / "predict" / "labels").glob("*.txt")) == [
        "clip_1.txt", "clip_2.txt", "clip_3.txt"]


# Parity with Ultralytics' predictions (a checkpoint trained by the real Ultralytics trainer, the two CLIs and the two
# Python APIs on 200 real digits, tinted, resized, PNG and JPEG): tests/test_predict_ultralytics.py
