"""TensorRT export: the ONNX graph (``converters/export/onnx.py``) -> TensorRT ONNX parser -> serialized ``.engine``.

UNVERIFIED HERE. TensorRT cannot be installed on the machines this project is developed and tested on: the PyPI
``tensorrt*`` packages are stubs that download the real wheels from NVIDIA's own index, and the GPU machine's image has
no TensorRT. This module is written against the documented TensorRT 10 Python API (``OnnxParser``,
``Builder.build_serialized_network``, named-tensor execution with ``execute_async_v3``) and its test builds an engine
only where ``tensorrt`` and a CUDA GPU exist; elsewhere a clear ``ExportError`` says so.

File layout (what Ultralytics writes and its ``AutoBackend`` reads): a 4-byte little-endian length, that many bytes of
UTF-8 JSON metadata (names, imgsz, task, ...), then the serialized engine.

Options: ``half`` builds with FP16 kernels allowed (``BuilderFlag.FP16``; on TensorRT versions without that flag the
ONNX graph itself is converted to fp16 with fp32 I/O and the network is built strongly typed); ``dynamic`` gives an
optimisation profile over the batch (1 .. ``batch``, optimum ``batch // 2``) at the export image size; ``workspace``
caps the builder's workspace in GiB. fp32 engines are built with TF32 off (TensorRT turns it on by default on Ampere and
newer GPUs), so they match the JAX model. Engines are specific to the GPU model and TensorRT version they were built
with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from converters.export.core import ExportError
from jaxyolo.engine.backends import Backend

LOGGER = logging.getLogger("jaxyolo")
NOT_INSTALLABLE = ("TensorRT cannot be installed here: its PyPI packages download from NVIDIA's index; install it on a "
                   "machine with an NVIDIA GPU")


def _tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ExportError(f"format=engine needs the 'tensorrt' package ({e}); pip install 'jaxyolo[tensorrt]'. "
                          f"{NOT_INSTALLABLE}") from None
    return trt


def _require_cuda():
    import torch

    if not torch.cuda.is_available():
        raise ExportError("format=engine needs an NVIDIA GPU with CUDA (TensorRT builds and runs engines on the GPU)")
    return torch


def _major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def build_engine(onnx_bytes: bytes, *, input_shape: tuple[int, ...], half: bool, dynamic: bool,
                 workspace: float | None, strongly_typed: bool = False) -> bytes:
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    if workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(float(workspace) * (1 << 30)))
    flags = 0
    if _major(trt) < 10:  # explicit batch is the only mode (and the flag deprecated) from TensorRT 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the ONNX graph: {errors}")
    if dynamic:
        b, *rest = input_shape
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, (1, *rest), (max(1, b // 2), *rest), (max(1, b), *rest))
        config.add_optimization_profile(profile)
    if half and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    elif not half and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 engines compute in fp32 (TF32 would cost ~1e-3 of accuracy)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(engine)


def export(yolo, out: Path, *, imgsz, batch: int, meta: dict, half: bool = False, dynamic: bool = False,
           simplify: bool = True, workspace: float | None = None, **_) -> None:
    trt = _tensorrt()
    _require_cuda()
    from converters.export.onnx import build_onnx

    fp16_graph = bool(half) and not hasattr(trt.BuilderFlag, "FP16")  # TensorRT 11: precision comes from the graph
    proto = build_onnx(yolo, imgsz, batch, dynamic=bool(dynamic), simplify=True if simplify is None else simplify,
                       half=fp16_graph)
    shape = (int(batch), int(yolo.cfg.get("channels", 3)), int(imgsz[0]), int(imgsz[1]))
    engine = build_engine(proto.SerializeToString(), input_shape=shape, half=bool(half), dynamic=bool(dynamic),
                          workspace=workspace, strongly_typed=fp16_graph)
    header = json.dumps(meta).encode()
    with open(out, "wb") as f:
        f.write(len(header).to_bytes(4, byteorder="little", signed=True))
        f.write(header)
        f.write(engine)


def read_engine_file(path: Path) -> tuple[dict, bytes]:
    """(metadata, engine bytes); metadata is empty for an engine without the Ultralytics header."""
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:4], byteorder="little", signed=True)
    if 0 < n <= len(data) - 4:
        try:
            return json.loads(data[4:4 + n].decode()), data[4 + n:]
        except (UnicodeDecodeError, ValueError):
            pass
    return {}, data


def load(path: Path) -> Backend:
    trt = _tensorrt()
    torch = _require_cuda()
    import numpy as np

    meta, blob = read_engine_file(path)
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    if engine is None:
        raise ExportError(f"{path}: TensorRT could not deserialize the engine (built for another GPU or TensorRT "
                          f"version?)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    outp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    in_shape = tuple(engine.get_tensor_shape(inp))
    dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
    in_dtype = dtypes[engine.get_tensor_dtype(inp)]
    out_dtype = dtypes[engine.get_tensor_dtype(outp)]
    stream = torch.cuda.Stream()
    device = torch.device("cuda")

    def run(x):
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=in_dtype)
        context.set_input_shape(inp, tuple(xt.shape))
        y = torch.empty(tuple(context.get_tensor_shape(outp)), dtype=out_dtype, device=device)
        context.set_tensor_address(inp, xt.data_ptr())
        context.set_tensor_address(outp, y.data_ptr())
        stream.wait_stream(torch.cuda.current_stream())  # the host->device copy above ran on the current stream
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{path}: TensorRT inference failed")
        stream.synchronize()
        return y.float().cpu().numpy()

    class_names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    imgsz = tuple(meta.get("imgsz") or in_shape[2:4])
    batch = in_shape[0] if in_shape[0] > 0 else None
    return Backend("engine", class_names, (int(imgsz[0]), int(imgsz[1])), run, batch=batch, meta=meta)
