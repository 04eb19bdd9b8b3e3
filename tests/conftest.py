"""Test-wide settings: Ultralytics runs offline with its settings in a temp folder."""

import os
import tempfile

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_cfg_"))
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# triton (pulled in by torchvision and torch._dynamo) segfaults when TensorFlow was imported before it: load the torch
# side first for the whole suite, whatever order the test modules import things in.
try:
    import torch  # noqa: F401,E402
    import torchvision  # noqa: F401,E402
except ImportError:
    pass


# ----------------------------------------------------------------------------------------------------------------------
# Small shared fixtures
# ----------------------------------------------------------------------------------------------------------------------

import contextlib  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _scratch_cwd(tmp_path_factory):
    """The whole session runs in a scratch folder, so what a test writes relative to the working directory (runs/
    of val and predict, datasets/digits) never lands in the checkout; tests name repository files through ROOT."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture
def jlog():
    """Messages of the 'jaxyolo' logger (it does not propagate to the root logger, so caplog cannot see them)."""

    class ListHandler(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record.getMessage())

    h = ListHandler()
    logger = logging.getLogger("jaxyolo")
    logger.addHandler(h)
    try:
        yield h.records
    finally:
        logger.removeHandler(h)


def _make_colour_folder(root: Path, n_cls=4, n_train=16, n_val=8, size=24, seed=0) -> Path:
    """Learnable tiny dataset in the Ultralytics layout: each class its own mean colour plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in range(n_cls):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            base = np.array([(c * 70) % 256, (c * 130 + 40) % 256, (255 - c * 60) % 256], np.float32)
            for i in range(n):
                img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{c}_{i}.png")
    return root


@pytest.fixture(scope="session")
def colour_folder():
    """``colour_folder(root, n_cls=4, n_train=16, n_val=8, size=24, seed=0)`` writes a learnable tiny image folder."""
    return _make_colour_folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, request):
    """The test module's own working directory: the cwd (runs/ land here), with ``$JAXYOLO_DATASETS_DIR`` inside it
    (``data='digits'`` materialises there; subprocesses inherit it)."""
    d = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXYOLO_DATASETS_DIR", str(d / "datasets"))
        mp.chdir(d)
        yield d


# ----------------------------------------------------------------------------------------------------------------------
# Trained `digits` models, shared by any test module that asks for them (session-scoped, trained once on first use)
# ----------------------------------------------------------------------------------------------------------------------

DIGITS_RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "digits.py"


@dataclass
class TrainedDigits:
    """A model trained on `digits` in this session."""

    arch: str  # 'yolov8n-cls', 'yolo11n-cls'
    weights: Path  # the run's weights/best.pt (fp16, like Ultralytics')
    top1: float  # val top-1 of the JAX model loaded from ``weights`` on the digits val split (what exports come from)
    train_top1: float  # the trainer's best-epoch val top-1 (fp32 EMA weights)
    epochs: int
    imgsz: int
    train_s: float  # wall time of the training run


def digits_recipe() -> dict:
    """experiments/digits.py (the README job) as ``YOLO.train`` keyword arguments, ``model`` included."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_experiments_digits", DIGITS_RECIPE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(mod.get_config().to_dict())


@contextlib.contextmanager
def datasets_env(d):
    """``$JAXYOLO_DATASETS_DIR`` = ``d`` inside the block (``load_dataset('digits')`` finds the digits there)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXYOLO_DATASETS_DIR", str(d))
        yield d


@pytest.fixture(scope="session")
def digits_datasets_dir(tmp_path_factory):
    """A datasets directory holding the materialised `digits` image folders (set ``$JAXYOLO_DATASETS_DIR`` to it, e.g.
    with ``datasets_env``, to use ``data='digits'``)."""
    from jaxyolo.data import load_dataset

    d = tmp_path_factory.mktemp("digits_datasets")
    load_dataset("digits", data_dir=str(d))
    return d


@pytest.fixture(scope="module")
def digits_env(digits_datasets_dir):
    """``data='digits'`` resolves to the session's materialised copy for the whole test module."""
    with datasets_env(digits_datasets_dir):
        yield digits_datasets_dir


def _train_digits(tmp_path_factory, datasets_dir, arch: str, epochs: int | None = None) -> TrainedDigits:
    from jaxyolo import YOLO

    args = digits_recipe()
    args.pop("model")
    if epochs is not None:
        args["epochs"] = epochs
    project = tmp_path_factory.mktemp(f"digits_{arch}")
    with datasets_env(datasets_dir):
        t0 = time.perf_counter()
        res = YOLO(f"{arch}.yaml").train(**args, project=str(project), name="train", plots=False, verbose=False)
        train_s = time.perf_counter() - t0
        best = Path(res.save_dir) / "weights" / "best.pt"
        top1 = YOLO(str(best)).val(data=args["data"], imgsz=args["imgsz"], verbose=False, plots=False).top1
    return TrainedDigits(arch, best, float(top1), float(res.top1), int(args["epochs"]), int(args["imgsz"]), train_s)


@pytest.fixture(scope="session")
def digits_yolov8n(tmp_path_factory, digits_datasets_dir) -> TrainedDigits:
    """yolov8n-cls trained with the README recipe (experiments/digits.py: 10 epochs, imgsz 32, batch 64, fliplr 0)."""
    return _train_digits(tmp_path_factory, digits_datasets_dir, "yolov8n-cls")


@pytest.fixture(scope="session")
def digits_yolo11n(tmp_path_factory, digits_datasets_dir) -> TrainedDigits:
    """yolo11n-cls trained with the same README recipe (10 epochs; 5 are too few here: the recipe's 100-iteration
    warmup is 4.5 of them, and top-1 stays at 0.79)."""
    return _train_digits(tmp_path_factory, digits_datasets_dir, "yolo11n-cls")
