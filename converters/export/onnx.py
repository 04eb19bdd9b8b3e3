"""ONNX export: Flax variables -> torch mirror (BatchNorm folded) -> ``torch.onnx.export`` -> checked ``.onnx``.

Why this route and not a JAX-native converter: the Flax model is NHWC, and a direct JAX->ONNX conversion (jax2onnx)
has to present Ultralytics' NCHW ``images`` input, so its graph carries ~21 Transpose nodes around convolutions and
pools; it also pins ``orbax-checkpoint<0.11.37``, which conflicts with the trainer's orbax. The torch mirror
(``converters/torch_weights/mirror.py``) is built from the same resolved layer specs as the Flax model, in NCHW, so
tracing it gives a transpose-free graph -- the same ops Ultralytics' own exporter produces from its fused model
(Conv, Sigmoid+Mul, Split/Concat, Add, GlobalAveragePool, Flatten, Gemm, Softmax; YOLO11's attention adds its
Reshape/MatMul/Transpose). Every artifact is checked against the JAX model in the tests, not against the mirror.

Graph interface (what Ultralytics' exporter writes and its ``AutoBackend`` expects):
    input  ``images``  float32 NCHW RGB in [0, 1], shape (batch, 3, h, w); ``dynamic`` makes batch/height/width symbolic
    output ``output0`` float32 (batch, nc) softmax probabilities
    ``metadata_props``: Ultralytics' keys with ``str()`` values (names, imgsz, task, batch, stride, args, ...)

Options: ``opset`` (default 18; the exporter's ReduceMean/Split forms need >= 13), ``simplify`` (onnxslim, if
installed), ``half`` (float16 weights and compute with float32 inputs/outputs, as Ultralytics' CPU fp16 export does, via
onnxruntime's float16 converter). ``onnx.checker.check_model(full_check=True)`` must pass before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from converters.export.core import ExportError, require
from converters.export.metadata import metadata_strings, parse_metadata_strings
from jaxyolo.engine.backends import Backend

LOGGER = logging.getLogger("jaxyolo")
DEFAULT_OPSET = 18
MIN_OPSET = 13  # Split with a `split` input, Softmax over one axis
MAX_IR_VERSION = 10  # like Ultralytics: loadable by onnxruntime >= 1.16


@contextlib.contextmanager
def _quiet():
    """Silence the torch exporter's deprecation/tracer warnings and its stdout chatter."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def torch_to_onnx(model, im, path: Path, *, opset: int, dynamic: bool) -> None:
    """Trace a torch module to ONNX with Ultralytics' I/O names (TorchScript-based exporter, ``dynamo=False``)."""
    import torch

    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch"}} if dynamic else None
    with _quiet(), torch.no_grad():
        torch.onnx.export(model, im, str(path), dynamo=False, opset_version=int(opset), do_constant_folding=True,
                          input_names=["images"], output_names=["output0"], dynamic_axes=axes)


def build_onnx(yolo, imgsz, batch: int, *, dynamic: bool = False, opset: int | None = None, simplify: bool = True,
               half: bool = False, meta: dict | None = None, workdir: Path | None = None):
    """The model as a checked ``onnx.ModelProto`` (also the input of the OpenVINO and TensorRT exports)."""
    import tempfile

    onnx = require("onnx", "onnx", "export")
    require("torch", "onnx", "export")
    from converters.export.torch_graph import example_input, inference_module

    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < MIN_OPSET:
        raise ExportError(f"opset={opset} is too old for this graph; use opset >= {MIN_OPSET} (default "
                          f"{DEFAULT_OPSET})")
    model = inference_module(yolo)
    im = example_input(batch, imgsz, int(yolo.cfg.get("channels", 3)))
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        tmp = Path(d) / "model.onnx"
        try:
            torch_to_onnx(model, im, tmp, opset=opset, dynamic=dynamic)
        except Exception as e:  # unsupported opset, exporter bugs: say which step failed
            raise ExportError(f"torch.onnx.export failed at opset {opset}: {type(e).__name__}: {e}") from e
        proto = onnx.load(str(tmp))
    if simplify:
        proto = _simplify(proto)
    if half:
        proto = _to_float16(proto)
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    proto.producer_name, proto.producer_version = "jaxyolo", _version()
    if meta:
        del proto.metadata_props[:]
        for k, v in metadata_strings(meta).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported ONNX graph failed onnx.checker: {e}") from e
    return proto


def _version() -> str:
    import jaxyolo

    return str(jaxyolo.__version__)


def _simplify(proto):
    try:
        import onnxslim
    except ImportError:
        LOGGER.info("onnxslim is not installed; the ONNX graph is written unsimplified (pip install 'jaxyolo[export]')")
        return proto
    try:
        with _quiet():
            return onnxslim.slim(proto)
    except Exception as e:  # simplification is an optimisation: never fail the export over it
        LOGGER.warning(f"onnxslim failed ({type(e).__name__}: {e}); keeping the unsimplified graph")
        return proto


def _to_float16(proto):
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise ExportError("half=True for ONNX needs onnxruntime's float16 converter; install it with "
                          "pip install 'jaxyolo[export]'") from None
    with _quiet():
        proto = convert_float_to_float16(proto, keep_io_types=True)
    toposort(proto.graph)  # the converter appends its input/output Casts at the end of the node list
    return proto


def toposort(graph) -> None:
    """Reorder ``graph.node`` topologically in place (stable: keeps the original order where it is already valid)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes, ordered = list(graph.node), []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in known for i in n.input):
                ordered.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            raise ExportError(f"ONNX graph has a cycle or dangling inputs at node {rest[0].name!r}")
        nodes = rest
    del graph.node[:]
    graph.node.extend(ordered)


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, half: bool = False, dynamic: bool = False,
           simplify: bool = True, opset: int | None = None, **_) -> None:
    onnx = require("onnx", "onnx", "export")
    proto = build_onnx(yolo, imgsz, batch, dynamic=bool(dynamic), opset=opset,
                       simplify=True if simplify is None else bool(simplify), half=bool(half), meta=meta,
                       workdir=Path(out).parent)
    onnx.save(proto, str(out))


def read_metadata(path: Path) -> dict:
    onnx = require("onnx", "onnx", "export")
    proto = onnx.load(str(path), load_external_data=False)
    return parse_metadata_strings({p.key: p.value for p in proto.metadata_props})


def session(path: Path, threads: int | None = None):
    ort = require("onnxruntime", "onnx", "export")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load(path: Path) -> Backend:
    meta = read_metadata(path)
    sess = session(path)
    inp = sess.get_inputs()[0]
    b = inp.shape[0]
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or [d if isinstance(d, int) else 224 for d in inp.shape[2:4]])
    in_name, out_name = inp.name, sess.get_outputs()[0].name

    def run(x):
        return sess.run([out_name], {in_name: x})[0]

    return Backend("onnx", names, (int(imgsz[0]), int(imgsz[1])), run, batch=b if isinstance(b, int) else None,
                   meta=meta)
