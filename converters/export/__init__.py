"""Export chain: one module per format, each with ``export(...)`` and ``load(...)``, registered in ``formats.FORMATS``.

    from converters.export import export
    path = export(YOLO("best.pt"), "onnx", imgsz=224)
"""

from converters.export.core import ExportError, export  # noqa: F401
