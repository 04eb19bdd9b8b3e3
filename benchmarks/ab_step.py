"""A/B of jaxyolo's train step across fresh processes: is a change faster, measured so the answer can be trusted.

    python benchmarks/ab_step.py --model yolov8n-cls --imgsz 224 --variant on: --variant off:JAXYOLO_ONEDNN=off
    python benchmarks/ab_step.py --variant new: --variant old@/tmp/old-checkout      # two commits (git worktree)

Each ``--variant NAME:ENV`` (``ENV``: ``KEY=VALUE`` pairs, comma-separated, may be empty) or ``NAME@ROOT`` (a checkout
of jaxyolo, e.g. ``git worktree add /tmp/old-checkout HEAD~1`` with its C++ extension built there, imported instead of
this one; ``NAME@ROOT:ENV`` for both) runs in its own process per round: the train step bench_train_step.py times
(``jax_step``), compiled, warmed up, then --repeats x --steps steps timed, the process's median kept. Rounds
alternate the variants' order; the table gives each variant's median over rounds, its spread, and its ratio to the
first.

Why processes: several train-step executables alive in one process slow each other unevenly (session 25: of three
variants compiled in one process, the first ran 14% behind the others; apart, the two steps in question were
within 1.2%), and a change measured that way was landed and then reverted. The VM's speed drifts 10-40% over minutes,
so compare variants only within one run. Prints only; findings go to RESULTS.md's notes by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def parse_variant(spec: str) -> tuple[str, Path | None, dict]:
    """``NAME:K=V,K2=V2`` / ``NAME@ROOT`` / ``NAME@ROOT:K=V`` -> (name, root or None, env)."""
    head, sep, env_text = spec.partition(":")
    name, at, root = head.partition("@")
    if not name or not (sep or at):
        raise ValueError(f"--variant {spec!r}: expected NAME:KEY=VALUE,... (empty after ':' for no settings) or "
                         f"NAME@CHECKOUT[:KEY=VALUE,...]")
    env = {}
    for pair in filter(None, env_text.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"--variant {spec!r}: {pair!r} is not KEY=VALUE")
        env[key] = value
    path = None
    if at:
        path = Path(root).expanduser().resolve()
        if not (path / "jaxyolo" / "__init__.py").is_file():
            raise ValueError(f"--variant {spec!r}: {path} is not a jaxyolo checkout (no jaxyolo/__init__.py)")
    return name, path, env


def child(model: str, imgsz: int, batch: int, steps: int, repeats: int) -> None:
    """One variant, one round: prints ``RESULT <median step ms>`` and which jaxyolo it imported."""
    sys.path.insert(0, str(HERE))
    import jaxyolo
    from bench_train_step import jax_step, step_runner

    step, state, inputs, _, _ = jax_step(model, imgsz, batch, False)
    run = step_runner(step.lower(state, *inputs).compile(), state, inputs)
    run(2)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(steps)
        times.append((time.perf_counter() - t) / steps * 1e3)
    print(f"JAXYOLO {Path(jaxyolo.__file__).resolve().parent}")
    print(f"RESULT {statistics.median(times)}")


def run_variant(a, root: Path | None, env: dict) -> tuple[float, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", a.model, "--imgsz", str(a.imgsz),
           "--batch", str(a.batch), "--steps", str(a.steps), "--repeats", str(a.repeats)]
    child_env = {**os.environ, **env}
    if root is not None:  # that checkout's jaxyolo first on the path (PYTHONPATH precedes site-packages)
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=child_env, cwd=str(root or REPO))
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("RESULT ", "JAXYOLO ")))
    if out.returncode != 0 or "RESULT" not in lines:
        raise RuntimeError(f"the step failed (exit {out.returncode}): {out.stderr.strip()[-1500:]}")
    return float(lines["RESULT"]), lines.get("JAXYOLO", "?")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov8n-cls")
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=4, help="timed repeats per process (their median is kept)")
    ap.add_argument("--rounds", type=int, default=6, help="processes per variant, the variants' order alternating")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:ENV | NAME@CHECKOUT[:ENV]")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.model, a.imgsz, a.batch, a.steps, a.repeats)
    if len(a.variant) < 2:
        ap.error("give at least two --variant (e.g. --variant on: --variant off:JAXYOLO_ONEDNN=off)")
    for flag in ("steps", "repeats", "rounds", "batch", "imgsz"):
        if getattr(a, flag) < 1:
            ap.error(f"--{flag} {getattr(a, flag)}: expected a positive integer")
    try:
        variants = [parse_variant(v) for v in a.variant]
    except ValueError as e:
        ap.error(str(e))
    names = [v[0] for v in variants]
    if len(set(names)) != len(names):
        ap.error(f"--variant names must differ: {names}")
    times = {n: [] for n in names}
    where = {}
    for r in range(a.rounds):
        for name, root, env in (variants if r % 2 == 0 else variants[::-1]):
            try:
                ms, where[name] = run_variant(a, root, env)
            except RuntimeError as e:
                sys.exit(f"ab_step: variant {name!r}, round {r + 1}: {e}")
            times[name].append(ms)
            print(f"round {r + 1}/{a.rounds} {name}: {ms:.1f} ms", flush=True)
    base = statistics.median(times[names[0]])
    print(f"{a.model} imgsz={a.imgsz} batch={a.batch}: train step, median over {a.rounds} processes per variant")
    print(f"{'variant':16s} {'median ms':>10s} {'min':>8s} {'max':>8s} {'vs ' + names[0]:>12s}  jaxyolo from")
    for (name, _, env), v in zip(variants, times.values()):
        med = statistics.median(v)
        print(f"{name:16s} {med:10.1f} {min(v):8.1f} {max(v):8.1f} {med / base:11.3f}x  {where[name]}"
              + (f"  {env}" if env else ""))


if __name__ == "__main__":
    main()
