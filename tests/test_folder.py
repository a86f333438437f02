"""A model folder's config.json, checked field by field (``hrnet_backbones.folder``): what passes.

The wrongly typed fields themselves are cases of the hostile-input corpus (``test_convert_hostile.py``).
"""

from __future__ import annotations

import json

import pytest

from hrnet_backbones.folder import check_model_config, read_model_config

#: the config.json of timm's own hrnet_w18.ms_in1k on the Hub (its fields, label lists shortened)
TIMM_HUB_CONFIG = {
    "architecture": "hrnet_w18",
    "num_classes": 1000,
    "num_features": 2048,
    "pretrained_cfg": {
        "tag": "ms_in1k",
        "custom_load": False,
        "input_size": [3, 224, 224],
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "num_classes": 1000,
        "pool_size": [7, 7],
        "first_conv": "conv1",
        "classifier": "classifier",
        "paper_ids": "arXiv:1908.07919",
    },
    "label_names": ["n01440764", "n01443537"],
    "label_descriptions": {"n01440764": "tench, Tinca tinca"},
}


def test_a_timm_hub_config_of_an_hrnet_passes():
    assert check_model_config(TIMM_HUB_CONFIG, "config.json") is TIMM_HUB_CONFIG


def test_timms_legacy_single_dict_format_is_checked_as_the_pretrained_config():
    legacy = {"architecture": "hrnet_w18", "input_size": [3, 224, 224], "mean": "0.5"}
    with pytest.raises(ValueError, match=r"^config\.json: field mean must be a list of numbers, got string"):
        check_model_config(legacy, "config.json")


def test_another_timm_models_own_fields_are_left_to_it():
    config = {"architecture": "resnet18", "model_args": {"img_size": 224}, "pretrained_cfg": {"codec": "x"}}
    assert check_model_config(config, "config.json") is config


def test_reading_a_folder_names_its_config_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**TIMM_HUB_CONFIG, "num_features": "2048"}))
    with pytest.raises(ValueError, match=rf"^{tmp_path}/config\.json: field num_features must be"):
        read_model_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        read_model_config(tmp_path / "missing")
