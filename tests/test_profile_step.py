"""benchmarks/profile_step.py: the per-op profile of a train step maps the profiler's events to the step's HLO."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import profile_step  # noqa: E402


def test_profile_maps_the_trace_to_convolutions_and_dots():
    r = profile_step.profile("yolov8n-cls", 64, 4, False, steps=1)
    cats = {r["ops"][name][1] for name in r["times"]}
    assert r["step_ms"] > 0 and sum(r["times"].values()) > 0.2 * r["step_ms"]
    assert any(c.startswith("conv ") for c in cats) and "dot" in cats, cats  # 3x3 convolutions; 1x1 ones as dots
    assert any(c == "conv kernel gradient" for c in cats), cats
    text = profile_step.report(r, top=5)
    assert "conv kernel gradient" in text and "top 5 ops:" in text


def test_categorise_reads_cudnn_calls_and_convolution_windows():
    c = profile_step.categorise
    assert c("custom-call.3", 'custom-call(%a, %b), custom_call_target="__cudnn$convBackwardFilter"')[0] == \
        "conv kernel gradient (cuDNN)"
    assert c("custom-call.4", 'custom_call_target="__cudnn$convForward"')[0] == "conv forward (cuDNN)"
    assert c("ynn_fusion.2", "%c = convolution(%a, %b), window={size=56x56 pad=1_0x1_0 rhs_dilate=2x2}")[0] == \
        "conv kernel gradient"
    assert c("fusion.9", "%c = convolution(%a, %b), window={size=3x3 pad=1_1x1_1 lhs_dilate=2x2}")[0] == \
        "conv input gradient"
    assert c("ynn_fusion.7", "%c = convolution(%a, %b), window={size=3x3 stride=2x2 pad=1_1x1_1}")[0] == \
        "conv forward"
    assert c("transpose_copy_fusion.12", "%t = transpose(%a)")[0] == "transpose_copy_fusion"
