"""A model from a training run's orbax checkpoint (``YOLO('runs/classify/train/checkpoints')``): the EMA weights
in full precision, with the architecture rebuilt from the run's ``args.yaml`` and the class names from its weights or
dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def find_orbax(path: Path) -> tuple[Path, int] | None:
    """``(checkpoints_dir, step)`` when ``path`` is a run directory with ``checkpoints/``, a ``checkpoints/`` folder
    (newest step) or one step's folder; else None."""
    path = Path(path)
    if (path / "state").is_dir() and path.name.isdigit():
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.is_dir():
        return None
    steps = [int(d.name) for d in path.iterdir() if d.name.isdigit() and (d / "state").is_dir()]
    return (path, max(steps)) if steps else None


@dataclass
class OrbaxModel:
    module: object
    cfg: dict
    variables: dict
    names: dict
    args: dict  # the run's args.yaml ({} when there is none)


def _shapes(tree) -> dict:
    import flax

    return {k: tuple(np.shape(v)) for k, v in flax.traverse_util.flatten_dict(tree).items()}


def load_orbax_model(ckpt_dir: Path, step: int) -> OrbaxModel:
    import yaml

    from jaxyolo.engine.checkpoint import read_ema
    from jaxyolo.nn.build import build_model

    ema = read_ema(ckpt_dir, step)
    run = Path(ckpt_dir).parent
    args = {}
    if (run / "args.yaml").is_file():
        args = yaml.safe_load((run / "args.yaml").read_text()) or {}
    heads = [k for k, v in ema["params"].items() if isinstance(v, dict) and "linear" in v]
    if not heads:
        raise ValueError(f"{ckpt_dir}: the checkpoint has no Classify head (no 'linear' layer)")
    nc = int(np.shape(ema["params"][heads[0]]["linear"]["kernel"])[1])
    src = str(args.get("model") or "yolov8n-cls.yaml")
    want = _shapes(ema)
    candidates = []
    if src.endswith(".pt") and Path(src).is_file():
        from converters.torch_weights.load import load_pt

        _, _, meta = load_pt(src)
        candidates = [(meta["cfg"], legacy) for legacy in (meta["legacy_nc_width"], not meta["legacy_nc_width"])]
    elif src.endswith((".yaml", ".yml")):
        candidates = [(src, False), (src, True)]
    for c, legacy in candidates:
        m, cf = build_model(c, nc=nc, legacy_nc_width=legacy)
        shapes = jax.eval_shape(lambda k, m=m, cf=cf: m.init(k, jnp.zeros((1, 32, 32, cf["channels"]))),
                                jax.ShapeDtypeStruct((2,), jnp.uint32))
        if _shapes({"params": shapes["params"], "batch_stats": shapes["batch_stats"]}) == want:
            return OrbaxModel(m, cf, jax.tree.map(jnp.asarray, ema), _names(run, args, nc), args)
    raise ValueError(f"{ckpt_dir}: cannot rebuild the architecture of this checkpoint (args.yaml model={src!r} does "
                     f"not match the stored weights)")


def _names(run: Path, args: dict, nc: int) -> dict:
    """The class names of the run: from its weights/last.pt or best.pt, else its dataset, else '0', '1', ..."""
    for w in ("last.pt", "best.pt"):
        f = run / "weights" / w
        if f.is_file():
            try:
                from converters.torch_weights.load import read_model_state

                _, m, _ = read_model_state(f)
                names = m.__dict__.get("names")
                if isinstance(names, (list, tuple)):
                    names = dict(enumerate(names))
                if isinstance(names, dict) and len(names) == nc:
                    return {int(k): str(v) for k, v in names.items()}
            except Exception:  # noqa: BLE001 - names are a convenience; fall through
                pass
    if args.get("data"):
        try:
            from jaxyolo.data import load_dataset

            ds = load_dataset(str(args["data"]), data_dir=args.get("data_dir"))
            if ds.nc == nc:
                return dict(ds.names)
        except Exception:  # noqa: BLE001
            pass
    return {i: str(i) for i in range(nc)}
