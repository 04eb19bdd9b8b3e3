"""``jaxyolo`` command line: Ultralytics' ``yolo [TASK] MODE key=value ...`` syntax for classification.

Parsing follows Ultralytics' rules: ``key=value`` pairs (spaces around ``=`` merged, bracket fragments joined), values
through ``smart_value`` (``imgsz=224,192`` -> ``(224, 192)``), a bare boolean key sets True, leading ``--`` and trailing
``,`` are stripped with a warning, ``cfg=file.yaml`` supplies defaults that the other arguments override, unknown keys
fail with the closest valid key. User mistakes end with one ``jaxyolo: error: ...`` line on stderr and exit code 1
(set ``JAXYOLO_TRACEBACK=1`` to see the traceback). This module imports nothing heavy until a mode runs.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import sys
from pathlib import Path

import jaxyolo
from jaxyolo.cfg import (DEFAULT_CFG, DEFAULT_CFG_PATH, ConfigKeyError, check_keys, check_values,
                         quantize_flags, smart_value)
from jaxyolo.utils.device import select_device

LOGGER = logging.getLogger("jaxyolo")

MODES = ("train", "val", "predict", "export", "track", "benchmark")
TASKS = ("detect", "segment", "semantic", "depth", "classify", "pose", "obb")
SPECIAL = ("help", "checks", "version", "settings", "cfg", "copy-cfg", "login", "logout", "solutions")

# Ultralytics arguments that mean nothing for classification: accepted (so scripts written for Ultralytics run) and
# ignored with a warning.
IGNORED_KEYS = ("conf", "iou", "max_det", "agnostic_nms", "classes", "retina_masks", "rect", "augment", "visualize",
                "embed", "save_crop", "show_boxes", "show_labels", "show_conf", "line_width", "save_frames",
                "stream_buffer", "save_json", "overlap_mask", "mask_ratio", "multi_scale", "close_mosaic", "mosaic",
                "mixup", "cutmix", "copy_paste", "box", "cls", "dfl", "pose", "kobj", "profile", "time", "tracker",
                "cache_images", "val_period", "compile",
                # Ultralytics 8.4: detection/segmentation/pose/OBB/depth losses and augmentations, its class-name
                # remapping of detection heads, torch memory format, OpenCV DNN for ONNX (jaxyolo runs onnxruntime)
                "cls_pw", "cls_remap", "rle", "angle", "dlog", "dgrad", "dlam", "shear", "perspective", "bgr",
                "copy_paste_mode", "channels_last", "dnn", "dis")
# keys whose values are not type-checked against the default's type (several types are valid)
_FREE_KEYS = {"imgsz", "cache", "pretrained", "resume", "device", "model", "data", "source", "project", "name",
              "freeze", "opset", "workspace", "auto_augment", "split", "format", "mode", "task", "optimizer",
              "data_dir"}

HELP = """jaxyolo {version}: Ultralytics YOLO image classification in JAX/Flax (offline: nothing is ever downloaded).

Usage: jaxyolo [TASK] MODE key=value ...          (the syntax of Ultralytics' `yolo` command)
    TASK       classify (optional: the only task jaxyolo has)
    MODE       train | val | predict | export | benchmark
    key=value  Ultralytics' argument names and defaults (list them with `jaxyolo cfg`), e.g. imgsz=224 batch=64

Each mode, and the Ultralytics command it stands for:
  train    jaxyolo classify train data=digits model=yolov8n-cls.yaml epochs=100 imgsz=64
           = yolo classify train data=mnist160 model=yolov8n-cls.yaml epochs=100 imgsz=64
           data= an image folder (train/ val/ [test/] of class folders), 'digits' (embedded, the default) or
           tfds:<name>; model= a model YAML, a .pt to fine-tune, or a YAML plus pretrained=<.pt>.
           Writes runs/classify/train[-N]/: weights/best.pt + last.pt (Ultralytics-loadable), results.csv, args.yaml
  val      jaxyolo classify val model=runs/classify/train/weights/best.pt
           = yolo classify val model=path/to/best.pt       (data and imgsz default to the ones it was trained with)
  predict  jaxyolo classify predict model=runs/classify/train/weights/best.pt source=path/to/images save_txt=True
           = yolo classify predict model=path/to/best.pt source=path/to/images save_txt=True
           source= an image, a folder, a glob, a .txt list of paths or a video; annotated images go to
           runs/classify/predict[-N]/ (save=False to skip), save_txt=True writes labels/<image>.txt (top-5 lines)
  export   jaxyolo export model=runs/classify/train/weights/best.pt format=onnx imgsz=224
           = yolo export model=path/to/best.pt format=onnx imgsz=224
           format= torchscript (default), onnx, openvino, engine, coreml, saved_model, pb, tflite, edgetpu, tfjs,
           paddle, ncnn. Exported models predict and validate too: jaxyolo predict model=best.onnx source=img.jpg
  benchmark jaxyolo benchmark model=runs/classify/train/weights/best.pt data=digits imgsz=32 [format=onnx] [half]
           = yolo benchmark model=path/to/best.pt data=mnist160 imgsz=32
           exports to every format available on this machine, validates and times each, prints a table (format,
           status, size MB, top-1, ms/image, FPS) and writes it to runs/classify/benchmark[-N]/benchmarks.log + .csv.
           model= is required; data= defaults to the model's training dataset (else digits), imgsz= to its training
           size (224 for a model YAML); format= limits it to one format (or a comma list, e.g. format=jax,onnx);
           verbose=0.9 fails unless every validated format reaches top-1 0.9

model= also accepts a run directory (uses weights/best.pt), a run's checkpoints/ folder (orbax, EMA weights) and an
exported model (best.onnx, best_openvino_model/, ...).

Special commands:
    jaxyolo help        this message
    jaxyolo version     the jaxyolo version
    jaxyolo checks      library versions, devices, and which export back-ends are installed
    jaxyolo cfg         the default arguments (cfg/default.yaml)
    jaxyolo copy-cfg    copy them to ./default_copy.yaml; edit it and pass cfg=default_copy.yaml

Python: from jaxyolo import YOLO; YOLO('yolov8n-cls.yaml').train(data='digits', epochs=3, imgsz=32) (see README)."""


class CLIError(ValueError):
    """A command line that cannot be run as written."""


# ------------------------------------------------------------------------------------------------- argument checks


def check_args(overrides: dict, source: str = "arguments", warn_ignored: bool = True) -> dict:
    """Validate keys (closest-key suggestion) and value types; drop detection-only keys with a warning."""
    out = {}
    for k, v in overrides.items():
        if k in IGNORED_KEYS:
            if warn_ignored:
                LOGGER.warning(f"WARNING: '{k}={v}' has no effect on classification; ignored")
            continue
        out[k] = str(v) if k in ("project", "name") and v is not None else v
    if out.pop("distill_model", None) is not None:  # (Ultralytics 8.4)
        raise CLIError(f"distill_model={overrides['distill_model']}: knowledge distillation is not available in "
                       f"jaxyolo")
    check_keys(out, source)
    for k, v in out.items():
        d = DEFAULT_CFG.get(k)
        if v is None or k in _FREE_KEYS or d is None:
            continue
        if isinstance(d, bool):
            if not isinstance(v, bool):
                raise CLIError(f"'{k}={v}' is of invalid type {type(v).__name__}: '{k}' must be a bool "
                               f"(i.e. '{k}=True' or '{k}=False')")
        elif isinstance(d, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise CLIError(f"'{k}={v}' is of invalid type {type(v).__name__}: '{k}' must be a number "
                               f"(e.g. '{k}={d}')")
        elif isinstance(d, int):
            if isinstance(v, float) and v.is_integer():  # 'epochs=1e2', as Ultralytics takes it
                out[k] = v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise CLIError(f"'{k}={v}' is of invalid type {type(v).__name__}: '{k}' must be an int "
                               f"(e.g. '{k}={d}')")
    try:
        check_values(out)
        q = out.pop("quantize", None)
        if q is not None:  # Ultralytics 8.4's precision argument wins over half/int8
            out["half"], out["int8"] = quantize_flags(q)
    except ValueError as e:
        raise CLIError(str(e)) from None
    task = out.get("task")
    if task is not None and task != "classify":
        raise CLIError(not_classify_message(task))
    return out


def not_classify_message(task) -> str:
    return (f"task={task}: jaxyolo supports only image classification (task=classify, models like "
            f"yolov8n-cls.yaml / yolo11n-cls.pt); detection, segmentation, pose and OBB are not available")


# ---------------------------------------------------------------------------------------------------------- parsing


def merge_equals_args(args: list[str]) -> list[str]:
    """``['imgsz', '=', '32']``, ``['imgsz=', '32']``, ``['imgsz', '=32']`` -> ``['imgsz=32']``; bracket fragments
    (``['imgsz=[224,', '192]']``) are joined."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "=" and out and i + 1 < len(args):
            a = f"{out.pop()}={args[i + 1]}"
            i += 1
        elif a.endswith("=") and i + 1 < len(args) and "=" not in args[i + 1]:
            a += args[i + 1]
            i += 1
        elif a.startswith("=") and out:
            a = out.pop() + a
        out.append(a)
        i += 1
    joined: list[str] = []
    buf, depth = "", 0
    for a in out:
        depth += a.count("[") - a.count("]")
        buf += a
        if depth <= 0:
            joined.append(buf)
            buf, depth = "", 0
    if buf:
        raise CLIError(f"unmatched '[' in '{buf}'")
    return joined


def parse_args(args: list[str]) -> tuple[dict, str | None]:
    """Command-line words -> (overrides, special command or None)."""
    overrides: dict = {}
    cfg_file = None
    for a in merge_equals_args(args):
        if a.startswith("--"):
            LOGGER.warning(f"WARNING: argument '{a}' does not require leading dashes '--', updating to '{a[2:]}'.")
            a = a[2:]
        if a.endswith(","):
            LOGGER.warning(f"WARNING: argument '{a}' does not require trailing comma ',', updating to '{a[:-1]}'.")
            a = a[:-1]
        if "=" in a:
            k, v = (s.strip() for s in a.split("=", 1))
            if not k:
                raise CLIError(f"'{a}': missing the key before '='")
            if not v:
                raise CLIError(f"missing '{k}' value: write '{k}=<value>'")
            if k == "cfg":
                cfg_file = v
            else:
                overrides[k] = smart_value(v)
        elif a in TASKS:
            overrides["task"] = a
        elif a in MODES:
            overrides["mode"] = a
        elif a.lower() in SPECIAL:
            return overrides, a.lower()
        elif a in DEFAULT_CFG and isinstance(DEFAULT_CFG[a], bool):
            overrides[a] = True
        elif a in DEFAULT_CFG:
            raise CLIError(f"'{a}' is a valid jaxyolo argument but is missing an '=' sign to set its value, "
                           f"i.e. try '{a}={DEFAULT_CFG[a]}'")
        else:
            close = difflib.get_close_matches(a, [*MODES, *TASKS, *SPECIAL, *DEFAULT_CFG], n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise CLIError(f"'{a}' is not a valid jaxyolo mode, task, command or argument{hint} "
                           f"(see 'jaxyolo help')")
    if cfg_file is not None:
        overrides = {**load_cfg_file(cfg_file), **overrides}
    return overrides, None


def load_cfg_file(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"cfg={path}: no such file")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise CLIError(f"cfg={path}: malformed YAML: {' '.join(str(e).split())}") from None
    if not isinstance(d, dict):
        raise CLIError(f"cfg={path}: expected a mapping of argument names to values")
    d.pop("cfg", None)
    check_keys({k: v for k, v in d.items() if k not in IGNORED_KEYS}, f"cfg={path}")
    return {k: (tuple(v) if k == "imgsz" and isinstance(v, list) else v) for k, v in d.items()}


# ---------------------------------------------------------------------------------------------- special commands


def print_help() -> None:
    print(HELP.format(version=jaxyolo.__version__))


def print_cfg() -> None:
    print(f"# {DEFAULT_CFG_PATH}")
    print(DEFAULT_CFG_PATH.read_text().rstrip())


def copy_cfg() -> None:
    dst = Path.cwd() / "default_copy.yaml"
    shutil.copy2(DEFAULT_CFG_PATH, dst)
    print(f"{DEFAULT_CFG_PATH} copied to {dst}\nExample: jaxyolo cfg={dst.name} imgsz=320 batch=8")


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_PROBE = ("import importlib, sys\n"
          "m = importlib.import_module(sys.argv[1])\n"
          "print(getattr(m, '__version__', ''))\n")


def _probe_imports(modules: list[str], timeout: float = 120) -> dict[str, tuple[bool, str]]:
    """Import each module in its own subprocess (some back-ends crash the interpreter on import, e.g. coremltools
    on Linux builds), a few at a time; returns {module: (ok, reason)}."""
    import importlib.util
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def one(mod: str) -> tuple[bool, str]:
        try:
            if importlib.util.find_spec(mod) is None:
                return False, "not installed"
        except (ImportError, ValueError):
            return False, "not installed"
        try:
            p = subprocess.run([sys.executable, "-c", _PROBE, mod], capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        except subprocess.TimeoutExpired:
            return False, f"import took over {timeout:.0f}s"
        if p.returncode == 0:
            return True, ""
        if p.returncode < 0 or p.returncode > 128:
            sig = -p.returncode if p.returncode < 0 else p.returncode - 128
            return False, f"the import crashes the interpreter (signal {sig})"
        last = (p.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, " ".join(last.split())[:110]

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as ex:
        return dict(zip(modules, ex.map(one, modules)))


def checks() -> None:
    import platform

    print(f"jaxyolo {jaxyolo.__version__}  Python-{platform.python_version()}  {platform.system()} "
          f"{platform.machine()}  ({os.cpu_count()} CPUs)")
    print("\nCore libraries:")
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tensorflow", "tensorflow-datasets",
                 "torch", "pillow"):
        print(f"  {dist:<20} {_version(dist) or 'not installed'}")
    try:
        import jax

        devs = jax.devices()
        kinds = sorted({f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in devs})
        print(f"\nDevices: {len(devs)} x {', '.join(kinds)} (default backend: {jax.default_backend()}, "
              f"{jax.process_count()} process(es))")
    except Exception as e:  # noqa: BLE001
        print(f"\nDevices: JAX cannot start: {e}")
    print("\nExport back-ends (format=...: package, whether it imports here):")
    rows = [("torchscript", "torch", "torch"), ("onnx", "onnx", "onnx"),
            ("(onnx inference)", "onnxruntime", "onnxruntime"), ("openvino", "openvino", "openvino"),
            ("engine", "tensorrt", "tensorrt"), ("coreml", "coremltools", "coremltools"),
            ("paddle", "paddle", "paddlepaddle"), ("ncnn", "ncnn", "ncnn"), ("(ncnn convert)", "pnnx", "pnnx"),
            ("saved_model/pb/tflite", "tensorflow", "tensorflow"), ("tfjs", "tensorflowjs", "tensorflowjs")]
    probed = _probe_imports([module for _, module, _ in rows])
    for fmt, module, dist in rows:
        ok, why = probed[module]
        ver = _version(dist)
        state = f"yes ({ver})" if ok else (f"no: {why}" if ver else "no (not installed)")
        print(f"  {fmt:<22} {module:<14} {state}")
    try:  # format=tfjs runs tensorflowjs in its own virtual environment (see converters/export/tfjs.py)
        from converters.export import tfjs

        venv = tfjs.tools_dir() / "tfjs-venv"
        ready = (venv / tfjs.MARKER).is_file()
        state = f"ready at {venv}" if ready else f"not created yet (the first format=tfjs export builds {venv})"
    except Exception as e:  # noqa: BLE001
        state = f"unknown ({type(e).__name__}: {e})"
    print(f"  {'tfjs environment':<22} {'(venv)':<14} {state}")
    tpu = shutil.which("edgetpu_compiler")
    print(f"  {'edgetpu':<22} {'(PATH)':<14} {tpu or 'no edgetpu_compiler on PATH'}")


# ------------------------------------------------------------------------------------------------------- the modes


def run_mode(overrides: dict) -> int:
    from jaxyolo.engine.predict import ensure_logging

    verbose = overrides.get("verbose", True)
    ensure_logging(bool(verbose) if isinstance(verbose, bool) else True)
    floor = None  # benchmark's verbose=<float>: a floor on every validated format's top-1 (as in Ultralytics)
    if overrides.get("mode") == "benchmark" and isinstance(verbose, float):
        overrides, floor = {k: v for k, v in overrides.items() if k != "verbose"}, verbose
    args = check_args(overrides, "command line")
    select_device(args.get("device"))  # before anything starts JAX's backends (device=cpu picks the platform)
    args.pop("task", None)
    mode = args.pop("mode", None)
    if mode is None:
        if args.get("source") is not None:
            LOGGER.warning(f"WARNING: 'mode' argument is missing. Valid modes are {list(MODES[:4])}. "
                           f"Using 'mode=predict'.")
            mode = "predict"
        else:
            print_help()
            if args:
                raise CLIError("no mode given: add train, val, predict or export (e.g. 'jaxyolo classify val "
                               "model=best.pt')")
            return 0
    if mode == "track":
        raise CLIError("mode=track is not available in jaxyolo (tracking is for detection models); modes: train, "
                       "val, predict, export, benchmark")
    if mode not in MODES:
        close = difflib.get_close_matches(str(mode), MODES[:4], n=1)
        raise CLIError(f"mode={mode} is not a valid mode" + (f"; did you mean '{close[0]}'?" if close else "")
                       + " (modes: train, val, predict, export)")

    if mode == "predict":
        if args.get("source") is None:
            raise CLIError("source= is required for predict, e.g. source=path/to/image.jpg or source=path/to/folder "
                           "(Ultralytics' sample images are not shipped)")
        from jaxyolo.engine.predict import resolve_source

        src = args["source"]
        if not isinstance(src, (list, tuple)):
            args["source"] = src = str(src)
        resolve_source(src)  # a missing path fails now, before the model is loaded
    model = args.pop("model", None)
    if model is None:
        if mode != "train":
            raise CLIError(f"model= is required for {mode}, e.g. 'jaxyolo classify {mode} "
                           f"model=runs/classify/train/weights/best.pt' (jaxyolo cannot download pretrained weights)")
        model = "yolov8n-cls.yaml"
        LOGGER.info("model= not given: training a new yolov8n-cls.yaml (Ultralytics would download yolo26n-cls.pt)")

    from jaxyolo.engine.model import YOLO

    yolo = YOLO(str(model))
    if mode == "train":
        if "data" not in args:
            LOGGER.info("data= not given: using data=digits, the embedded offline dataset (Ultralytics would "
                        "download imagenet10)")
            args["data"] = "digits"
        yolo.train(**args)
    elif mode == "val":
        yolo.val(**args)
    elif mode == "predict":
        args.setdefault("save", True)  # like Ultralytics' CLI: annotated images are saved unless save=False
        for _ in yolo.predict(stream=True, **args):
            pass
    elif mode == "export":
        if "format" not in args:
            LOGGER.info("format= not given: exporting to torchscript (Ultralytics' default)")
        print(yolo.export(**args))
    elif mode == "benchmark":
        from jaxyolo.engine.benchmark import BenchmarkFailure

        if floor is not None:
            args["verbose"] = floor
        try:
            yolo.benchmark(**args)  # prints the table; writes runs/classify/benchmark[-N]/benchmarks.log + .csv
        except BenchmarkFailure as e:
            raise CLIError(str(e)) from None
    return 0


def _user_errors() -> tuple:
    import pickle

    errs = [ValueError, KeyError, OSError, ImportError, pickle.UnpicklingError]
    try:
        from jaxyolo.engine.train import TrainingError

        errs.append(TrainingError)
    except Exception:  # noqa: BLE001
        pass
    try:
        from converters.export.core import ExportError

        errs.append(ExportError)
    except Exception:  # noqa: BLE001
        pass
    return tuple(errs)


def _one_line(e: BaseException) -> str:
    if isinstance(e, KeyError) and not isinstance(e, ConfigKeyError) and e.args:
        msg = str(e.args[0])
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def entrypoint(argv: list[str] | None = None) -> int:
    """Run ``jaxyolo ...``; returns the exit code (0 ok, 1 user error, 130 interrupted)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print_help()
        return 0
    try:
        overrides, special = parse_args(args)
        if special is not None:
            if special == "help":
                print_help()
            elif special == "version":
                print(jaxyolo.__version__)
            elif special == "checks":
                checks()
            elif special == "cfg":
                print_cfg()
            elif special == "copy-cfg":
                copy_cfg()
            else:
                raise CLIError(f"'{special}' is an Ultralytics account/settings command with no jaxyolo equivalent "
                               f"(see 'jaxyolo help')")
            return 0
        return run_mode(overrides)
    except KeyboardInterrupt:
        print("jaxyolo: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        if os.environ.get("JAXYOLO_TRACEBACK") or not isinstance(e, (CLIError, ConfigKeyError, *_user_errors())):
            raise
        print(f"jaxyolo: error: {_one_line(e)}", file=sys.stderr)
        return 1


def main() -> None:
    """The ``jaxyolo`` console script: run, then exit without the interpreter's final garbage-collection walk."""
    code = entrypoint()
    skip_final_gc()
    sys.exit(code)


def skip_final_gc() -> None:
    """Call just before a CLI process exits. The interpreter's last garbage collection walks every object still alive
    (TensorFlow, JAX and torch leave ~0.4 million), about 1-1.5 s on a small CPU; ``gc.freeze()`` moves them out of
    its reach. Nothing is skipped that matters: files are closed by then, atexit handlers and module teardown still
    run, and only this exiting process is affected (never call it from library code)."""
    import gc

    gc.freeze()


if __name__ == "__main__":
    main()
