"""Where a jaxyolo train step's time goes, op by op, on CPU or GPU: the profile behind a bench_train_step ratio.

    python benchmarks/profile_step.py --model yolov8n-cls --imgsz 224 --batch 32                 # CPU
    python benchmarks/profile_step.py --model yolov8s-cls --imgsz 224 --batch 256 --bf16         # GPU (MFU)
    python benchmarks/profile_step.py --compiler-options '{}'                                     # XLA's defaults
    python benchmarks/profile_step.py --model yolov8s-cls --imgsz 224 --batch 256 --bf16 --breakdown   # + fwd/bwd/rest
    python benchmarks/profile_step.py --one-core                  # CPU: every op's work, convolutions included

Builds the train step bench_train_step.py times (``jax_step``), compiles it, records --steps steps with
``jax.profiler`` (a Perfetto trace) and maps every timed op back to its instruction in the optimized HLO. Prints the
step time, a table by category (convolution forward / input gradient / kernel gradient, cuDNN calls by kind, dots,
and the other fusions by XLA's name for them, e.g. ``transpose_copy_fusion``) and the --top single ops with their
shapes and what they compute.
Session 15 found the 1x1 convolutions' BatchNorm backward written in a transposed layout this way (76 of 510 ms at
224 on CPU). On CPU, XLA's own convolutions (Eigen's, asynchronous) record their dispatch only, so "conv forward"
reads a few ms: time them with profile_cpu_conv.py (oneDNN's custom calls and every fusion are timed in full), or
run with --one-core: the process is pinned to one core before JAX starts, so ops run one at a time, every one is
timed in full (the trace's op total is the step), and each op's time is its work, without the other core's
contention (session 25: yolov8n-cls@224's step is ~520 ms of work, 172 of them XLA's convolutions, 102 dots).
Prints only; nothing is appended to RESULTS.md (findings go to its notes by hand).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\((.*)$", re.M)
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", re.M | re.S)


def hlo_ops(hlo: str) -> dict:
    """``{instruction name: (shape, category, detail)}`` for the optimized HLO text of one executable."""
    bodies = {m.group(1): m.group(2) for m in _COMP.finditer(hlo)}
    ops = {}
    for name, shape, opcode, rest in _INSTR.findall(hlo):
        body = f"{opcode}({rest}"
        if opcode == "fusion" and (m := re.search(r"calls=%?([\w.\-]+)", rest)):
            body = bodies.get(m.group(1), rest)
        ops[name] = (shape, *categorise(name, body))
    return ops


def categorise(name: str, body: str) -> tuple[str, str]:
    """(category, detail) of instruction ``name`` from its text and (for fusions) its fused computation: convolutions
    by direction, cuDNN and jaxyolo's oneDNN calls by kind, dots, and everything else by XLA's own name for it
    (``transpose_copy_fusion``, ``multiply_add_fusion``, ...: what the fusion computes) without the numeric suffix."""
    if m := re.search(r'custom_call_target="([^"]+)"', body):
        target = m.group(1)
        if target.startswith("JaxyoloConv"):  # jaxyolo's oneDNN kernels on XLA:CPU (jaxyolo/nn/onednn.py)
            kind = ("kernel gradient" if "BwdWeights" in target else "input gradient" if "BwdData" in target
                    else "forward")
            return f"conv {kind} (oneDNN)", target
        if "conv" in target.lower():
            kind = ("kernel gradient" if "Filter" in target else "input gradient" if "BackwardInput" in target
                    else "forward")
            return f"conv {kind} (cuDNN)", target
        return "custom call", target
    if m := re.search(r"convolution\(.*?window=\{([^}]*)\}", body):
        window = m.group(1)
        size = [int(v) for v in re.findall(r"\d+", window.split("size=")[1].split()[0])] if "size=" in window else []
        if size and max(size) > 7:  # a window the size of a feature map: the kernel gradient of a small kernel
            kind = "kernel gradient"
        elif "lhs_dilate" in window or "rhs_reversal" in window:
            kind = "input gradient"
        else:  # (a stride-1 input gradient is a forward convolution of the flipped kernel to XLA: counted here)
            kind = "forward"
        return f"conv {kind}", window
    if re.search(r"\bdot\(", body):
        return "dot", ""
    return re.sub(r"(\.\d+)+$", "", name), ""


def kernel_category(kernel: str) -> str:
    """The category of a GPU kernel XLA did not name after an HLO instruction (a library's kernel inside a command
    buffer; an XLA fusion whose kernel name is not an instruction's): cuDNN convolutions by pass (fprop/dgrad/wgrad),
    GEMMs, copies, fusions by XLA's name."""
    if re.fullmatch(r"[a-z_]*(fusion|wrapped)[a-z_]*(_\d+)?", kernel):  # an XLA fusion the HLO text names otherwise
        return re.sub(r"_\d+$", "", kernel)
    k = kernel.lower()
    if any(t in k for t in ("fprop", "dgrad", "wgrad")):
        return "conv " + next(t for t in ("fprop", "dgrad", "wgrad") if t in k) + " (cuDNN kernel)"
    if any(t in k for t in ("conv", "cudnn", "nhwc", "xmma", "implicit")):
        return "conv other (cuDNN kernel)"
    if any(t in k for t in ("nvjet", "gemm", "cublas", "splitk")):
        return "gemm (cuBLAS kernel)"
    if k.startswith(("memcpy", "memset")):
        return "memcpy/memset"
    return "other kernel"


def trace_times(trace_dir: str, ops: dict, n_steps: int) -> dict:
    """``{instruction: ms per step}`` from the Perfetto trace: complete events named after an HLO instruction (the
    executed thunks on CPU; on GPU the kernels of the device's timeline, named ``fusion_12`` for ``fusion.12``).
    GPU kernels with other names (cuDNN/cuBLAS kernels inside a command buffer) are added to ``ops`` as
    ``kernel:<name>`` with a category from their name."""
    files = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
    if not files:
        raise SystemExit(f"{trace_dir}: jax.profiler wrote no Perfetto trace")
    events = json.load(gzip.open(files[0]))["traceEvents"]
    devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
               and "/device:" in str((e.get("args") or {}).get("name", ""))}
    times = collections.Counter()
    for e in events:
        if e.get("ph") != "X" or (devices and e.get("pid") not in devices):
            continue
        args = e.get("args") or {}
        raw = e.get("name", "")
        name = next((n for n in (raw, re.sub(r"_(\d+)$", r".\1", raw), args.get("hlo_op"),
                                 args.get("long_name", "").split(" ")[0]) if n in ops), None)
        if name is None and devices:  # a library kernel: named by itself
            name = f"kernel:{raw[:70]}"
            ops.setdefault(name, ("", kernel_category(raw), raw[:60]))
        if name is not None:
            times[name] += e.get("dur", 0) / 1e3 / n_steps
    if not times:  # another backend's naming: say what the trace holds instead of printing an empty table
        common = collections.Counter(e.get("name") for e in events if e.get("ph") == "X").most_common(15)
        raise SystemExit(f"no trace event is named after an instruction of the step's HLO; the most frequent "
                         f"event names: {common}")
    return dict(times)


def profile(model: str, imgsz: int, batch: int, bf16: bool, steps: int, compiler_options=None) -> dict:
    import jax

    from bench_train_step import jax_step, step_runner

    step, state, inputs, _, _ = jax_step(model, imgsz, batch, bf16, compiler_options=compiler_options)
    compiled = step.lower(state, *inputs).compile()
    ops = hlo_ops(compiled.as_text())
    run = step_runner(compiled, state, inputs)
    run(2)
    t0 = time.perf_counter()
    run(steps)
    step_ms = (time.perf_counter() - t0) / steps * 1e3
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            run(steps)
        times = trace_times(d, ops, steps)
    return {"step_ms": step_ms, "ops": ops, "times": times, "backend": jax.default_backend()}


def breakdown(model: str, imgsz: int, batch: int, bf16: bool, steps: int, compiler_options=None) -> dict:
    """Median ms of the train-mode forward pass (loss only), forward+backward (``value_and_grad``) and the whole train
    step, each jitted alone on the same inputs: what the backward pass and the optimizer/EMA part cost, and on GPU
    whether the step waits on the host (session 16: the step took 12.9 ms where forward+backward took 9.3)."""
    import jax

    from bench_train_step import _timeit, jax_step, step_runner
    from jaxyolo.engine.steps import cross_entropy, to_input

    step, state, (x, y, hp, key), module, dtype = jax_step(model, imgsz, batch, bf16, compiler_options=compiler_options)

    def loss_fn(params, batch_stats):
        logits, new = module.apply({"params": params, "batch_stats": batch_stats}, to_input(x, dtype), train=True,
                                   mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(0)})
        return cross_entropy(logits, y).mean(), new["batch_stats"]

    from jaxyolo.nn.cpu_options import train_compiler_options

    opts = train_compiler_options() if compiler_options is None else (compiler_options or None)  # as jax_step's
    fns = {"forward": jax.jit(loss_fn, compiler_options=opts),
           "forward+backward": jax.jit(jax.value_and_grad(loss_fn, has_aux=True), compiler_options=opts)}
    out = {}
    v = jax.device_put(state.variables())  # the model's trees (the train state keeps them flat)
    for name, fn in fns.items():
        def run(n, fn=fn):
            r = None
            for _ in range(n):
                r = fn(v["params"], v["batch_stats"])
            jax.block_until_ready(r)

        run(2)
        out[name] = _timeit(run, steps, 3) * 1e3
    run_step = step_runner(step, state, (x, y, hp, key))
    run_step(2)
    out["step"] = _timeit(run_step, steps, 3) * 1e3
    return out


def breakdown_report(b: dict) -> str:
    fwd, fb, st = b["forward"], b["forward+backward"], b["step"]
    return (f"forward {fwd:.2f} ms | backward {fb - fwd:.2f} ms (forward+backward {fb:.2f}) | optimizer, clip, EMA "
            f"and anything else in the step {st - fb:.2f} ms | whole step {st:.2f} ms (medians of 3 x --steps)")


def report(r: dict, top: int) -> str:
    ops, times = r["ops"], r["times"]
    by_cat = collections.Counter()
    for name, ms in times.items():
        by_cat[ops[name][1]] += ms
    total = sum(times.values())
    lines = [f"step {r['step_ms']:.1f} ms (wall, {r['backend']}); ops in the trace {total:.1f} ms per step "
             f"({len(times)} ops timed; on CPU the ops of one step can overlap, on GPU the wall time beyond them is idle)",
             f"{'category':<34}{'ms/step':>10}{'share':>8}"]
    lines += [f"{cat:<34}{ms:>10.2f}{ms / max(total, 1e-9):>8.1%}" for cat, ms in by_cat.most_common(2 * top)]
    lines.append(f"top {top} ops:")
    for name, ms in sorted(times.items(), key=lambda kv: -kv[1])[:top]:
        shape, cat, detail = ops[name]
        lines.append(f"  {ms:8.2f} ms  {name[:40]:<40} {cat:<28} {shape[:40]:<40} {detail[:60]}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="yolov8n-cls")
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bf16", action="store_true", help="bf16 compute (the GPU benchmark's setting)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--compiler-options", default=None,
                    help="JSON dict passed to jax.jit(compiler_options=...); default: the trainer's "
                         "(nn.cpu_options.train_compiler_options); '{}': XLA's defaults")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the forward pass and forward+backward alone (separate jits, same inputs)")
    ap.add_argument("--one-core", action="store_true",
                    help="CPU: pin the process to one core before JAX starts, so every op (XLA's convolutions "
                         "included) is timed in full and its time is its work alone; the step is slower")
    a = ap.parse_args()
    if a.one_core:  # before JAX's CPU client exists: its thread pool (and OpenMP's) sizes follow the affinity
        if not hasattr(os, "sched_setaffinity"):
            ap.error("--one-core: this OS cannot pin a process to a core (Linux only)")
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        opts = json.loads(a.compiler_options) if a.compiler_options else None
    except json.JSONDecodeError as e:
        ap.error(f"--compiler-options {a.compiler_options!r}: not JSON ({e}); expected an object such as "
                 f"'{{\"xla_cpu_experimental_ynn_fusion_type\": \"\"}}'")
    if opts is not None and not isinstance(opts, dict):
        ap.error(f"--compiler-options {a.compiler_options!r}: expected a JSON object (option name -> value)")
    import jaxyolo.engine  # noqa: F401  (its XLA:CPU settings, as in bench_train_step)

    from jaxyolo.nn.build import ModelConfigError

    try:
        r = profile(a.model, a.imgsz, a.batch, a.bf16, a.steps, opts)
    except ModelConfigError as e:  # e.g. --model yolov9z-cls: the message names the file and the shipped models
        ap.error(f"--model {a.model}: {e}")
    print(f"{a.model} imgsz={a.imgsz} batch={a.batch} {'bf16' if a.bf16 else 'fp32'}"
          + (f" compiler_options={opts}" if opts is not None else " compiler_options: the trainer's")
          + (f" pinned to CPU {min(os.sched_getaffinity(0))} (--one-core)" if a.one_core else ""))
    print(report(r, a.top))
    if a.breakdown:
        print(breakdown_report(breakdown(a.model, a.imgsz, a.batch, a.bf16, a.steps, opts)))


if __name__ == "__main__":
    main()
