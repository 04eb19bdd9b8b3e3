"""``python -m converters.export --to FORMAT --weights W [--imgsz N|H,W] [--batch B] [--dynamic] [--half] [--int8]
[--data D] [--opset N] [--simplify/--no-simplify] [--workspace GB] [--out-dir DIR]``."""

from __future__ import annotations

import argparse
import sys

from converters.export.formats import FORMATS


def _imgsz(v: str):
    parts = [int(p) for p in v.replace("x", ",").split(",") if p]
    return parts[0] if len(parts) == 1 else tuple(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.export", description=__doc__)
    ap.add_argument("--to", required=True, help=f"format: {', '.join(f.arg for f in FORMATS)}")
    ap.add_argument("--weights", required=True, help="a .pt, a model YAML, a run directory or an orbax checkpoint")
    ap.add_argument("--imgsz", type=_imgsz, default=None, help="default: the training size stored with the weights")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dynamic", action="store_true")
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--data", default=None, help="calibration data for int8 (dataset like training's data=)")
    ap.add_argument("--opset", type=int, default=None)
    ap.add_argument("--simplify", action=argparse.BooleanOptionalAction, default=None,
                    help="onnxslim the ONNX graph (formats that take it; default on, as Ultralytics)")
    ap.add_argument("--workspace", type=float, default=None)
    ap.add_argument("--out-dir", default=None)
    a = ap.parse_args(argv)
    from converters.export.core import ExportError, export
    from jaxyolo import YOLO

    try:
        path = export(YOLO(a.weights), a.to, imgsz=a.imgsz, batch=a.batch, dynamic=a.dynamic, half=a.half,
                      int8=a.int8, data=a.data, opset=a.opset, simplify=a.simplify, workspace=a.workspace,
                      out_dir=a.out_dir)
    except (ExportError, ValueError, FileNotFoundError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
