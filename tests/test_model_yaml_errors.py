"""Bad model YAMLs fail with a message that names the file and the problem."""

import pytest
import yaml

from jaxyolo.nn.build import ModelConfigError, build_model, guess_scale, load_model_yaml, make_divisible

BASE = {
    "nc": 10,
    "scales": {"n": [0.33, 0.25, 1024]},
    "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 3, "C2f", [128, True]]],
    "head": [[-1, 1, "Classify", ["nc"]]],
}


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return p


def test_valid_custom_yaml(tmp_path):
    model, cfg = build_model(str(write(tmp_path, "mynetn-cls.yaml", BASE)))
    assert model.nc == 10 and [s.module for s in model.specs] == ["Conv", "C2f", "Classify"]


def test_malformed_yaml(tmp_path):
    p = write(tmp_path, "bad-cls.yaml", "nc: 10\nbackbone: [[-1, 1, Conv, [64, 3, 2]]\n  head: ]")
    with pytest.raises(ModelConfigError, match=r"bad-cls\.yaml.*malformed YAML"):
        build_model(str(p))


def test_unknown_module(tmp_path):
    cfg = dict(BASE, backbone=[[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Transformer9000", [128]]])
    p = write(tmp_path, "unk-cls.yaml", cfg)
    with pytest.raises(ModelConfigError, match=r"unk-cls\.yaml: layer 1: unknown module 'Transformer9000'"):
        build_model(str(p))


def test_unknown_scale(tmp_path):
    p = write(tmp_path, "yolov8q-cls.yaml", BASE)
    with pytest.raises(ModelConfigError, match=r"yolov8q-cls\.yaml: unknown scale 'q'"):
        build_model(str(p))


def test_shipped_model_unknown_scale():
    with pytest.raises(ModelConfigError, match=r"unknown scale 'z'"):
        build_model("yolov8z-cls.yaml")


@pytest.mark.parametrize("bad_from", [5, -3, 1])
def test_wrong_from_index(tmp_path, bad_from):
    cfg = dict(BASE, backbone=[[-1, 1, "Conv", [64, 3, 2]], [bad_from, 3, "C2f", [128, True]]])
    p = write(tmp_path, "from-cls.yaml", cfg)
    with pytest.raises(ModelConfigError, match=rf"from-cls\.yaml: layer 1: 'from' index {bad_from}"):
        build_model(str(p))


def test_missing_sections_and_bad_layer(tmp_path):
    with pytest.raises(ModelConfigError, match=r"nohead-cls\.yaml: missing or invalid 'head'"):
        build_model(str(write(tmp_path, "nohead-cls.yaml", {"nc": 3, "backbone": []})))
    cfg = dict(BASE, backbone=[[-1, 1, "Conv"]])
    with pytest.raises(ModelConfigError, match=r"short-cls\.yaml: layer 0 must be \[from, repeats, module, args\]"):
        build_model(str(write(tmp_path, "short-cls.yaml", cfg)))


def test_missing_file():
    with pytest.raises(ModelConfigError, match=r"nothere-cls\.yaml: model YAML not found"):
        load_model_yaml("nothere-cls.yaml")


def test_scale_from_file_name_and_width_rule():
    assert guess_scale("yolov8n-cls.yaml") == "n" and guess_scale("yolo11x-cls.yaml") == "x"
    assert guess_scale("custom.yaml") is None
    assert make_divisible(64 * 0.25, 8) == 16 and make_divisible(1024 * 1.25, 8) == 1280 and make_divisible(20, 8) == 24
    model, cfg = build_model("yolov8s-cls.yaml")
    assert cfg["scale"] == "s" and model.specs[0].args[:2] == (3, 32)


def test_c3k2_forced_on_for_mlx():
    for scale, expect in [("n", False), ("s", False), ("m", True), ("l", True), ("x", True)]:
        model, _ = build_model(f"yolo11{scale}-cls.yaml")
        assert model.specs[2].kwargs["c3k"] is expect
