"""benchmarks/bench_train_step.py: a mistyped model or size ends in one argparse error that names it, before any
timing (a typo in the second of several models used to surface as a traceback after minutes of runs); a row is the
median over rounds of fresh processes for both sides, with each side's range."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_step.py"


@pytest.mark.parametrize("args, expected", [
    (["--models", "yolov8n-cls,yolov9z-cls"], "--models yolov9z-cls: yolov9z-cls.yaml: model YAML not found"),
    (["--models", "yolov8n-cls", "--imgsz", "22a"], "--imgsz '22a': expected comma-separated integers"),
    (["--models", "yolov8n-cls", "--processes", "0"], "--processes 0: expected a positive integer"),
])
def test_bad_arguments_end_in_one_clear_error(args, expected, tmp_path):
    p = subprocess.run([sys.executable, str(BENCH), *args, "--no-ultralytics", "--results", str(tmp_path / "r.md")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and expected in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "r.md").exists()


def test_over_processes_gives_each_sides_median_and_range():
    sys.path.insert(0, str(BENCH.parent))
    import bench_train_step as B

    rounds = [{"jaxyolo": {"train": t, "infer": 1.0}, "ultralytics": {"train": u, "infer": 2.0}}
              for t, u in [(0.30, 0.40), (0.34, 0.31), (0.32, 0.35)]]
    med, spread = B.over_processes(rounds)
    assert med == {"jaxyolo": {"train": 0.32, "infer": 1.0}, "ultralytics": {"train": 0.35, "infer": 2.0}}
    assert spread["ultralytics"]["train"] == (0.31, 0.40) and spread["jaxyolo"]["infer"] == (1.0, 1.0)
    assert B._spread_text(spread) == "per-process train step jaxyolo 300.0-340.0 ms, Ultralytics 310.0-400.0 ms"


def test_each_round_times_both_sides_in_fresh_processes(tmp_path):
    """One process per side is one draw of its speed (session 26: Ultralytics' step 313 vs 395 ms in two processes
    the same hour): the row is the median over --processes rounds of fresh children and says each side's range."""
    pytest.importorskip("ultralytics")
    out = tmp_path / "r.md"
    p = subprocess.run([sys.executable, str(BENCH), "--models", "yolov8n-cls", "--imgsz", "32", "--batch", "2",
                        "--steps", "1", "--repeats", "1", "--processes", "2", "--results", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("process 1/2: train step") == 1 and p.stdout.count("process 2/2: train step") == 1
    row = out.read_text().strip().splitlines()[-1]
    assert "median of 2 fresh process(es) per side" in row, row
    assert re.search(r"per-process train step jaxyolo [\d.]+-[\d.]+ ms, Ultralytics [\d.]+-[\d.]+ ms", row), row
    assert re.search(r"\| train [\d.]+x, infer [\d.]+x, infer b1 [\d.]+x \|$", row), row
    assert "jax 0." in row and "ultralytics 8." in row and "heap only" in row, row  # versions and malloc: children's
