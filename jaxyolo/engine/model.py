"""The ``YOLO`` facade: build or load a classification model and use it the way Ultralytics' ``YOLO`` is used:
``train``, ``val``, ``predict`` (``model(source)``), ``export``, ``save``, ``info``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxyolo.cfg import check_batch
from jaxyolo.engine.orbax_model import find_orbax
from jaxyolo.nn.build import ClassificationModel, build_model
from jaxyolo.nn.cpu_conv import inference_jit
from jaxyolo.nn.summary import model_info
from jaxyolo.utils.device import select_device

LOGGER = logging.getLogger("jaxyolo")


def display_name(cfg: dict) -> str:
    """``yolov8n-cls.yaml`` -> ``YOLOv8n-cls`` as Ultralytics prints it."""
    stem = Path(str(cfg.get("yaml_file", "model"))).stem
    return stem.replace("yolo", "YOLO", 1) if stem.startswith("yolo") else stem


def init_variables(module: ClassificationModel, seed: int = 0, ch: int = 3) -> dict:
    """Initialise ``{'params', 'batch_stats'}`` with PyTorch-equivalent initialisers (params do not depend on imgsz).

    Drawn on the host by numpy (``nn/host_init.py``: the rules of modules.py's initialisers, the same values for one
    seed on every host of a run) into the tree ``variable_shapes`` gives: jitting Flax's ``module.init`` compiled ~260
    fusions for one use, 2-2.6 s of a first run on 2 cores. A model with a variable those rules do not know is
    initialised by Flax's ``module.init`` instead, jitted, its random draws from XLA's RngBitGenerator
    (``impl='rbg'``) and its trace kept on disk (``utils/trace_cache.py``)."""
    from jaxyolo.nn.host_init import host_variables

    drawn = host_variables(variable_shapes(module, ch), seed)
    if drawn is not None:
        return jax.device_put(drawn)
    return _cached_init(module, ch)(jax.random.key_data(jax.random.key(int(seed), impl="rbg")))


def variable_shapes(module: ClassificationModel, ch: int = 3) -> dict:
    """``{'params', 'batch_stats'}`` as ``jax.ShapeDtypeStruct``s: read from ``init_variables``' trace on disk when
    this model was initialised on this machine before (no tracing: ~0.6 s of every ``.pt`` load), else traced."""
    return _cached_init(module, ch).eval_shape(jax.ShapeDtypeStruct((4,), jnp.uint32))  # an rbg key's data


def _cached_init(module: ClassificationModel, ch: int):
    from jaxyolo.utils.trace_cache import CachedJit

    def init(key_data):
        return module.init(jax.random.wrap_key_data(key_data, impl="rbg"), jnp.zeros((1, 32, 32, ch), jnp.float32))

    return CachedJit(init, name="init", key=(repr(module), int(ch)))


_HEAD_TASKS = {"Detect": "detect", "v10Detect": "detect", "Segment": "segment", "Pose": "pose", "OBB": "obb",
               "WorldDetect": "detect", "RTDETRDecoder": "detect", "YOLOEDetect": "detect", "YOLOESegment": "segment"}


def _check_yaml_is_classifier(cfg: dict, path: str) -> None:
    """Refuse a detection/segmentation/pose YAML with a clear message (before the layer parser trips over SPPF)."""
    head = cfg.get("head") or []
    last = head[-1] if head and isinstance(head[-1], (list, tuple)) and len(head[-1]) >= 3 else None
    module = str(last[2]).rsplit(".", 1)[-1] if last else None
    if module and module != "Classify":
        task = _HEAD_TASKS.get(module, "non-classification")
        raise ValueError(f"{path}: a {task} model YAML (its head is {module}, not Classify); jaxyolo supports only "
                         f"classification models such as yolov8n-cls.yaml / yolo11n-cls.yaml")


class YOLO:
    """A YOLO classification model used the way Ultralytics' ``YOLO`` is used.

    ``YOLO(model)`` accepts a model YAML (``'yolov8n-cls.yaml'``: built and initialised), an Ultralytics/jaxyolo
    classification ``.pt``, a training run directory (its ``weights/best.pt``), an orbax checkpoint folder (a run's
    ``checkpoints/``: the EMA weights of the newest step) or an exported model (``'best.onnx'``,
    ``'best_openvino_model/'``, ...: inference only).

    Methods: ``train(**kw)``, ``val(**kw)``, ``predict(source, **kw)`` (also ``model(source)``), ``export(format,
    **kw)``, ``save(path)``, ``load(weights)``, ``info()``, ``forward(nhwc_batch)`` (probabilities of a batch).
    Attributes: ``module`` / ``model`` (the Flax module), ``variables``, ``cfg``, ``names``, ``task``
    (``'classify'``), ``overrides`` (remembered ``imgsz`` / ``data``), ``ckpt`` / ``ckpt_path``, ``backend``
    (exported models), ``metrics`` (of the last train/val).
    """

    task = "classify"

    def __init__(self, model: str | Path = "yolov8n-cls.yaml", task: str | None = None, verbose: bool = False,
                 nc: int | None = None, seed: int = 0):
        if task not in (None, "classify"):
            from jaxyolo.cli import not_classify_message

            raise ValueError(not_classify_message(task))
        self.ckpt_path: str | None = None
        self.ckpt: dict | None = None
        self.overrides: dict[str, Any] = {}
        self.backend = None
        self.metrics = None
        self.source = str(model)  # what this model was made from (train() starts from it)
        self.kind = ""  # 'yaml', 'pt', 'orbax' or 'exported'
        self.pretrained: str | None = None  # a .pt whose weights .load() transferred (train() passes it on)
        self._forward = None
        self._runner = None
        self._open(model, nc, seed)
        if verbose:
            self.info()

    # ------------------------------------------------------------------------------------------------ loading

    def _open(self, model, nc, seed) -> None:
        from converters.export.formats import format_for_path

        path = str(model)
        p = Path(path).expanduser()
        if path.endswith((".yaml", ".yml")):
            return self._new(path, nc, seed)
        if p.is_dir():
            if (p / "weights" / "best.pt").is_file():
                return self._load_pt(p / "weights" / "best.pt", nc)
            found = find_orbax(p)
            if found is not None:
                return self._load_orbax(*found)
            if format_for_path(path) is not None:
                return self._load_exported(path)
            raise ValueError(f"{path}: a directory, but not a run directory (no weights/best.pt or checkpoints/), an "
                             f"orbax checkpoint folder or an exported model folder (*_saved_model, *_openvino_model, "
                             f"...)")
        if path.endswith(".pt"):
            if not p.is_file():
                stem = p.stem
                hint = (f"; to start from scratch build it from its YAML: YOLO('{stem}.yaml')"
                        if stem.endswith("-cls") else "")
                raise FileNotFoundError(f"{path} not found: jaxyolo works offline and cannot download pretrained "
                                        f"weights; pass the path of a local .pt{hint}")
            return self._load_pt(p, nc)
        if format_for_path(path) is not None:
            return self._load_exported(path)
        if not p.exists():
            raise FileNotFoundError(f"{path}: no such model file or directory (expected a model YAML, a .pt, a run "
                                    f"directory, an orbax checkpoint or an exported model)")
        raise ValueError(f"{path}: unsupported model source; expected a model YAML such as 'yolov8n-cls.yaml', a "
                         f"classification checkpoint such as 'best.pt', a run directory, an orbax checkpoint or an "
                         f"exported model (.onnx, .torchscript, _openvino_model/, ...)")

    def _new(self, path: str, nc, seed) -> None:
        from jaxyolo.nn.build import load_model_yaml

        cfg = load_model_yaml(path)
        _check_yaml_is_classifier(cfg, path)
        self.module, self.cfg = build_model(cfg, nc=nc)
        self.variables = init_variables(self.module, seed, self.cfg["channels"])
        self.names = {i: str(i) for i in range(self.module.nc)}
        self.overrides = {"imgsz": 224}  # Ultralytics' classification default
        self.kind = "yaml"

    def _load_pt(self, path, nc=None) -> None:
        from converters.torch_weights.load import load_pt

        self.module, self.variables, meta = load_pt(path)
        if nc is not None and nc != self.module.nc:
            raise ValueError(f"{path}: the checkpoint has nc={self.module.nc}, not nc={nc}; to fine-tune with "
                             f"another class count use YOLO('<model>.yaml', nc={nc}).load('{path}')")
        self.cfg, self.names, self.ckpt = meta["cfg"], meta["names"], meta
        ta = meta.get("train_args") or {}
        self.overrides = {"imgsz": meta["imgsz"]}
        if ta.get("data"):
            self.overrides["data"] = ta["data"]
        self.ckpt_path = str(path)
        self.source = str(path)
        self.kind = "pt"
        self._forward = self._runner = None

    def _load_orbax(self, ckpt_dir: Path, step: int) -> None:
        from jaxyolo.engine.orbax_model import load_orbax_model

        m = load_orbax_model(ckpt_dir, step)
        self.module, self.cfg, self.variables, self.names = m.module, m.cfg, m.variables, m.names
        imgsz = m.args.get("imgsz", 224)
        self.overrides = {"imgsz": tuple(imgsz) if isinstance(imgsz, list) else imgsz}
        if m.args.get("data"):
            self.overrides["data"] = m.args["data"]
        self.ckpt = {"train_args": m.args, "orbax": str(ckpt_dir), "step": step}
        self.ckpt_path = None
        self.source = str(ckpt_dir / str(step))
        self.kind = "orbax"
        self._forward = self._runner = None

    def _load_exported(self, path: str) -> None:
        from converters.export.core import ExportError
        from jaxyolo.engine.backends import load_backend

        try:
            backend = load_backend(path)
        except (ImportError, ExportError):  # a missing runtime: the message already says what to install
            raise
        except Exception as e:  # noqa: BLE001 - a back-end's own error (protobuf, torch.jit, ...): one line, the path
            if isinstance(e, (ValueError, OSError)) and str(path) in str(e):
                raise
            why = " ".join(str(e).split())[:300] or type(e).__name__
            raise ValueError(f"{path}: cannot be loaded as an exported model ({type(e).__name__}: {why})") from e
        task = str((backend.meta or {}).get("task") or "classify")
        if task != "classify":
            raise ValueError(f"{path}: an exported {task} model (its metadata says task={task}); jaxyolo supports "
                             f"only classification models such as yolov8n-cls / yolo11n-cls")
        self.backend = backend
        self.module = self.variables = None
        self.cfg = {"yaml_file": str(path), "channels": 3}
        self.names = dict(self.backend.names)
        h, w = self.backend.imgsz
        self.overrides = {"imgsz": h if h == w else (h, w)}
        meta = self.backend.meta or {}
        data = meta.get("data") or (meta.get("args") or {}).get("data")
        if not data:  # jaxyolo's export metadata names the training data in its description
            import re

            m = re.search(r" trained on (.+)$", str(meta.get("description", "")))
            data = m.group(1) if m else None
        if data:
            self.overrides["data"] = data
        self.ckpt_path = str(path)
        self.kind = "exported"

    def load(self, weights: str | Path, verbose: bool = True) -> "YOLO":
        """Transfer weights from an Ultralytics ``.pt`` checkpoint, like Ultralytics' ``YOLO('x.yaml').load('x.pt')``.

        Every tensor whose name and shape match is copied (e.g. all but the Linear layer when ``nc`` differs); a first
        conv with another input-channel count is filled from the source filters (summed over RGB for one channel).
        When everything transfers and this model still has placeholder names, it takes the checkpoint's names.
        """
        import flax

        from converters.torch_weights.load import load_pt

        self._require_jax("load weights into")
        _, src_vars, meta = load_pt(weights)
        src = flax.traverse_util.flatten_dict(jax.device_get(src_vars))
        dst = flax.traverse_util.flatten_dict(jax.device_get(self.variables))
        out, n = {}, 0
        for k, v in dst.items():
            s = src.get(k)
            if s is not None and s.shape == v.shape:
                out[k], n = np.asarray(s, dtype=np.asarray(v).dtype), n + 1
            else:
                out[k] = v
        first = ("params", "model_0", "conv", "kernel")  # HWIO
        if first in dst and first in src and out[first] is dst[first] and dst[first].shape[:2] == src[first].shape[:2]:
            w, s = np.array(dst[first]), np.asarray(src[first])
            c_in, c_out = min(w.shape[2], s.shape[2]), min(w.shape[3], s.shape[3])
            s = s[..., :c_out]
            w[:, :, :c_in, :c_out] = s.sum(2, keepdims=True) if c_in == 1 else s[:, :, :c_in]
            out[first], n = w, n + 1
        self.variables = jax.tree.map(jnp.asarray, flax.traverse_util.unflatten_dict(out))
        if n == len(dst) and self.names == {i: str(i) for i in range(self.nc)} and len(meta["names"]) == self.nc:
            self.names = dict(meta["names"])
        self.ckpt_path = str(weights)
        self.pretrained = str(weights)
        self._forward = self._runner = None
        if verbose:
            print(f"Transferred {n}/{len(dst)} items from pretrained weights")
        return self

    def save(self, path: str | Path, half: bool = True, **extra) -> Path:
        """Write an Ultralytics-loadable classification checkpoint (``ultralytics.YOLO(path)`` loads and predicts)."""
        from converters.torch_weights.save import save_pt

        self._require_jax("save")
        ckpt = getattr(self, "ckpt", None) or {}
        imgsz = self.overrides.get("imgsz", 224)
        train_args = {**ckpt.get("train_args", {}), "imgsz": list(imgsz) if isinstance(imgsz, tuple) else imgsz}
        return save_pt(path, self.module, self.variables, self.cfg, self.names, train_args=train_args, half=half,
                       **extra)

    @property
    def nc(self) -> int:
        return len(self.names) if self.module is None else self.module.nc

    @property
    def model(self):
        """The Flax module (Ultralytics' ``YOLO.model`` is the torch module); None for an exported model."""
        return self.module

    def _require_jax(self, what: str) -> None:
        if self.backend is not None:
            raise ValueError(f"{self.ckpt_path}: an exported ({self.backend.fmt}) model can predict and validate but "
                             f"not {what}; use the .pt or run directory it was exported from")

    def info(self, detailed: bool = False, verbose: bool = True, imgsz=640):
        """Print the model summary (layers, parameters, GFLOPs at ``imgsz``, 640 like Ultralytics by default)."""
        if self.backend is not None:
            line = (f"{self.ckpt_path}: exported {self.backend.fmt} model, {self.nc} classes, imgsz "
                    f"{list(self.backend.imgsz)}, batch {self.backend.batch or 'dynamic'}")
            if verbose:
                print(line)
            return line
        return model_info(display_name(self.cfg), self.module, self.variables, imgsz, self.cfg["channels"],
                          detailed=detailed, verbose=verbose)

    def forward(self, images) -> np.ndarray:
        """Class probabilities ``(B, nc)`` for a batch of NHWC RGB images: uint8 in [0, 255] or float in [0, 1].

        (Ultralytics-style ``model(source)`` is ``predict``; this is the plain batch function.)"""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[None]
        ch = self.cfg.get("channels", 3)
        if x.ndim != 4 or x.shape[-1] != ch:
            raise ValueError(f"expected images shaped (B, H, W, {ch}) (NHWC), got {x.shape}")
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if self.backend is not None:
            return np.asarray(self.backend(x.transpose(0, 3, 1, 2)), dtype=np.float32)
        if self._forward is None:
            self._forward = inference_jit(lambda v, a: self.module.apply(v, a, train=False))
        return np.asarray(self._forward(self.variables, x))

    # ------------------------------------------------------------------------------------------------ modes

    def _args(self, kw: dict) -> dict:
        from jaxyolo.cli import check_args, load_cfg_file

        kw = dict(kw)
        cfg_file = kw.pop("cfg", None)
        if cfg_file:
            kw = {**load_cfg_file(str(cfg_file)), **kw}
        if isinstance(kw.get("imgsz"), list):
            kw["imgsz"] = tuple(kw["imgsz"])
        args = check_args(kw)
        select_device(args.get("device"))
        return args

    def train(self, **kwargs):
        """Train from this model (its YAML, its .pt, or the weights loaded with ``.load()``) with Ultralytics'
        arguments; afterwards this object holds the run's ``best.pt`` (like Ultralytics). Returns the
        ``ClassifyMetrics`` of the best epoch (``metrics.save_dir`` is the run directory)."""
        from jaxyolo.engine.predict import ensure_logging
        from jaxyolo.engine.train import train as run_training

        self._require_jax("train")
        args = self._args(kwargs)
        args.pop("mode", None)
        ensure_logging(bool(args.get("verbose", True)))
        if "data" not in args:
            LOGGER.info("data= not given: training on data=digits, the embedded offline dataset (Ultralytics would "
                        "download imagenet10)")
            args["data"] = "digits"
        if "imgsz" not in args and self.kind != "yaml" and self.overrides.get("imgsz"):
            args["imgsz"] = self.overrides["imgsz"]  # a checkpoint's training size, as Ultralytics keeps it
        tmp = None
        if "model" not in args:
            if self.kind == "yaml":
                args["model"] = self.source
                if getattr(self, "pretrained", None) and args.get("pretrained", True) is True:
                    args["pretrained"] = self.pretrained  # YOLO('x.yaml').load('x.pt') == model=x.yaml pretrained=x.pt
            elif self.kind == "pt":
                args["model"] = self.ckpt_path
            else:  # orbax weights: hand them to the trainer as a .pt
                import tempfile

                tmp = Path(tempfile.mkdtemp(prefix="jaxyolo_")) / "start.pt"
                self.save(tmp, half=False)
                args["model"] = str(tmp)
        try:
            metrics = run_training(args)
        finally:
            if tmp is not None:
                import shutil

                shutil.rmtree(tmp.parent, ignore_errors=True)
        save_dir = Path(metrics.save_dir)
        best = save_dir / "weights" / "best.pt"
        if best.is_file():
            self._load_pt(best)
        elif find_orbax(save_dir) is not None:
            self._load_orbax(*find_orbax(save_dir))
        self.pretrained = None
        self.metrics = metrics
        return metrics

    def val(self, **kwargs):
        """Validate on ``data`` (default: the dataset this model was trained on) at ``imgsz`` (default: its training
        size); ``split='val'`` (or 'test'), ``batch=16``. Returns ``ClassifyMetrics`` (``top1``, ``top5``, ...)."""
        from jaxyolo import data as jdata
        from jaxyolo.cfg import DEFAULT_CFG
        from jaxyolo.engine.predict import ensure_logging

        args = self._args(kwargs)
        verbose = bool(args.get("verbose", True))
        ensure_logging(verbose)
        dataset = args.get("data") or self.overrides.get("data")
        if not dataset:
            LOGGER.info("data= not given and the model remembers none: validating on data=digits")
            dataset = "digits"
        imgsz = args.get("imgsz") or self.overrides.get("imgsz") or 224
        if self.backend is not None:
            imgsz = self._backend_imgsz(imgsz)
        batch = check_batch(args.get("batch"), DEFAULT_CFG["batch"])
        ds = jdata.load_dataset(str(dataset), data_dir=args.get("data_dir"))
        split = ds.resolve_split(str(args.get("split") or "val"))
        if ds.nc != self.nc:
            raise ValueError(f"the model has {self.nc} classes but dataset {dataset!r} has {ds.nc}; validate on the "
                             f"dataset the model was trained on")
        if self.backend is not None:
            from jaxyolo.engine.val import validate_exported

            metrics = validate_exported(self._get_runner(), self.nc, ds, split, imgsz, batch,
                                        cache=args.get("cache", False), workers=int(args.get("workers", 0)))
        else:
            from jaxyolo.engine.val import validate

            metrics = validate(self.module, self.variables, ds, split, imgsz, batch, cache=args.get("cache", False),
                               workers=int(args.get("workers", DEFAULT_CFG["workers"])))
        if verbose:
            LOGGER.info(f"{'classes':>22}{'top1_acc':>11}{'top5_acc':>11}")
            LOGGER.info(f"{'all':>22}{metrics.top1:>11.3g}{metrics.top5:>11.3g}")
            LOGGER.info(f"{ds.source} {split}: {metrics.n} images, imgsz={imgsz}; top1 {metrics.top1:.6g}, top5 "
                        f"{metrics.top5:.6g}, loss {metrics.loss:.6g}; "
                        f"Speed: {metrics.speed.get('inference', 0.0):.1f}ms per image")
        if args.get("plots", DEFAULT_CFG["plots"]) and metrics.confusion_matrix is not None:
            self._save_val_plots(metrics, ds.names, args, verbose)
        self.metrics = metrics
        return metrics

    @staticmethod
    def _save_val_plots(metrics, names: dict, args: dict, verbose: bool) -> None:
        """``runs/classify/val[-N]/confusion_matrix{,_normalized}.png`` like ``yolo classify val``;
        ``metrics.save_dir`` is that directory."""
        from jaxyolo.utils import plots
        from jaxyolo.utils.files import run_dir

        save_dir = run_dir(args.get("project"), args.get("name"), "val", bool(args.get("exist_ok", False)))
        save_dir.mkdir(parents=True, exist_ok=True)
        plots.try_plot(plots.plot_confusion_matrix, metrics.confusion_matrix, names, save_dir)
        metrics.save_dir = save_dir
        if verbose:
            LOGGER.info(f"Results saved to {save_dir}")

    def _backend_imgsz(self, imgsz):
        from jaxyolo.engine.predict import parse_imgsz

        fixed = tuple(self.backend.imgsz)
        want = parse_imgsz(imgsz)
        if want != fixed and not (self.backend.meta or {}).get("dynamic"):
            LOGGER.warning(f"WARNING: imgsz={list(want)} differs from the exported model's input {list(fixed)}; "
                           f"using {list(fixed)}")
            want = fixed
        return want[0] if want[0] == want[1] else want

    def _get_runner(self):
        from jaxyolo.engine.predict import BackendRunner, JaxRunner

        if self._runner is None:
            self._runner = BackendRunner(self.backend) if self.backend is not None else JaxRunner(self.module,
                                                                                                  self.variables)
        return self._runner

    def predict(self, source=None, stream: bool = False, **kwargs):
        """Classify ``source`` (image path, folder, glob, list, ``.txt`` list, numpy BGR array, PIL image, video).

        Returns a list of ``Results`` (a generator with ``stream=True``). ``imgsz`` defaults to the training size,
        ``batch`` to 16; ``save=True`` writes annotated images to runs/classify/predict[-N], ``save_txt=True``
        ``labels/<image>.txt`` (the top-5 as ``"<conf> <name>"`` lines), ``verbose=False`` silences the per-image
        lines."""
        from jaxyolo.engine import predict as P

        args = self._args(kwargs)
        if source is None:
            source = args.get("source")
        imgsz = args.get("imgsz") or self.overrides.get("imgsz") or 224
        if self.backend is not None:
            imgsz = self._backend_imgsz(imgsz)
        it = P.predict(self._get_runner(), self.names, source, imgsz=imgsz, batch=check_batch(args.get("batch"), 16),
                       save=bool(args.get("save", False)), save_txt=bool(args.get("save_txt", False)),
                       save_conf=bool(args.get("save_conf", False)), project=args.get("project"),
                       name=args.get("name"), exist_ok=bool(args.get("exist_ok", False)),
                       verbose=bool(args.get("verbose", True)), vid_stride=int(args.get("vid_stride", 1)),
                       show=bool(args.get("show", False)))
        return it if stream else list(it)

    def __call__(self, source=None, stream: bool = False, **kwargs):
        """``model(source, **kw)`` = ``model.predict(source, **kw)``, as in Ultralytics."""
        return self.predict(source, stream=stream, **kwargs)

    def export(self, format: str = "torchscript", **kwargs) -> str:
        """Export to ``format`` (Ultralytics' names: torchscript, onnx, openvino, engine, coreml, saved_model, pb,
        tflite, edgetpu, tfjs, paddle, ncnn); returns the output path. ``imgsz`` defaults to the training size."""
        from converters.export.core import export as run_export

        self._require_jax("export")
        args = self._args(kwargs)
        fmt = args.pop("format", None) or format
        imgsz = args.pop("imgsz", None)
        batch = check_batch(args.pop("batch", None), 1)
        keep = ("half", "int8", "dynamic", "simplify", "opset", "workspace", "optimize", "keras", "nms", "data")
        extra = {k: args[k] for k in keep if k in args}
        return run_export(self, fmt, imgsz=imgsz, batch=batch, **extra)

    def benchmark(self, **kwargs):
        """Export to every format available here, validate and time each (Ultralytics' ``model.benchmark``):
        ``data`` (default: the training dataset, else digits), ``imgsz`` (default: the training size), ``half``,
        ``int8``, ``format`` (one format, or a comma list), ``verbose`` (True: fail on any failed format; a float:
        also a floor on top-1). Prints the table; returns the rows (see ``jaxyolo.engine.benchmark``)."""
        from jaxyolo.engine.benchmark import benchmark as run_benchmark

        self._require_jax("be benchmarked")
        verbose = kwargs.pop("verbose", False)  # may be a float floor, which the bool-typed cfg key would reject
        args = self._args(kwargs)
        args.pop("mode", None)
        args.pop("model", None)
        return run_benchmark(self, verbose=verbose, **args)

    def __repr__(self) -> str:
        if self.backend is not None:
            return f"YOLO({self.ckpt_path}, exported {self.backend.fmt}, nc={self.nc}, task={self.task})"
        return f"YOLO({display_name(self.cfg)}, nc={self.nc}, task={self.task})"
