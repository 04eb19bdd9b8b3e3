"""CoreML export: TorchScript trace of the torch mirror (BatchNorm folded) -> ``coremltools.convert`` (ML program).

The frontend is coremltools' PyTorch (TorchScript) one, as in Ultralytics' exporter: coremltools has no ONNX frontend,
and the jax2tf SavedModel's single ``XlaCallModule`` op is not convertible. Output: ``<stem>.mlpackage`` with

* input ``image``: an RGB ``ImageType`` of the export size, ``scale=1/255`` (the model sees [0, 1] like every other
  format); batch 1 (CoreML classifiers take one image);
* a classifier head (``ClassifierConfig`` with the class names): outputs ``classLabel`` (top-1 name) and a
  probabilities dictionary (name -> probability);
* ``user_defined_metadata``: Ultralytics' metadata dict with ``str()`` values (its ``AutoBackend`` reads names/imgsz
  from there), plus description/author/license/version in the model description.

Precision: fp32 compute by default; ``half=True`` computes in fp16; ``int8=True`` palettizes weights to 8 bits
(k-means).
Running a CoreML model needs macOS; here ``load`` raises a clear error and the tests check the converted spec only
(``describe``).

Process isolation: coremltools imports TensorFlow, and TensorFlow loaded before triton (which torchvision pulls in
through ``torch._dynamo``) segfaults the process. So coremltools is imported only after torchvision: in this process
when TensorFlow is not loaded yet (or triton already is), else in a fresh ``python -m converters.export.coreml`` child.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from converters.export.core import ExportError
from converters.export.metadata import metadata_strings, parse_metadata_strings
from jaxyolo.engine.backends import Backend

LOGGER = logging.getLogger("jaxyolo")
TIMEOUT_S = 600


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _check_installed():
    if importlib.util.find_spec("coremltools") is None:
        raise ExportError("format=coreml needs the 'coremltools' package; install it with "
                          "pip install 'jaxyolo[export]'")


def _child(*args: str) -> str:
    """Run ``python -m converters.export.coreml ARGS`` (coremltools in a fresh process); returns its stdout."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        r = subprocess.run([sys.executable, "-m", "converters.export.coreml", *args], capture_output=True, text=True,
                           env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"coremltools did not finish within {TIMEOUT_S} s") from None
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise ExportError(f"coremltools failed (exit {r.returncode}):\n{tail}")
    return r.stdout


def _in_process_ok() -> bool:
    """coremltools can be imported here without the TensorFlow-before-triton crash."""
    if "coremltools" in sys.modules or "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return True
    return "tensorflow" not in sys.modules  # then _import_coremltools loads torchvision (triton) first


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, half: bool = False, int8: bool = False, **_) -> None:
    _check_installed()
    import torch

    from converters.export.torchscript import trace

    if batch != 1:
        LOGGER.warning(f"format=coreml exports batch 1 (CoreML classifiers take one image), not batch={batch}")
    ts, im = trace(yolo, imgsz, 1)
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent) as d:
        pt, job = Path(d) / "model.torchscript", Path(d) / "job.json"
        torch.jit.save(ts, str(pt))
        spec = {"torchscript": str(pt), "out": str(out), "shape": list(im.shape), "meta": meta, "half": bool(half),
                "int8": bool(int8)}
        if _in_process_ok():
            _convert_job(spec)
        else:
            job.write_text(json.dumps(spec))
            _child("convert", str(job))
    if not out.exists():
        raise ExportError(f"coremltools wrote nothing at {out}")


def describe(path: Path) -> dict:
    """What the ``.mlpackage`` declares (readable on any OS): type, input image, outputs, class labels, metadata."""
    _check_installed()
    if _in_process_ok():
        d = _describe_dict(str(path))
    else:
        d = json.loads(_child("describe", str(path)).strip().splitlines()[-1])
    d["metadata"] = parse_metadata_strings(d["user_defined_metadata"])
    return d


def read_metadata(path: Path) -> dict:
    return describe(path)["metadata"]


def load(path: Path) -> Backend:
    if platform.system() != "Darwin":
        raise ExportError(f"{path}: running a CoreML model needs macOS (coremltools cannot predict on "
                          f"{platform.system()}); converters.export.coreml.describe reads what it declares")
    import numpy as np
    from PIL import Image

    with _quiet():
        import coremltools as ct

        model = ct.models.MLModel(str(path))
    spec = model.get_spec()
    meta = parse_metadata_strings(dict(spec.description.metadata.userDefined))
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    index = {v: k for k, v in names.items()}
    prob_key = spec.description.predictedProbabilitiesName

    def run(x):
        outs = []
        for img in x:
            pil = Image.fromarray(np.clip(img.transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8))
            probs = model.predict({"image": pil})[prob_key]
            row = np.zeros(len(names), np.float32)
            for k, v in probs.items():
                row[index[str(k)]] = v
            outs.append(row)
        return np.stack(outs)

    imgsz = tuple(meta.get("imgsz") or (224, 224))
    return Backend("coreml", names, (int(imgsz[0]), int(imgsz[1])), run, batch=1, meta=meta)


# ----------------------------------------------------------------------------------------------------------------------
# coremltools side (in this process when that is safe, else in a child)
# ----------------------------------------------------------------------------------------------------------------------

def _import_coremltools():
    with contextlib.suppress(ImportError):  # triton (via torchvision) must load before TensorFlow, which coremltools
        import torchvision  # noqa: F401     imports: the other order segfaults (their bundled LLVMs clash)
    with _quiet():  # coremltools warns about untested torch/TF versions on import
        import coremltools as ct
    return ct


def _convert(job_path: str) -> None:
    _convert_job(json.loads(Path(job_path).read_text()))


def _convert_job(job: dict) -> None:
    import torch

    ct = _import_coremltools()
    meta = job["meta"]
    ts = torch.jit.load(job["torchscript"], map_location="cpu").eval()
    names = meta.get("names") or {}
    labels = [str(names[k]) for k in sorted(names, key=int)]
    image = ct.ImageType("image", shape=tuple(job["shape"]), scale=1 / 255, bias=[0, 0, 0],
                         color_layout=ct.colorlayout.RGB)
    with _quiet():
        model = ct.convert(ts, inputs=[image], classifier_config=ct.ClassifierConfig(labels), convert_to="mlprogram",
                           compute_precision=ct.precision.FLOAT16 if job["half"] else ct.precision.FLOAT32)
        if job["int8"]:
            from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights

            model = palettize_weights(model, OptimizationConfig(OpPalettizerConfig(mode="kmeans", nbits=8)))
    model.short_description = str(meta.get("description", ""))
    model.author = str(meta.get("author", ""))
    model.license = str(meta.get("license", ""))
    model.version = str(meta.get("version", ""))
    model.user_defined_metadata.update(metadata_strings(meta))
    model.user_defined_metadata["com.apple.coreml.model.preview.type"] = "imageClassifier"
    model.save(job["out"])


def _describe(path: str) -> None:
    print(json.dumps(_describe_dict(path)))


def _describe_dict(path: str) -> dict:
    ct = _import_coremltools()
    spec = ct.utils.load_spec(path)
    desc = spec.description
    inp = desc.input[0]
    kind = spec.WhichOneof("Type")
    labels, ops = [], []
    if kind == "mlProgram":  # the classifier labels live in the program's classify op
        main = spec.mlProgram.functions["main"]
        ops = [op.type for op in main.block_specializations[main.opset].operations]
        for op in main.block_specializations[main.opset].operations:
            if op.type == "classify":
                labels = [v for item in op.inputs["classes"].arguments[0].value.immediateValue.list.values
                          for v in item.immediateValue.tensor.strings.values]
    out = {
        "type": kind,
        "spec_version": spec.specificationVersion,
        "input": {"name": inp.name, "kind": inp.type.WhichOneof("Type"),
                  "width": inp.type.imageType.width, "height": inp.type.imageType.height,
                  "color_space": ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(
                      inp.type.imageType.colorSpace)},
        "outputs": [o.name for o in desc.output],
        "predicted_feature": desc.predictedFeatureName,
        "predicted_probabilities": desc.predictedProbabilitiesName,
        "class_labels": labels,
        "ops": ops,
        "user_defined_metadata": dict(desc.metadata.userDefined),
        "author": desc.metadata.author,
        "license": desc.metadata.license,
    }
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("convert", "describe"):
        {"convert": _convert, "describe": _describe}[sys.argv[1]](sys.argv[2])
    else:
        raise SystemExit(f"usage: python -m {__spec__.name} convert JOB.json | describe MODEL.mlpackage")
