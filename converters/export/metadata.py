"""Ultralytics-style export metadata (the dict AutoBackend reads): names, imgsz, task, batch, args, ..."""

from __future__ import annotations

import ast
import datetime
import json
from pathlib import Path

import yaml

import jaxyolo


def build_metadata(yolo, imgsz: tuple[int, int], batch: int, args: dict) -> dict:
    stem = Path(str(yolo.cfg.get("yaml_file", "model"))).stem
    pretty = stem.replace("yolo", "YOLO", 1) if stem.startswith("yolo") else stem
    data = (getattr(yolo, "overrides", {}) or {}).get("data")
    return {
        "description": f"jaxyolo {pretty} model" + (f" trained on {data}" if data else ""),
        "author": "jaxyolo",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "version": f"jaxyolo {jaxyolo.__version__}",
        "license": "Apache-2.0",
        "docs": "https://github.com/jaxyolo/jaxyolo",
        "stride": 1,
        "task": "classify",
        "batch": int(batch),
        "imgsz": [int(imgsz[0]), int(imgsz[1])],
        "names": {int(k): str(v) for k, v in yolo.names.items()},
        "args": dict(args),
        "channels": int(yolo.cfg.get("channels", 3)),
        "end2end": False,
    }


def metadata_strings(meta: dict) -> dict[str, str]:
    """For string-only metadata slots (ONNX metadata_props, TFLite): values as str(), like Ultralytics."""
    return {k: str(v) for k, v in meta.items()}


def parse_metadata_strings(d: dict[str, str]) -> dict:
    """Inverse of ``metadata_strings`` (Ultralytics' AutoBackend does the same literal_eval)."""
    out = dict(d)
    for k in ("stride", "batch", "channels", "imgsz", "names", "args", "end2end"):
        if k in out and isinstance(out[k], str):
            try:
                out[k] = ast.literal_eval(out[k])
            except (ValueError, SyntaxError):
                pass
    return out


def write_metadata_yaml(directory: Path, meta: dict) -> Path:
    p = Path(directory) / "metadata.yaml"
    p.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return p


def read_metadata_yaml(directory: Path) -> dict:
    p = Path(directory) / "metadata.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{directory}: no metadata.yaml (names/imgsz unknown); was it exported by jaxyolo or "
                                f"Ultralytics?")
    return yaml.safe_load(p.read_text())


def to_json(meta: dict) -> str:
    return json.dumps(meta)
