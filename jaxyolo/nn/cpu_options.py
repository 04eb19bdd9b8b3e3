"""XLA:CPU compiler options of jaxyolo's executables: inference (eval steps, predict, benchmarks) and the train step,
each probed once so a jaxlib without an option keeps XLA's defaults. Each choice is measured in
benchmarks/RESULTS.md."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from jaxyolo.utils.jax_cache import OFF

_YNN_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}
_YNN_REDUCTIONS_ONLY = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
_PROBED: dict = {}


def _cpu_options(options: dict) -> dict | None:
    """``options`` on XLA:CPU when this jaxlib compiles with them (probed once with a tiny compile, so a jaxlib
    without the option gets XLA's defaults instead of an error); None on other backends."""
    backend = jax.default_backend()
    key = (backend, tuple(sorted(options.items())))
    if key not in _PROBED:
        opts = None
        if backend == "cpu":
            try:
                jax.jit(lambda a: a + 1, compiler_options=options).lower(jnp.zeros(())).compile()
                opts = dict(options)
            except Exception:  # noqa: BLE001  (an option this jaxlib does not know: keep the defaults)
                pass
        _PROBED[key] = opts
    return _PROBED[key]


_WIDE_VECTORS = {"xla_cpu_prefer_vector_width": 512}


def inference_compiler_options(quick: bool = False) -> dict | None:
    """``compiler_options`` for ``jax.jit`` of inference (eval steps, predict, benchmarks); None: XLA's defaults.

    On XLA:CPU (jaxlib 0.10) convolutions run as YNNPACK fusions, on one core: the forward pass is 1.15-1.55x faster
    on XLA's own multi-threaded (Eigen) convolutions. Its elementwise loops (BatchNorm, SiLU, concatenations) are
    generated for 512-bit vectors where the CPU has them (LLVM keeps narrower ones elsewhere): yolov8n-cls inference
    ~5% faster at 224 and 64 px, yolov8s-cls 1-2% (AMD Zen 4; benchmarks/RESULTS.md). The train step gains nothing
    from the latter and keeps the default width."""
    opts = _cpu_options(_YNN_OFF)
    wide = _cpu_options(_WIDE_VECTORS)  # probed apart: a jaxlib without it keeps the YNNPACK setting
    return _quick({**opts, **wide} if opts is not None and wide is not None else opts, quick)


def train_compiler_options(quick: bool = False) -> dict | None:
    """``compiler_options`` for ``jax.jit`` of the train step; None: XLA's defaults.

    On XLA:CPU (jaxlib 0.10): YNNPACK for reductions only (the BatchNorm statistics and their gradients, ~2x slower
    on XLA's own reductions), convolutions and dots on XLA's own multi-threaded (Eigen) kernels, where YNNPACK runs
    each on one core. yolov8n-cls and yolov8s-cls at 224, batch 32: train step ~19% faster than with XLA's defaults;
    at 64 px 5-7%; yolov8n-cls at 32 (digits) equal (benchmarks/RESULTS.md)."""
    return _quick(_cpu_options(_YNN_REDUCTIONS_ONLY), quick)


_QUICK = {"xla_backend_optimization_level": 1}
ON = ("1", "true", "on", "yes")  # JAXYOLO_QUICK_COMPILE's values that force quick compilation (utils.jax_cache.OFF: off)
QUICK_RUN_FLOP = 2e12  # training runs estimated below this many FLOPs compile ``quick`` (``quick_compile``)


def _quick(opts: dict | None, quick: bool) -> dict | None:
    """``opts`` plus LLVM's lighter optimisation level where ``quick`` (and this jaxlib takes it; XLA:CPU only)."""
    if not quick or opts is None:
        return opts
    level = _cpu_options(_QUICK)
    return {**opts, **level} if level is not None else opts


def quick_compile(params: int, imgsz, images: int) -> bool:
    """Whether a CPU training run is short enough that its compilation is most of it: then its train and eval steps
    compile at XLA's backend optimisation level 1 (``_QUICK``), ~20% less compile CPU (yolov8n-cls's digits step: 5.1
    -> 4.1 CPU-s), and the README's digits job starts ~1.2 s sooner, its step equally fast at 32 px; at 64 px the step
    is ~8% slower (benchmarks/RESULTS.md, session 34), which longer runs would pay for many times over. The run's
    training FLOPs are estimated as 3 x 6e-3 x parameters x pixels per image x ``images`` (images over all epochs;
    a forward pass costs 3e-3 to 9e-3 FLOPs per parameter and pixel across yolov8/yolo11 n-x, 10 or 1000 classes);
    quick below ``QUICK_RUN_FLOP`` (2 TFLOP: ~15 s of steps on 2 cores; the digits job: 0.4 TFLOP).
    ``JAXYOLO_QUICK_COMPILE=1`` / ``0`` forces it on / off (any other value is refused, naming the ones taken)."""
    forced = os.environ.get("JAXYOLO_QUICK_COMPILE", "").strip().lower()
    if forced in ON:
        return True
    if forced in OFF:
        return False
    if forced:
        raise ValueError(f"JAXYOLO_QUICK_COMPILE={os.environ['JAXYOLO_QUICK_COMPILE']!r}: expected one of "
                         f"{', '.join(ON)} (on), {', '.join(OFF)} (off), or unset (short runs only)")
    if jax.default_backend() != "cpu":
        return False
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    return 3 * 6e-3 * params * h * w * images < QUICK_RUN_FLOP
