"""Shared by the benchmark scripts: the machine description, peak memory, and one dated row into RESULTS.md.

Every script appends exactly one row per measurement to the first table of ``benchmarks/RESULTS.md`` (columns: date,
benchmark, machine, command, numbers, ratio); notes written by hand below the table stay where they are.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import sys
from pathlib import Path

HEADER = ("# Benchmark results\n\nOne row per run, appended by the benchmark scripts (`benchmarks/*.py`); ratios are "
          "jaxyolo / Ultralytics measured in the same run.\n\n"
          "| date | benchmark | machine | command | numbers | ratio |\n|---|---|---|---|---|---|\n")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def machine() -> str:
    return f"{platform.node()}: {cpu_name()}, {os.cpu_count()} cores"


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory of this process (or of the largest waited-for child), MiB."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return r.ru_maxrss / 1024.0  # Linux: KiB


def command() -> str:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        pass
    return " ".join(["python", str(script), *(shlex.quote(v) for v in sys.argv[1:])])


def append_row(results: str | Path, benchmark: str, numbers: str, ratio: str, machine_desc: str | None = None):
    """Insert ``| date | benchmark | machine | command | numbers | ratio |`` at the end of the first table."""
    res = Path(results)
    if not res.exists():
        res.write_text(HEADER)
    row = (f"| {datetime.date.today().isoformat()} | {benchmark} | {machine_desc or machine()} | `{command()}` | "
           f"{numbers} | {ratio} |")
    lines = res.read_text().rstrip("\n").split("\n")
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    if table:
        end = table[0]
        while end + 1 < len(lines) and lines[end + 1].startswith("|"):
            end += 1
        lines.insert(end + 1, row)
    else:
        lines += ["", *HEADER.strip().split("\n")[-2:], row]
    res.write_text("\n".join(lines) + "\n")
    print(f"appended to {res}")


def child_env(root: Path, tmp: Path) -> dict:
    """The environment of the benchmarked commands (both sides): this checkout importable, the materialised datasets
    under ``tmp`` (also set in this process, which materialises them), Ultralytics offline with its settings file
    under ``tmp`` (no downloads, no prompts, the user's settings untouched)."""
    env = {**os.environ, "PYTHONPATH": str(root), "JAXYOLO_DATASETS_DIR": str(tmp / "datasets"), "YOLO_OFFLINE": "1",
           "YOLO_CONFIG_DIR": str(tmp / "ycfg")}
    os.environ["JAXYOLO_DATASETS_DIR"] = env["JAXYOLO_DATASETS_DIR"]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return env
