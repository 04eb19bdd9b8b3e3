"""benchmarks/profile_step.py: the per-op profile of a train step maps the profiler's events to the step's HLO."""

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import profile_step  # noqa: E402


def test_profile_maps_the_trace_to_convolutions_and_dots():
    r = profile_step.profile("yolov8n-cls", 64, 4, False, steps=1)
    cats = {r["ops"][name][1] for name in r["times"]}
    assert r["step_ms"] > 0 and sum(r["times"].values()) > 0.2 * r["step_ms"]
    assert any(c.startswith("conv ") for c in cats) and "dot" in cats, cats  # 3x3 convolutions; 1x1 ones as dots
    assert any(c.startswith("conv kernel gradient") for c in cats), cats  # XLA's, or oneDNN's where installed
    text = profile_step.report(r, top=5)
    assert "conv kernel gradient" in text and "top 5 ops:" in text


def test_categorise_reads_cudnn_calls_and_convolution_windows():
    c = profile_step.categorise
    assert c("custom-call.3", 'custom-call(%a, %b), custom_call_target="__cudnn$convBackwardFilter"')[0] == \
        "conv kernel gradient (cuDNN)"
    assert c("custom-call.4", 'custom_call_target="__cudnn$convForward"')[0] == "conv forward (cuDNN)"
    assert c("custom-call.5", 'custom_call_target="JaxyoloConvBwdWeights"')[0] == "conv kernel gradient (oneDNN)"
    assert c("custom-call.6", 'custom_call_target="JaxyoloConvFwd"')[0] == "conv forward (oneDNN)"
    assert c("ynn_fusion.2", "%c = convolution(%a, %b), window={size=56x56 pad=1_0x1_0 rhs_dilate=2x2}")[0] == \
        "conv kernel gradient"
    assert c("fusion.9", "%c = convolution(%a, %b), window={size=3x3 pad=1_1x1_1 lhs_dilate=2x2}")[0] == \
        "conv input gradient"
    assert c("ynn_fusion.7", "%c = convolution(%a, %b), window={size=3x3 stride=2x2 pad=1_1x1_1}")[0] == \
        "conv forward"
    assert c("transpose_copy_fusion.12", "%t = transpose(%a)")[0] == "transpose_copy_fusion"


def test_gpu_trace_counts_the_device_timeline_and_names_library_kernels(tmp_path):
    """A GPU trace (events as jax 0.11 writes them on an H200): kernels on the '/device:GPU:0' timeline, XLA's named
    ``fusion_12`` for instruction ``fusion.12``, cuDNN/cuBLAS kernels named by the library; the host's launch events
    (same names) are not added in."""
    import gzip
    import json

    ev = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/host:CPU"}},
          {"ph": "X", "pid": 1, "name": "loop_multiply_fusion_12", "dur": 300.0, "args": {"hlo_op": "command_buffer_1"}},
          {"ph": "X", "pid": 1, "name": "sm90_xmma_wgrad_indexed_implicit_gemm_bf16", "dur": 500.0},
          {"ph": "X", "pid": 1, "name": "nvjet_sm90_tst_64x512_64x2_1x2_h_ssched_bz_coopB_TNT", "dur": 100.0},
          {"ph": "X", "pid": 1, "name": "input_reduce_fusion_3", "dur": 50.0},
          {"ph": "X", "pid": 7, "name": "loop_multiply_fusion.12", "dur": 900.0}]
    (tmp_path / "p").mkdir()
    with gzip.open(tmp_path / "p" / "x.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": ev}, f)
    ops = {"loop_multiply_fusion.12": ("bf16[8]", "loop_multiply_fusion", "")}
    t = profile_step.trace_times(str(tmp_path), ops, n_steps=2)
    assert t["loop_multiply_fusion.12"] == 0.15  # 300 us over 2 steps; the host's 900 us event not counted
    cats = {ops[n][1]: ms for n, ms in t.items()}
    assert cats == {"loop_multiply_fusion": 0.15, "conv wgrad (cuDNN kernel)": 0.25, "gemm (cuBLAS kernel)": 0.05,
                    "input_reduce_fusion": 0.025}, cats


def test_breakdown_times_forward_backward_and_the_whole_step():
    b = profile_step.breakdown("yolov8n-cls", 32, 2, False, steps=2)
    assert set(b) == {"forward", "forward+backward", "step"} and all(v > 0 for v in b.values()), b
    assert b["forward"] < b["forward+backward"], b  # the backward pass is never free
    text = profile_step.breakdown_report(b)
    assert text.startswith("forward ") and "whole step" in text


def test_one_core_times_every_op_including_xla_convolutions():
    """--one-core pins the process before JAX starts: XLA's own convolutions (asynchronous on several cores, where the
    trace records little more than their dispatch) are then timed in full. At 160 px, batch 8 they are ~28% of the
    ops' time pinned against ~10% unpinned (session 25). The ops' total is not compared with the step's wall time:
    on a shared CI runner the one pinned core's wall time can triple (CI, stop 33) while the ops' times do not."""
    if not hasattr(os, "sched_setaffinity") or jax.default_backend() != "cpu":
        pytest.skip("CPU, Linux only")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_step.py"
    env = {**os.environ, "JAXYOLO_ONEDNN": "off"}  # XLA's convolutions: oneDNN's calls are timed in full anyway
    out = subprocess.run([sys.executable, str(script), "--one-core", "--model", "yolov8n-cls", "--imgsz", "160",
                          "--batch", "8", "--steps", "2", "--top", "3"], capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pinned to CPU" in out.stdout
    step_ms, ops_ms = map(float, re.search(r"step ([\d.]+) ms .*ops in the trace ([\d.]+) ms", out.stdout).groups())
    assert step_ms > 0 and ops_ms > 0, out.stdout[:600]
    conv_ms = float(re.search(r"^conv forward\s+([\d.]+)", out.stdout, re.M).group(1))
    assert conv_ms > 0.18 * ops_ms, out.stdout[:1500]  # XLA's 3x3 convolutions, forward and input gradients
