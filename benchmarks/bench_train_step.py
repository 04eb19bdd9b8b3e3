"""Train-step and inference throughput: jaxyolo (jit) vs Ultralytics' torch model, same machine, same run.

    python benchmarks/bench_train_step.py --models yolov8n-cls --imgsz 224,64 --batch 32            # CPU
    python benchmarks/bench_train_step.py --models yolov8s-cls,yolov8m-cls --imgsz 224 --batch 256 --bf16   # GPU

A train step is forward + backward + optimizer update (SGD, Ultralytics' parameter groups, clip, EMA) on a
synthetic uint8 batch already on the device, so the numbers measure the model step, not the input pipeline
(see bench_data.py for that). Ultralytics' side is its own ClassificationModel with its trainer's optimizer (SGD,
parameter groups) and ModelEMA, clip 10, under AMP autocast on
GPU (fp16 + GradScaler, Ultralytics' default) or fp32 on CPU; its inference runs the model BatchNorm-fused
(``model.fuse()``), as its predictor and validator do. Inference is timed at --batch and at batch 1.

Each side runs as its users run it, in child processes of its own: jaxyolo importing ``jaxyolo.engine`` (its
settings for XLA:CPU, jaxyolo/utils/malloc.py), Ultralytics with the C library's defaults; ``--ul-same-malloc`` also
times an Ultralytics child given jaxyolo's malloc settings, to show how much of the ratio they are. Every
--processes round starts fresh children for every side: one process's speed is a draw (session 26: Ultralytics'
yolov8n-cls@224 step took 313 ms in one process and 395 ms in another the same hour, so one pair of processes put
the train ratio anywhere in 0.96-1.22x), so a row gives the median over the rounds and each side's range.
MFU = 3 x forward FLOPs per image x images/s / peak. On CPU, where no vendor peak applies, the model's FLOP rate
(train: 3 x forward FLOPs per image x images/s; inference: 1 x) is reported for both sides as a fraction of the
machine's measured matmul ceiling (the best of 2048^3 fp32 matmuls in XLA, multi-threaded): how close each side
runs to what this CPU does on the friendliest op. In each round the two sides alternate: each times --repeats x
--steps steps in turn, so a machine whose speed drifts shifts both sides alike. Appends rows to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import _results as R  # noqa: E402  (benchmarks/_results.py)

# jaxyolo (and with it its malloc settings) is imported only by the jaxyolo side: the Ultralytics child must not.

PEAK_BF16 = {"H200": 790e12, "H100": 790e12}  # measured dense bf16 matmul ceiling on this workplace's Hopper GPUs


def _timeit(fn, steps: int, repeats: int) -> float:
    """Median seconds per step."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(steps)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def jax_step(model_name: str, imgsz: int, batch: int, bf16: bool, nc: int = 1000, compiler_options=None):
    """The jitted train step (SGD recipe, donated state) and its inputs: ``(step, state, (x, y, hp, key), module,
    dtype)``; shared with profile_step.py. ``compiler_options`` None: the trainer's (``train_compiler_options``);
    ``{}``: XLA's defaults."""
    import jax
    import jax.numpy as jnp

    from jaxyolo.engine import optim
    from jaxyolo.engine.model import init_variables
    from jaxyolo.engine.steps import create_state, make_train_step, update_mode
    from jaxyolo.nn.build import build_model
    from jaxyolo.nn.cpu_options import train_compiler_options

    if compiler_options is None:
        compiler_options = train_compiler_options()
    module, cfg = build_model(f"{model_name}.yaml", nc=nc)
    dtype = jnp.bfloat16 if bf16 else jnp.float32
    module = module.clone(dtype=dtype)
    variables = init_variables(module, 0)
    args = dict(batch=batch, nbs=64, epochs=100, weight_decay=5e-4, optimizer="SGD", lr0=0.01, momentum=0.937,
                warmup_bias_lr=0.1, warmup_epochs=0.0, warmup_momentum=0.8, lrf=0.01, cos_lr=False)
    recipe = optim.resolve_recipe(args, nc, 100000, 1000)
    tx = optim.build_tx(recipe)
    state = create_state(variables, tx)
    # a batch that updates (hp[4] = 1 below: the optimizer every step, as Ultralytics' side runs it); where the
    # trainer runs "split" (the accumulate step, then the optimizer's), one executable of the two without a branch
    update = update_mode(recipe.accumulate)
    update = "apply" if update == "split" else update
    step = jax.jit(make_train_step(module, tx, 0.0, dtype, update=update), donate_argnums=(0,),
                   compiler_options=compiler_options or None)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.integers(0, 256, (batch, imgsz, imgsz, 3), dtype=np.uint8))
    y = jax.device_put(rng.integers(0, nc, (batch,), dtype=np.int32))
    hp = jnp.asarray([0.01, 0.01, 0.01, 0.937, 1.0], jnp.float32)
    key = np.int32(0)  # the batch index (the step folds it into its dropout key)
    return step, state, (x, y, hp, key), module, dtype


def step_runner(step, state, inputs):
    """``run(n)``: n train steps ``step(state, *inputs)`` carrying the (donated) state on, then waiting for the last
    loss; ``run.state()`` is the state after the last run. Shared with profile_step.py."""
    carried = [state]

    def run(n: int):
        s, loss = carried[0], None
        for _ in range(n):
            s, loss = step(s, *inputs)
        loss.block_until_ready()
        carried[0] = s

    run.state = lambda: carried[0]
    return run


PHASES = ("train", "infer", "infer1")  # timed in this order: each side's inference runs its trained weights


def jax_side(model_name: str, imgsz: int, batch: int, bf16: bool, nc: int = 1000, ceiling: bool = False):
    """jaxyolo's side: ``(info, phases)``, ``phases[p](n)`` runs n train steps / batch inferences / batch-1
    inferences and waits for the last; info has the first step's time (compile + run), the forward GFLOPs, the
    device and versions, and (``ceiling``, on CPU) this machine's matmul ceiling."""
    import jax

    from jaxyolo.nn.cpu_conv import inference_jit
    from jaxyolo.nn.summary import gflops

    step, state, (x, y, hp, key), module, dtype = jax_step(model_name, imgsz, batch, bf16, nc)
    t0 = time.perf_counter()
    state, loss = step(state, x, y, hp, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    run = step_runner(step, state, (x, y, hp, key))
    fwd = inference_jit(lambda v, a: module.apply(v, a.astype(dtype) / 255))

    def infer(n, xb):
        v = jax.device_put(run.state().variables())  # the trained model's trees (the state keeps them flat)
        o = None
        for _ in range(n):
            o = fwd(v, xb)
        o.block_until_ready()

    phases = {"train": run, "infer": lambda n: infer(n, x), "infer1": lambda n: infer(n, x[:1])}
    from jaxyolo.utils import malloc

    dev = jax.devices()[0]
    info = {"compile_s": compile_s, "gflops_fwd": gflops(module, imgsz), "backend": jax.default_backend(),
            "device_kind": dev.device_kind, "versions": f"jax {jax.__version__}", "malloc": malloc.state,
            "ceiling": cpu_matmul_ceiling() if ceiling and jax.default_backend() == "cpu" else None}
    return info, phases


def _cores() -> int:
    """The cores this process may run on (its CPU affinity), by ``jaxyolo.utils.host.host_cores``' rule: kept here
    because the Ultralytics child imports no jaxyolo."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_matmul_ceiling(n: int = 2048, runs: int = 10) -> float:
    """FLOP/s of the best of ``runs`` n^3 fp32 matmuls in XLA:CPU (all cores): the attainable ceiling of this CPU."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def flop_rates(gflops_fwd: float, r: dict, ceiling: float) -> str:
    """'train X GFLOP/s (Y% of the ceiling), infer ...' for one side's results."""
    tr, inf = 3 * gflops_fwd * r["train_img_s"], gflops_fwd * r["infer_img_s"]
    return f"train {tr:.0f} GFLOP/s ({tr * 1e9 / ceiling:.0%}), infer {inf:.0f} GFLOP/s ({inf * 1e9 / ceiling:.0%})"


def torch_side(model_name: str, imgsz: int, batch: int, amp: bool, nc: int = 1000):
    """Ultralytics' side, as ``jax_side``: ``(info, phases)``; the first inference phase fuses the model's BatchNorm
    (``model.fuse()``, what its predictor and validator run), so the phases run in ``PHASES`` order."""
    import torch
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.tasks import ClassificationModel
    from ultralytics.utils.torch_utils import ModelEMA

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    # All cores, Ultralytics' strongest CPU setting. `import ultralytics` sets OMP_NUM_THREADS=1 and its select_device
    # then uses min(8, cores - 1) threads: 1 on a 2-core machine. That is what `yolo` itself runs (bench_digits
    # measures it); this benchmark compares the model step at its best. The cores this process may run on (its
    # affinity, as XLA sizes its pool): under `taskset -c 0` os.cpu_count()'s 2 threads shared one core (session 27)
    torch.set_num_threads(_cores())
    model = ClassificationModel(f"{model_name}.yaml", nc=nc, verbose=False).to(dev).train()
    # Ultralytics' own optimizer (its three parameter groups: decayed weights, BatchNorm weights, biases; SGD,
    # Nesterov) and EMA, as its trainer builds them and runs them at every optimizer step (jaxyolo's step runs both)
    opt = BaseTrainer.build_optimizer(None, model, "SGD", lr=0.01, momentum=0.937, decay=5e-4)
    ema = ModelEMA(model)
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
        ema.update(model)

    def run(n):
        for _ in range(n):
            one()
        sync()

    fused = []

    def infer(n, xb):
        if not fused:
            fused.append(model.eval().fuse(verbose=False))  # AutoBackend fuse=True
        with torch.inference_mode(), torch.autocast(dev, enabled=amp and dev == "cuda"):
            for _ in range(n):
                fused[0](xb.float() / 255)
        sync()

    phases = {"train": run, "infer": lambda n: infer(n, x), "infer1": lambda n: infer(n, x[:1])}
    import ultralytics

    return {"threads": torch.get_num_threads(),
            "versions": f"torch {torch.__version__}, ultralytics {ultralytics.__version__}"}, phases


def serve(info: dict, phases: dict):
    """The child's loop: print ``READY <info json>``, then for each line ``PHASE N`` on stdin run ``phases[PHASE](N)``
    and print ``T <seconds>`` (``rss 0``: ``T <peak RSS MiB>``); ends at EOF."""
    print("READY", json.dumps(info), flush=True)
    for line in sys.stdin:
        phase, n = line.split()
        if phase == "rss":  # the process's peak resident memory so far, MiB
            print("T", R.peak_rss_mib(), flush=True)
            continue
        t0 = time.perf_counter()
        phases[phase](int(n))
        print("T", time.perf_counter() - t0, flush=True)


class Child:
    """One side in a child process serving its phases (``serve``): ``child(phase, n)`` runs a phase there and returns
    its seconds, so the sides' timings can alternate. ``code`` builds the side and serves it."""

    def __init__(self, code: str, env: dict, what: str):
        self.what = what
        self._err = tempfile.TemporaryFile("w+")
        self._p = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=self._err, text=True)
        self.info = json.loads(self._reply("READY"))

    def _reply(self, tag: str) -> str:
        for line in self._p.stdout:
            if line.startswith(tag + " "):
                return line[len(tag) + 1:]
        self._p.wait()
        self._err.seek(0)
        err = self._err.read()
        if "No module named" in err and ("ultralytics" in err or "torch" in err):
            raise ImportError(err.strip().splitlines()[-1])
        raise RuntimeError(f"the {self.what} child failed:\n{err[-3000:]}")

    def __call__(self, phase: str, n: int) -> float:
        self._p.stdin.write(f"{phase} {n}\n")
        self._p.stdin.flush()
        return float(self._reply("T"))

    def close(self):
        self._p.stdin.close()
        self._p.wait()
        self._err.close()


def _child_env(extra_path: bool) -> dict:
    env = dict(os.environ)
    env.setdefault("YOLO_OFFLINE", "1")
    if extra_path:  # this checkout's jaxyolo importable
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                          env.get("PYTHONPATH")]))
    return env


def torch_child(model_name: str, imgsz: int, batch: int, amp: bool, same_malloc: bool) -> Child:
    """``torch_side`` in a child that never imports jaxyolo: Ultralytics with its own (glibc default) malloc, unless
    ``same_malloc``."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            + ("from jaxyolo.utils import malloc; malloc.tune()\n" if same_malloc else "")
            + "import bench_train_step as B\n"
            f"B.serve(*B.torch_side({model_name!r}, {imgsz}, {batch}, {amp}))")
    return Child(code, _child_env(same_malloc), "Ultralytics")


def jax_child(model_name: str, imgsz: int, batch: int, bf16: bool, ceiling: bool) -> Child:
    """``jax_side`` in a child that imports ``jaxyolo.engine`` first (its XLA:CPU and malloc settings, before JAX's
    backend starts), as jaxyolo's entry points do."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            "import jaxyolo.engine\n"
            "import bench_train_step as B\n"
            f"B.serve(*B.jax_side({model_name!r}, {imgsz}, {batch}, {bf16}, ceiling={ceiling}))")
    return Child(code, _child_env(True), "jaxyolo")


def interleaved(sides: dict, steps: int, repeats: int) -> dict:
    """``{side: {phase: median seconds per step}}`` for ``sides`` (name -> ``run(phase, n)`` returning seconds):
    per phase, two warm-up steps each, then ``repeats`` rounds in which every side times ``steps`` steps in turn."""
    times = {name: {p: [] for p in PHASES} for name in sides}
    for phase in PHASES:
        for run in sides.values():
            run(phase, 2)
        for _ in range(repeats):
            for name, run in sides.items():
                times[name][phase].append(run(phase, steps) / steps)
    return {name: {p: statistics.median(v) for p, v in t.items()} for name, t in times.items()}


def over_processes(rounds: list[dict]) -> tuple[dict, dict]:
    """``(median, spread)`` over rounds of ``{side: {phase: seconds per step}}`` (one fresh process per side and
    round): ``median[side][phase]`` the median over the rounds, ``spread[side][phase]`` their (min, max)."""
    sides = rounds[0].keys()
    med = {s: {p: statistics.median(r[s][p] for r in rounds) for p in rounds[0][s]} for s in sides}
    spread = {s: {p: (min(r[s][p] for r in rounds), max(r[s][p] for r in rounds)) for p in rounds[0][s]}
              for s in sides}
    return med, spread


def _results(sec: dict, batch: int, info: dict) -> dict:
    return {"train_img_s": batch / sec["train"], "step_ms": sec["train"] * 1e3, "infer_img_s": batch / sec["infer"],
            "infer1_ms": sec["infer1"] * 1e3, **info}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="yolov8n-cls")
    ap.add_argument("--imgsz", default="224,64")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", type=int, default=3,
                    help="rounds per model and size, each with fresh child processes for every side (default 3)")
    ap.add_argument("--bf16", action="store_true", help="bf16 compute for jaxyolo, AMP autocast for Ultralytics")
    ap.add_argument("--no-ultralytics", action="store_true")
    ap.add_argument("--ul-same-malloc", action="store_true",
                    help="also time Ultralytics with jaxyolo's malloc settings (a third child process)")
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # This process starts no JAX backend (a GPU's memory stays the children's) and never imports ultralytics (which
    # sets OMP_NUM_THREADS=1 in the environment the children would inherit).
    from jaxyolo.nn.build import ModelConfigError, build_model

    for name in a.models.split(","):  # every model before any timing: a typo ends here, not after minutes of runs
        try:
            build_model(f"{name}.yaml", nc=10)
        except ModelConfigError as e:  # the message names the file and the shipped models
            ap.error(f"--models {name}: {e}")
    try:
        sizes = [int(v) for v in a.imgsz.split(",")]
    except ValueError:
        ap.error(f"--imgsz {a.imgsz!r}: expected comma-separated integers such as 224,64")
    for flag in ("batch", "steps", "repeats", "processes"):
        if getattr(a, flag) < 1:
            ap.error(f"--{flag} {getattr(a, flag)}: expected a positive integer")
    ultralytics = not a.no_ultralytics
    first = None  # the first jaxyolo child's info: device, versions, this CPU's matmul ceiling
    rows = []
    for name in a.models.split(","):
        for s in sizes:
            rounds, infos, rss = [], [], []
            for r in range(a.processes):
                children = {"jaxyolo": jax_child(name, s, a.batch, a.bf16, ceiling=first is None)}
                try:
                    if ultralytics:
                        try:
                            children["ultralytics"] = torch_child(name, s, a.batch, a.bf16, same_malloc=False)
                            if a.ul_same_malloc:
                                children["same_malloc"] = torch_child(name, s, a.batch, a.bf16, same_malloc=True)
                        except ImportError as e:
                            print(f"ultralytics side skipped: {e}")
                            ultralytics = False
                    if r % 2:  # which side goes first alternates between rounds
                        children = dict(reversed(list(children.items())))
                    rounds.append(interleaved(children, a.steps, a.repeats))
                    rss.append(children["jaxyolo"]("rss", 0))
                    infos.append({k: c.info for k, c in children.items()})
                finally:
                    for c in children.values():
                        c.close()
                first = first or infos[0]["jaxyolo"]
                print(f"  {name}@{s} process {r + 1}/{a.processes}: train step " + ", ".join(
                    f"{k} {v['train'] * 1e3:.1f} ms" for k, v in rounds[-1].items()), flush=True)
            sec, spread = over_processes(rounds)
            j = _results(sec["jaxyolo"], a.batch, infos[0]["jaxyolo"])
            t = _results(sec["ultralytics"], a.batch, infos[0]["ultralytics"]) if "ultralytics" in sec else None
            t_same = (_results(sec["same_malloc"], a.batch, infos[0]["same_malloc"]) if "same_malloc" in sec
                      else None)
            mfu = ""
            peak = next((v for k, v in PEAK_BF16.items() if k in first["device_kind"]), None)
            if peak and a.bf16:
                mfu = f"{3 * j['gflops_fwd'] * 1e9 * j['train_img_s'] / peak:.1%}"
            rows.append((name, s, a.batch, "bf16" if a.bf16 else "fp32", j, t, t_same, mfu, spread, max(rss)))
            ceiling = first["ceiling"]
            print(f"{name} imgsz={s} batch={a.batch}: jaxyolo train {j['train_img_s']:.1f} img/s "
                  f"(step {j['step_ms']:.1f} ms, compile {j['compile_s']:.1f} s), infer {j['infer_img_s']:.1f} img/s, "
                  f"batch 1 {j['infer1_ms']:.2f} ms" + (f" | ultralytics train {t['train_img_s']:.1f} img/s, infer "
                  f"{t['infer_img_s']:.1f} img/s, batch 1 {t['infer1_ms']:.2f} ms | {_ratios(j, t)}" if t else "")
                  + (f" | with jaxyolo's malloc: {_ratios(j, t_same)}" if t_same else "")
                  + (f" | MFU {mfu}" if mfu else "")
                  + (f" | of the CPU matmul ceiling: jaxyolo {flop_rates(j['gflops_fwd'], j, ceiling)}"
                     + (f"; Ultralytics {flop_rates(j['gflops_fwd'], t, ceiling)}" if t else "") if ceiling else "")
                  + f" | {_spread_text(spread)}", flush=True)
    if first is None:
        return
    gpu = first["backend"] == "gpu"
    device = (f"{first['device_kind']} (gpu)" if gpu else R.cpu_name())
    machine = f"{device}, {_cores()} CPUs, {platform.python_version()}"
    versions = first["versions"] + "".join(f", {r[5]['versions']}" for r in rows[:1] if r[5])
    ceiling = first["ceiling"]
    for name, s, b, p, j, t, t_same, mfu, spread, rss in rows:
        nums = (f"{name} @{s}, batch {b}, {p}: train {j['train_img_s']:.1f} img/s (step {j['step_ms']:.1f} ms, "
                f"compile {j['compile_s']:.1f} s)" + (f" vs Ultralytics {t['train_img_s']:.1f} img/s" if t else "")
                + f"; inference {j['infer_img_s']:.1f}" + (f" vs {t['infer_img_s']:.1f} img/s" if t else " img/s")
                + f", batch 1 {j['infer1_ms']:.2f}" + (f" vs {t['infer1_ms']:.2f} ms" if t else " ms")
                + (f" (Ultralytics BatchNorm-fused, as its predictor; torch {t['threads']} threads)" if t else "")
                + (f"; Ultralytics with jaxyolo's malloc settings: train {t_same['train_img_s']:.1f} img/s, inference "
                   f"{t_same['infer_img_s']:.1f} img/s, batch 1 {t_same['infer1_ms']:.2f} ms ({_ratios(j, t_same)})"
                   if t_same else "")
                + (f"; MFU {mfu}" if mfu else "")
                + (f"; model FLOP rate vs this CPU's matmul ceiling ({ceiling / 1e9:.0f} GFLOP/s, 2048^3 fp32 in XLA): "
                   f"jaxyolo {flop_rates(j['gflops_fwd'], j, ceiling)}"
                   + (f", Ultralytics {flop_rates(j['gflops_fwd'], t, ceiling)}" if t else "") if ceiling else "")
                + f"; jaxyolo malloc: {first['malloc']}; peak RSS {rss:.0f} MiB (jaxyolo process); {versions}; "
                f"median of {a.processes} fresh process(es) per side, each the median of {a.repeats} x {a.steps} "
                f"steps, the sides alternating; {_spread_text(spread)}; load avg {R.load_avg():.1f}")
        R.append_row(a.results, "bench_train_step" + (" (GPU)" if gpu else ""), nums,
                     _ratios(j, t) if t else "-", machine_desc=f"{platform.node()}: {machine}")


def _spread_text(spread: dict) -> str:
    """Each side's range over its processes: 'per-process train step jaxyolo 312-346 ms, ultralytics ...'."""
    names = {"jaxyolo": "jaxyolo", "ultralytics": "Ultralytics", "same_malloc": "Ultralytics with jaxyolo's malloc"}
    return "per-process train step " + ", ".join(
        f"{names[side]} {spread[side]['train'][0] * 1e3:.1f}-{spread[side]['train'][1] * 1e3:.1f} ms"
        for side in names if side in spread)


def _ratios(j: dict, t: dict) -> str:
    return (f"train {j['train_img_s'] / t['train_img_s']:.2f}x, infer {j['infer_img_s'] / t['infer_img_s']:.2f}x, "
            f"infer b1 {t['infer1_ms'] / j['infer1_ms']:.2f}x")


if __name__ == "__main__":
    main()
