"""Why the CPU train step is not faster than Ultralytics': jaxyolo's 3x3 convolutions vs PyTorch's oneDNN, per pass.

    python benchmarks/profile_cpu_conv.py [--batch 32] [--threads 2]

Times yolov8n-cls@224's 3x3 convolutions (the stride-2 stem aside, a direct sum on CPU) as ``nn.Conv`` runs them on
XLA:CPU (``nn.cpu_conv.conv_impl``; forward under the inference options, input and kernel gradients under the
trainer's) and as PyTorch runs them (NCHW, oneDNN: ``conv2d`` and ``convolution_backward``), same threads, same
process. Columns: ms per call for each side and pass; the last line sums them over the model (each shape times its
count). Prints a table; nothing is appended to RESULTS.md (the findings are summarised there by hand).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (count in the model, map size, in channels, out channels, stride): yolov8n-cls at 224
SHAPES = [(1, 112, 16, 32, 2), (2, 56, 16, 16, 1), (1, 56, 32, 64, 2), (4, 28, 32, 32, 1), (1, 28, 64, 128, 2),
          (4, 14, 64, 64, 1), (1, 14, 128, 256, 2), (2, 7, 128, 128, 1)]


def _time(fn, reps: int = 8) -> float:
    r = fn()
    getattr(r, "block_until_ready", lambda: None)()
    t = time.perf_counter()
    for _ in range(reps):
        r = fn()
    getattr(r, "block_until_ready", lambda: None)()
    return (time.perf_counter() - t) / reps * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    import jax

    import jaxyolo.engine  # noqa: F401  (jaxyolo's XLA:CPU settings, as in training)
    from jaxyolo.nn.cpu_conv import conv_impl
    from jaxyolo.nn.cpu_options import inference_compiler_options, train_compiler_options

    inf, tr = inference_compiler_options(), train_compiler_options()
    cols = ("jax fwd", "torch", "jax dx", "torch", "jax dw", "torch")
    print(f"{'layer (count x NxHxW Cin->Cout s)':<34}" + "".join(f"{c:>9}" for c in cols))
    total = np.zeros(len(cols))
    for count, h, ci, co, s in SHAPES:
        x = np.random.rand(a.batch, h, h, ci).astype(np.float32)
        w = np.random.rand(3, 3, ci, co).astype(np.float32)
        impl = conv_impl(3, s, 1, 1, (h, h), ci) or jax.lax.conv_general_dilated

        def conv(x, w):
            return impl(x, w, (s, s), ((1, 1), (1, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

        xj, wj = jax.numpy.asarray(x), jax.numpy.asarray(w)
        g = jax.numpy.asarray(np.random.rand(*jax.eval_shape(conv, xj, wj).shape).astype(np.float32))
        fwd = jax.jit(conv, compiler_options=inf)
        dx = jax.jit(lambda x, w, g: jax.vjp(lambda a: conv(a, w), x)[1](g)[0], compiler_options=tr)
        dw = jax.jit(lambda x, w, g: jax.vjp(lambda b: conv(x, b), w)[1](g)[0], compiler_options=tr)
        xt, wt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
        gt = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())

        def tback(mask):
            return torch.ops.aten.convolution_backward(gt, xt, wt, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, mask)

        with torch.no_grad():
            r = [_time(lambda: fwd(xj, wj)), _time(lambda: torch.nn.functional.conv2d(xt, wt, stride=s, padding=1)),
                 _time(lambda: dx(xj, wj, g)), _time(lambda: tback([True, False, False])[0]),
                 _time(lambda: dw(xj, wj, g)), _time(lambda: tback([False, True, False])[1])]
        total += count * np.array(r)
        print(f"{f'{count} x {a.batch}x{h}x{h} {ci}->{co} s{s}':<34}" + "".join(f"{v:>9.2f}" for v in r), flush=True)
    print(f"{'model total (x count)':<34}" + "".join(f"{v:>9.1f}" for v in total))


if __name__ == "__main__":
    main()
