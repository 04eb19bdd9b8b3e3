"""Acceptance (issue 6): for a checkpoint made by the REAL Ultralytics trainer, ``jaxyolo classify predict`` and
``yolo classify predict`` give the same top-1 class on >= 99% of a 200-image folder of real digits, with top-1
confidences within 1e-3 (same preprocessing).

The checkpoint is trained by ``ultralytics.YOLO('yolov8n-cls.yaml').train(...)`` on the embedded digits dataset
(``jaxyolo.data.load_dataset('digits')``: real handwritten digits) long enough to be confident (mean top-1 confidence
well above chance), so agreement is a meaningful check. The 200-image folder holds real digits from the val split:
half as stored (32x32 grey PNG), half tinted in colour (so a BGR/RGB mix-up would show), resized to random sizes from 20
to 90 px (down- and up-scaling through resize + centre crop) and saved as PNG or JPEG (exercising the decoders: OpenCV
in Ultralytics, Pillow in jaxyolo).

Two comparisons:
* the two command lines as a user runs them (``jaxyolo classify predict ... save_txt=True`` vs ``yolo classify predict
  ... save_txt=True``, subprocesses): one label file per image from each, same top-1 class, confidences equal to the
  2 decimals the label files carry;
* the two Python APIs at full precision (``Results.probs.data``): same top-1 class, ``top1conf`` within 1e-3.

Ultralytics always runs in a subprocess: importing it monkey-patches ``PIL.Image.open`` for the whole process.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.ultralytics

ROOT = Path(__file__).resolve().parents[1]
IMGSZ = 32
N_IMAGES = 200
EPOCHS = 4

# trains the checkpoint, then predicts the folder with Ultralytics' Python API (full-precision probabilities)
ULTRALYTICS_SIDE = """
import sys
import numpy as np
import ultralytics
data, project, src, out, epochs = sys.argv[1:6]
ultralytics.YOLO("yolov8n-cls.yaml").train(data=data, epochs=int(epochs), imgsz=32, batch=64, device="cpu", workers=0,
                                           plots=False, project=project, name="digits", exist_ok=True, verbose=False,
                                           fliplr=0.0, seed=0, deterministic=True)
res = ultralytics.YOLO(project + "/digits/weights/best.pt").predict(src, imgsz=32, device="cpu", verbose=False)
np.savez(out, paths=np.array([r.path for r in res]), probs=np.stack([r.probs.data.numpy() for r in res]))
"""


def yolo_executable() -> str | None:
    exe = Path(sys.executable).with_name("yolo")
    return str(exe) if exe.is_file() else shutil.which("yolo")


def read_labels(labels_dir: Path) -> dict[str, list[tuple[float, str]]]:
    """``{image stem: [(conf, name), ...]}`` from a predict run's ``labels/*.txt`` (top-5 ``"<conf> <name>"``)."""
    out = {}
    for f in labels_dir.glob("*.txt"):
        out[f.stem] = [(float(c), n) for c, n in (ln.split(maxsplit=1) for ln in f.read_text().splitlines())]
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if importlib.util.find_spec("ultralytics") is None:  # not imported here: see the module docstring
        pytest.skip("ultralytics is not installed")
    if yolo_executable() is None:
        pytest.skip("the `yolo` command is not installed")
    tmp = tmp_path_factory.mktemp("ul_predict")
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXYOLO_DATASETS_DIR", str(tmp / "datasets"))
    mp.setenv("YOLO_OFFLINE", "1")
    mp.setenv("YOLO_CONFIG_DIR", str(tmp / "yolo_cfg"))
    try:
        from jaxyolo.data import load_dataset

        digits = Path(load_dataset("digits").root)

        # 200 real digits from the val split (every class), in one flat folder
        val = sorted((digits / "val").glob("*/*.png"), key=lambda p: int(p.stem))
        pick = [val[i] for i in np.linspace(0, len(val) - 1, N_IMAGES).round().astype(int)]
        assert len({p.stem for p in pick}) == N_IMAGES
        flat = tmp / "images"
        flat.mkdir()
        rng = np.random.default_rng(0)
        for i, p in enumerate(pick):
            if i % 2 == 0:  # as stored: 32x32 grey PNG
                shutil.copy(p, flat / p.name)
                continue
            # tinted (a random colour on a random background: a BGR/RGB mix-up would show), resized to a random,
            # usually non-square size from 20 to 90 px (down- and up-scaling through resize + centre crop), saved as
            # PNG or as JPEG (the two decoders: OpenCV in Ultralytics, Pillow in jaxyolo)
            a = np.asarray(Image.open(p).convert("L"), np.float32)[..., None] / 255.0
            fg, bg = rng.uniform(150, 255, 3), rng.uniform(0, 90, 3)
            im = Image.fromarray(np.clip(bg * (1 - a) + fg * a, 0, 255).astype(np.uint8))
            im = im.resize((int(rng.integers(20, 91)), int(rng.integers(20, 91))), Image.BICUBIC)
            if i % 4 == 1:
                im.save(flat / f"{p.stem}.png")
            else:
                im.save(flat / f"{p.stem}.jpg", quality=int(rng.integers(70, 96)))

        env = {**os.environ}
        p = subprocess.run([sys.executable, "-c", ULTRALYTICS_SIDE, str(digits), str(tmp / "ul"), str(flat),
                            str(tmp / "ref.npz"), str(EPOCHS)], capture_output=True, text=True, env=env, cwd=tmp,
                           timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        best = tmp / "ul" / "digits" / "weights" / "best.pt"
        assert best.is_file()
        z = np.load(tmp / "ref.npz")
        ref = {Path(k).name: v for k, v in zip(z["paths"].tolist(), z["probs"])}
        yield tmp, flat, best, ref
    finally:
        mp.undo()


def test_checkpoint_is_confident(setup):
    """A near-uniform model would make the agreement checks weak: the Ultralytics model must be confident (on the
    images as stored: the tinted, resized ones are out of its training distribution) and right most of the time."""
    _, flat, _, ref = setup
    assert len(ref) == N_IMAGES and set(ref) == {f.name for f in flat.iterdir()}
    assert all(v.shape == (10,) for v in ref.values())
    stored = {k: v for k, v in ref.items() if k.endswith(".png") and Image.open(flat / k).mode == "L"}
    P = np.stack(list(stored.values()))
    conf = P.max(1).mean()
    print(f"\nUltralytics checkpoint on the {len(P)} stored images: mean top-1 confidence {conf:.3f}")
    assert len(P) == N_IMAGES // 2
    assert conf > 0.5, f"mean top-1 confidence {conf:.3f}: train longer"


def test_cli_predictions_match_yolo_cli(setup):
    """`jaxyolo classify predict model=best.pt source=<dir> save_txt=True` vs `yolo classify predict ...`: one label
    file per image from each, same top-1 class on >= 99% of the images, confidences equal to the files' 2 decimals."""
    tmp, flat, best, _ = setup
    common = [f"model={best}", f"source={flat}", f"imgsz={IMGSZ}", "save_txt=True", "save=False", "name=run"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours = subprocess.run([sys.executable, "-m", "jaxyolo.cli", "classify", "predict", *common,
                           f"project={tmp / 'jx'}"], capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert ours.returncode == 0 and "Traceback" not in ours.stderr, ours.stderr[-3000:]
    theirs = subprocess.run([yolo_executable(), "classify", "predict", *common, f"project={tmp / 'ul_cli'}",
                             "device=cpu"], capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    J, U = read_labels(tmp / "jx" / "run" / "labels"), read_labels(tmp / "ul_cli" / "run" / "labels")
    stems = {f.stem for f in flat.iterdir()}
    assert set(J) == stems and set(U) == stems  # one label file per image, on both sides
    assert all(len(v) == 5 for v in (*J.values(), *U.values()))
    same_top1 = np.mean([J[s][0][1] == U[s][0][1] for s in stems])
    conf_diff = max(abs(J[s][0][0] - U[s][0][0]) for s in stems)
    print(f"\nCLI: top-1 agreement {same_top1:.1%}, max top-1 conf difference {conf_diff:.3f} (2-decimal label files)")
    assert same_top1 >= 0.99
    assert conf_diff <= 0.01 + 1e-9  # values agree to 1e-3 (below), so the 2-decimal roundings differ by <= 0.01
    # the per-image lines: our 'image i/200 <path>: 32x32 <top-5>' log names every image
    assert sum(f"{flat}{os.sep}" in ln and ": 32x32 " in ln for ln in ours.stdout.splitlines()) == N_IMAGES


def test_api_predictions_match_ultralytics_at_full_precision(setup):
    """The same comparison at full precision, through the Python APIs (jaxyolo here, Ultralytics' in the fixture's
    subprocess): top-1 class on >= 99%, |top1conf difference| <= 1e-3 (in practice ~1e-6: float32 rounding)."""
    from jaxyolo import YOLO

    _, flat, best, ref = setup
    results = YOLO(str(best)).predict(str(flat), imgsz=IMGSZ, verbose=False)
    ours = {Path(r.path).name: r.probs for r in results}
    assert set(ours) == set(ref)
    keys = sorted(ref)
    U = np.stack([ref[k] for k in keys])
    top1_u = U.argmax(1)
    top1_j = np.array([ours[k].top1 for k in keys])
    agree = (top1_u == top1_j).mean()
    # top1conf of each side's own top-1 class, and each side's probability of Ultralytics' top-1 class
    conf_u = U.max(1)
    conf_j = np.array([float(ours[k].top1conf) for k in keys])
    diff = np.abs(conf_u - conf_j).max()
    diff_same_class = np.abs(conf_u - np.array([ours[k].data[c] for k, c in zip(keys, top1_u)])).max()
    print(f"\nAPI: top-1 agreement {agree:.1%}, max top1conf difference {diff:.2e} "
          f"(same class: {diff_same_class:.2e}), mean top1conf {conf_u.mean():.3f}")
    assert agree >= 0.99
    assert diff <= 1e-3 and diff_same_class <= 1e-3
    J = np.stack([ours[k].data for k in keys])
    assert np.abs(U - J).max() <= 1e-3  # every class, not only the top one
