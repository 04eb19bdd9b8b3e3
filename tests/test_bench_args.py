"""benchmarks/bench_train_step.py: a mistyped model or size ends in one argparse error that names it, before any
timing (a typo in the second of several models used to surface as a traceback after minutes of runs)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_step.py"


@pytest.mark.parametrize("args, expected", [
    (["--models", "yolov8n-cls,yolov9z-cls"], "--models yolov9z-cls: yolov9z-cls.yaml: model YAML not found"),
    (["--models", "yolov8n-cls", "--imgsz", "22a"], "--imgsz '22a': expected comma-separated integers"),
])
def test_bad_arguments_end_in_one_clear_error(args, expected, tmp_path):
    p = subprocess.run([sys.executable, str(BENCH), *args, "--no-ultralytics", "--results", str(tmp_path / "r.md")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and expected in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "r.md").exists()
