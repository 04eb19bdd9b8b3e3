"""benchmarks/gpu_check.sh, the prepared device call of issue 9: valid bash, its ultralytics wheel pinned to the
version of pyproject.toml's test extra (the one our parity facts were measured on), and its time budget honoured:
with none left every step is skipped and says so in its file under $OUT, so the device call's files come back."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_script_parses_and_pins_the_tested_ultralytics():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    pinned = re.search(r'"ultralytics==([0-9.]+)",\s*#', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f'"ultralytics=={pinned}"' in SCRIPT.read_text()


def test_steps_past_the_budget_are_skipped_and_reported(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "BUDGET": "10", "PY": "false",  # (PY would fail any step that ran)
           "WHEELS_DIR": str(tmp_path / "no-wheels")}
    p = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for name in ("gpu", "bench", "profile", "digits", "bench_more"):
        assert "skipped" in (out / f"{name}.txt").read_text(), name
    assert "== done" in p.stdout
