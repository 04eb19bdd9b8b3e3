"""TensorFlow GraphDef (``.pb``) export: the plain-op SavedModel (``saved_model.py``: ONNX -> onnx2tf) frozen into one
``GraphDef`` with ``convert_variables_to_constants_v2``: weights become constants, functions are inlined.

Graph: placeholder ``x`` float32 ``[batch, H, W, 3]`` **NHWC** RGB in [0, 1] (static batch) -> ``Identity``
``[batch, nc]`` softmax probabilities -- the node names Ultralytics' ``AutoBackend`` feeds and fetches (``x:0``, and the
graph's one unconsumed node). There is no metadata slot in a GraphDef, so Ultralytics' metadata dict (plus
``input_layout``) is stored as JSON in a ``_metadata`` string attribute of the ``x`` node (attributes starting with
``_`` are allowed on any op and ignored by the runtime); ``load`` reads it from there. Ultralytics' own reader looks for
``metadata.yaml`` in a sibling ``<stem>_saved_model/`` directory instead: export ``saved_model`` next to the ``.pb`` if
Ultralytics should see the class names.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

INPUT_NODE, META_ATTR = "x", "_metadata"


def freeze(saved_model_dir: Path):
    """``GraphDef`` of a SavedModel's ``serving_default`` signature with an ``x`` input and constants for weights."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(saved_model_dir))  # keep it alive: the signature only references its variables
    fn = loaded.signatures["serving_default"]
    (key, spec), = fn.structured_input_signature[1].items()
    out_key = next(iter(fn.structured_outputs))
    wrapped = tf.function(lambda x: fn(**{key: x})[out_key]).get_concrete_function(
        tf.TensorSpec(spec.shape, tf.float32, name=INPUT_NODE))
    gd = convert_variables_to_constants_v2(wrapped).graph.as_graph_def()
    del loaded
    return gd


def export(yolo, out: Path, *, imgsz, batch, meta) -> None:
    from converters.export import saved_model

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="pb_", dir=out.parent) as d:
        sm = Path(d) / "model_saved_model"
        saved_model.build(yolo, sm, imgsz=imgsz, batch=batch)
        gd = freeze(sm)
    write(gd, meta, out)


def write(gd, meta: dict, out: Path) -> None:
    """Serialize a frozen graph with the metadata in its input node's ``_metadata`` attribute."""
    node = next(n for n in gd.node if n.name == INPUT_NODE)
    node.attr[META_ATTR].s = json.dumps({**meta, "input_layout": "NHWC"}).encode()
    Path(out).write_bytes(gd.SerializeToString())


def read_graph(path: Path):
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(Path(path).read_bytes())
    return gd


def read_metadata(gd) -> dict:
    for n in gd.node:
        if n.name == INPUT_NODE and META_ATTR in n.attr:
            return json.loads(n.attr[META_ATTR].s.decode())
    return {}


def load(path: Path):
    import tensorflow as tf

    from jaxyolo.engine.backends import Backend

    gd = read_graph(path)
    meta = read_metadata(gd)
    consumed = {i.split(":")[0].lstrip("^") for n in gd.node for i in n.input}
    outputs = sorted(n.name for n in gd.node if n.name not in consumed and n.op not in ("NoOp", "Placeholder"))
    if len(outputs) != 1:
        raise ValueError(f"{path}: expected one output node, found {outputs}")
    x_node = next(n for n in gd.node if n.name == INPUT_NODE)
    shape = [int(d.size) for d in x_node.attr["shape"].shape.dim]
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
    fn = wrapped.prune(wrapped.graph.as_graph_element(f"{INPUT_NODE}:0"),
                       wrapped.graph.as_graph_element(f"{outputs[0]}:0"))

    def run(x):
        return fn(tf.constant(x.transpose(0, 2, 3, 1))).numpy()

    imgsz = tuple(meta.get("imgsz") or shape[1:3])
    names = {int(k): str(v) for k, v in (meta.get("names") or {}).items()}
    if not names:  # a GraphDef from elsewhere: number the classes
        import numpy as np

        nc = run(np.zeros((max(shape[0], 1), shape[3], shape[1], shape[2]), np.float32)).shape[-1]
        names = {i: str(i) for i in range(nc)}
    return Backend("pb", names, (int(imgsz[0]), int(imgsz[1])), run, batch=shape[0] if shape[0] > 0 else None,
                   meta=meta)
