"""Why the CPU train step is slower than Ultralytics': XLA:CPU convolutions vs PyTorch's oneDNN, layer by layer.

    python benchmarks/profile_cpu_conv.py [--batch 32] [--threads 2]

Times single convolutions with the shapes of yolov8n-cls at 224 (forward, and forward+backward w.r.t. input and
kernel) in JAX (jit, NHWC/HWIO, Flax's layout) and in PyTorch (NCHW, oneDNN), same threads, same process. The ratio
column is JAX time / torch time (> 1: JAX slower). Prints a table; nothing is appended to RESULTS.md (the findings are
summarised there by hand).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

# (batch is set on the command line) spatial size, in channels, out channels, kernel, stride: yolov8n-cls at 224
SHAPES = [(112, 16, 32, 3, 2), (56, 32, 32, 3, 1), (56, 32, 64, 1, 1), (28, 64, 64, 3, 1), (14, 128, 128, 3, 1),
          (7, 256, 256, 3, 1), (7, 256, 1280, 1, 1)]


def _time(fn, sync, reps: int = 10) -> float:
    sync(fn())
    t = time.perf_counter()
    for _ in range(reps):
        r = fn()
    sync(r)
    return (time.perf_counter() - t) / reps * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    import jax
    import jax.numpy as jnp

    print(f"{'layer (NxHxW Cin->Cout kKsS)':<32}{'jax fwd ms':>11}{'torch fwd':>10}{'ratio':>7}"
          f"{'jax f+b ms':>12}{'torch f+b':>10}{'ratio':>7}")
    for h, ci, co, k, s in SHAPES:
        x = np.random.rand(a.batch, h, h, ci).astype(np.float32)
        w = np.random.rand(k, k, ci, co).astype(np.float32)
        pad = [(k // 2, k // 2)] * 2

        def conv(x, w):
            return jax.lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))

        fj = jax.jit(conv)
        gj = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
        xj, wj = jnp.asarray(x), jnp.asarray(w)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())

        def ft():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, stride=s, padding=k // 2)

        def gt():
            xg, wg = xt.clone().requires_grad_(), wt.clone().requires_grad_()
            (torch.nn.functional.conv2d(xg, wg, stride=s, padding=k // 2) ** 2).sum().backward()
            return xg.grad

        jf = _time(lambda: fj(xj, wj), jax.block_until_ready)
        tf_ = _time(ft, lambda r: r)
        jg = _time(lambda: gj(xj, wj), jax.block_until_ready, 5)
        tg = _time(gt, lambda r: r, 5)
        name = f"{a.batch}x{h}x{h} {ci}->{co} k{k}s{s}"
        print(f"{name:<32}{jf:>11.2f}{tf_:>10.2f}{jf / tf_:>7.2f}{jg:>12.2f}{tg:>10.2f}{jg / tg:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
