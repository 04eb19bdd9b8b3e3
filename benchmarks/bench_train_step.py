"""Train-step and inference throughput: jaxyolo (jit) vs Ultralytics' torch model, same machine, same run.

    python benchmarks/bench_train_step.py --models yolov8n-cls --imgsz 224,64 --batch 32            # CPU
    python benchmarks/bench_train_step.py --models yolov8s-cls,yolov8m-cls --imgsz 224 --batch 256 --bf16   # GPU

A train step is forward + backward + optimizer update (SGD, Ultralytics' parameter groups, clip, EMA) on a
synthetic uint8 batch already on the device, so the numbers measure the model step, not the input pipeline
(see bench_data.py for that). Ultralytics' side is its own ClassificationModel with torch SGD, under AMP autocast on
GPU (fp16 + GradScaler, Ultralytics' default) or fp32 on CPU. MFU = 3 x forward FLOPs per image x images/s / peak.
Each measurement is the median of --repeats timings of --steps steps. Appends rows to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
import jax.numpy as jnp
import numpy as np

from jaxyolo.engine import optim
from jaxyolo.engine.model import init_variables
from jaxyolo.engine.steps import create_state, make_train_step
from jaxyolo.nn.build import build_model
from jaxyolo.nn.modules import inference_compiler_options
from jaxyolo.nn.summary import gflops

import _results as R  # noqa: E402  (benchmarks/_results.py)

PEAK_BF16 = {"H200": 790e12, "H100": 790e12}  # measured dense bf16 matmul ceiling on this workplace's Hopper GPUs


def _timeit(fn, steps: int, repeats: int) -> float:
    """Median seconds per step."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(steps)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def jax_train(model_name: str, imgsz: int, batch: int, bf16: bool, steps: int, repeats: int, nc: int = 1000):
    module, cfg = build_model(f"{model_name}.yaml", nc=nc)
    dtype = jnp.bfloat16 if bf16 else jnp.float32
    module = module.clone(dtype=dtype)
    variables = init_variables(module, 0)
    args = dict(batch=batch, nbs=64, epochs=100, weight_decay=5e-4, optimizer="SGD", lr0=0.01, momentum=0.937,
                warmup_bias_lr=0.1, warmup_epochs=0.0, warmup_momentum=0.8, lrf=0.01, cos_lr=False)
    recipe = optim.resolve_recipe(args, nc, 100000, 1000)
    tx = optim.build_tx(recipe, variables["params"])
    state = create_state(variables, tx)
    step = jax.jit(make_train_step(module, tx, 0.0, dtype), donate_argnums=(0,))
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.integers(0, 256, (batch, imgsz, imgsz, 3), dtype=np.uint8))
    y = jax.device_put(rng.integers(0, nc, (batch,), dtype=np.int32))
    hp = jnp.asarray([0.01, 0.01, 0.01, 0.937, 1.0], jnp.float32)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    state, loss = step(state, x, y, hp, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    holder = {"s": state}

    def run(n):
        s = holder["s"]
        for _ in range(n):
            s, l = step(s, x, y, hp, key)
        l.block_until_ready()
        holder["s"] = s

    run(2)
    sec = _timeit(run, steps, repeats)
    fwd = jax.jit(lambda v, a: module.apply(v, a.astype(dtype) / 255), compiler_options=inference_compiler_options())
    v = {"params": holder["s"].params, "batch_stats": holder["s"].batch_stats}
    fwd(v, x).block_until_ready()

    def infer(n):
        for _ in range(n):
            o = fwd(v, x)
        o.block_until_ready()

    inf_sec = _timeit(infer, steps, repeats)
    return {"train_img_s": batch / sec, "step_ms": sec * 1e3, "compile_s": compile_s, "infer_img_s": batch / inf_sec,
            "gflops_fwd": gflops(module, imgsz)}


def torch_train(model_name: str, imgsz: int, batch: int, amp: bool, steps: int, repeats: int, nc: int = 1000):
    import torch
    from ultralytics.nn.tasks import ClassificationModel

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = ClassificationModel(f"{model_name}.yaml", nc=nc, verbose=False).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    scaler = torch.amp.GradScaler(dev, enabled=amp and dev == "cuda")
    x = torch.randint(0, 256, (batch, 3, imgsz, imgsz), dtype=torch.uint8, device=dev)
    y = torch.randint(0, nc, (batch,), device=dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def one():
        with torch.autocast(dev, enabled=amp and dev == "cuda"):
            out = model(x.float() / 255)
            loss = torch.nn.functional.cross_entropy(out, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()

    def run(n):
        for _ in range(n):
            one()
        sync()

    run(2)
    sec = _timeit(run, steps, repeats)
    model.eval()

    def infer(n):
        with torch.inference_mode(), torch.autocast(dev, enabled=amp and dev == "cuda"):
            for _ in range(n):
                model(x.float() / 255)
        sync()

    infer(2)
    inf_sec = _timeit(infer, steps, repeats)
    return {"train_img_s": batch / sec, "step_ms": sec * 1e3, "infer_img_s": batch / inf_sec}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="yolov8n-cls")
    ap.add_argument("--imgsz", default="224,64")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="bf16 compute for jaxyolo, AMP autocast for Ultralytics")
    ap.add_argument("--no-ultralytics", action="store_true")
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    a = ap.parse_args()
    dev = jax.devices()[0]
    machine = f"{dev.device_kind} ({jax.default_backend()}), {os.cpu_count()} CPUs, {platform.python_version()}"
    versions = f"jax {jax.__version__}"
    try:
        import torch

        versions += f", torch {torch.__version__}"
        import ultralytics

        versions += f", ultralytics {ultralytics.__version__}"
    except ImportError:
        pass
    rows = []
    for name in a.models.split(","):
        for s in (int(v) for v in a.imgsz.split(",")):
            j = jax_train(name, s, a.batch, a.bf16, a.steps, a.repeats)
            t = None
            if not a.no_ultralytics:
                try:
                    t = torch_train(name, s, a.batch, a.bf16, a.steps, a.repeats)
                except ImportError as e:
                    print(f"ultralytics side skipped: {e}")
            mfu = ""
            peak = next((v for k, v in PEAK_BF16.items() if k in dev.device_kind), None)
            if peak and a.bf16:
                mfu = f"{3 * j['gflops_fwd'] * 1e9 * j['train_img_s'] / peak:.1%}"
            rows.append((name, s, a.batch, "bf16" if a.bf16 else "fp32", j, t, mfu))
            tr = f"{j['train_img_s'] / t['train_img_s']:.2f}" if t else "-"
            ir = f"{j['infer_img_s'] / t['infer_img_s']:.2f}" if t else "-"
            print(f"{name} imgsz={s} batch={a.batch}: jaxyolo train {j['train_img_s']:.1f} img/s "
                  f"(step {j['step_ms']:.1f} ms, compile {j['compile_s']:.1f} s), infer {j['infer_img_s']:.1f} img/s"
                  + (f" | ultralytics train {t['train_img_s']:.1f} img/s, infer {t['infer_img_s']:.1f} img/s | "
                     f"ratio train {tr}, infer {ir}" if t else "") + (f" | MFU {mfu}" if mfu else ""), flush=True)
    for name, s, b, p, j, t, mfu in rows:
        nums = (f"{name} @{s}, batch {b}, {p}: train {j['train_img_s']:.1f} img/s (step {j['step_ms']:.1f} ms, "
                f"compile {j['compile_s']:.1f} s)" + (f" vs Ultralytics {t['train_img_s']:.1f} img/s" if t else "")
                + f"; inference {j['infer_img_s']:.1f}" + (f" vs {t['infer_img_s']:.1f} img/s" if t else " img/s")
                + (f"; MFU {mfu}" if mfu else "") + f"; peak RSS {R.peak_rss_mib():.0f} MiB (both sides, one "
                f"process); {versions}; median of {a.repeats} x {a.steps} steps; load avg {R.load_avg():.1f}")
        ratio = (f"train {j['train_img_s'] / t['train_img_s']:.2f}x, infer {j['infer_img_s'] / t['infer_img_s']:.2f}x"
                 if t else "-")
        R.append_row(a.results, "bench_train_step" + (" (GPU)" if jax.default_backend() == "gpu" else ""), nums,
                     ratio, machine_desc=f"{platform.node()}: {machine}")

if __name__ == "__main__":
    main()
