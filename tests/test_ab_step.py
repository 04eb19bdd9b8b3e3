"""benchmarks/ab_step.py: process-level A/B of the train step, by environment settings or by another checkout."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import ab_step  # noqa: E402


def test_variants_parse_and_bad_ones_name_what_is_expected(tmp_path):
    assert ab_step.parse_variant("on:") == ("on", None, {})
    assert ab_step.parse_variant("off:JAXYOLO_ONEDNN=off,A=1") == ("off", None, {"JAXYOLO_ONEDNN": "off", "A": "1"})
    assert ab_step.parse_variant(f"old@{ROOT}:A=2") == ("old", ROOT, {"A": "2"})
    for bad, msg in [("plain", "expected NAME:KEY=VALUE"), ("x:A", "'A' is not KEY=VALUE"),
                     (f"x@{tmp_path}", "is not a jaxyolo checkout")]:
        with pytest.raises(ValueError, match=msg):
            ab_step.parse_variant(bad)


def test_each_variant_runs_in_its_own_process_from_its_own_checkout(tmp_path):
    """A variant given a checkout imports jaxyolo from there (a copy of this package here), the other from this
    repository; both time the step and the table compares them."""
    shutil.copytree(ROOT / "jaxyolo", tmp_path / "jaxyolo", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ab_step.py"), "--model", "yolov8n-cls",
                          "--imgsz", "32", "--batch", "2", "--steps", "1", "--repeats", "1", "--rounds", "1",
                          "--variant", "here:", "--variant", f"copy@{tmp_path}:JAXYOLO_ONEDNN=off"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith(("here ", "copy "))}
    assert str(ROOT / "jaxyolo") in rows["here"] and str(tmp_path / "jaxyolo") in rows["copy"], out.stdout
    assert "1.000x" in rows["here"] and "JAXYOLO_ONEDNN" in rows["copy"]
