"""Ours is a strict superset of timm's built-in HRNet, for every one of its names: same keys, same logits, same
features, same tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from conftest import randomize
from hub_cache import populate_hub_cache
from safetensors.torch import save_file
from timm.models import hrnet as timm_hrnet
from timm.models.hrnet import HighResolutionNet, HighResolutionNetFeatures, cfg_cls

from hrnet_backbones import HRNet, HRNetFeatures, model_names
from hrnet_backbones.config import TRUNKS
from hrnet_backbones.registry import MODELS

#: timm's own HRNet names (all taken over) and one call of timm's own entry point for each: its built-in class
TIMM_NAMES = list(timm_hrnet.default_cfgs)


def _builtin(name: str, **kwargs) -> torch.nn.Module:
    """timm's built-in model of ``name``, from timm's own entry point (still there, only unregistered)."""
    return getattr(timm_hrnet, name)(**kwargs)


def test_every_timm_hrnet_name_is_taken_over():
    assert len(TIMM_NAMES) == 11 and set(TIMM_NAMES) <= set(model_names())
    with torch.device("meta"):
        for name in TIMM_NAMES:
            assert type(timm.create_model(name)) is HRNet
            assert type(timm.create_model(name, features_only=True)) is HRNetFeatures


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_state_dict_keys_and_shapes_match_timm_builtin(name):
    with torch.device("meta"):
        builtin = _builtin(name)
        ours = timm.create_model(name)
    assert type(builtin) is HighResolutionNet and isinstance(ours, HRNet)
    theirs = {k: tuple(v.shape) for k, v in builtin.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert list(mine) == list(theirs)
    assert mine == theirs


@pytest.mark.parametrize("name", ["hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18_ssld", "hrnet_w32"])
def test_classification_logits_match_timm_builtin(name):
    builtin = randomize(_builtin(name)).eval()
    ours = timm.create_model(name).eval()
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), builtin(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["hrnet_w18", "hrnet_w18_small_v2"])
@pytest.mark.parametrize("feature_location", ["incre", ""])
def test_features_match_timm_builtin(name, feature_location):
    builtin = randomize(HighResolutionNetFeatures(cfg_cls[name], feature_location=feature_location)).eval()
    ours = timm.create_model(
        name, features_only=True, feature_location=feature_location, out_indices=(0, 1, 2, 3, 4)
    ).eval()
    ours.load_state_dict(builtin.state_dict())
    assert ours.feature_info.channels() == builtin.feature_info.channels()
    assert ours.feature_info.reduction() == builtin.feature_info.reduction()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(ours(x), builtin(x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["hrnet_w64", "hrnet_w18_small"])
def test_taken_over_names_give_features_for_any_input_size(name):
    """timm's built-in returns the incre features and fails on 250x330; ours returns the branches at any size."""
    with torch.device("meta"):
        model = timm.create_model(name, features_only=True)
    feats = model(torch.empty(1, 3, 250, 330, device="meta"))
    assert model.feature_info.channels() == [64, *MODELS[name].arch.branch_channels]
    assert [tuple(f.shape[-2:]) for f in feats] == [(-(-250 // r), -(-330 // r)) for r in (2, 4, 8, 16, 32)]


def test_default_features_are_stem_and_raw_branches():
    model = timm.create_model("hrnet_w32", features_only=True)
    assert model.feature_info.channels() == [64, 32, 64, 128, 256]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]


#: the fields of timm's HRNet tags (the rest, descriptions and papers, are ours to add)
_TAG_FIELDS = (
    "num_classes",
    "input_size",
    "test_input_size",
    "pool_size",
    "crop_pct",
    "test_crop_pct",
    "interpolation",
    "mean",
    "std",
    "first_conv",
    "classifier",
    "license",
)


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timms_pretrained_tags_are_kept(name):
    timm_tags = list(timm_hrnet.default_cfgs[name].tags)
    assert [t.removeprefix(f"{name}.") for t in timm.list_pretrained(f"{name}.*")] == sorted(timm_tags)
    assert timm.models.get_pretrained_cfg(name).tag == timm_tags[0]  # the same default tag
    for tag in timm_tags:
        theirs = timm_hrnet.default_cfgs[name].cfgs[tag]
        ours = timm.models.get_pretrained_cfg(f"{name}.{tag}")
        assert ours.hf_hub_id == f"timm/{name}.{tag}"
        assert {f: getattr(ours, f) for f in _TAG_FIELDS} == {f: getattr(theirs, f) for f in _TAG_FIELDS}


@pytest.mark.parametrize("prefix", ["hrnetv2", "hrnetv2p"])
@pytest.mark.parametrize("trunk", list(TRUNKS))
def test_v2_and_v2p_tags_resolve_to_timms_files_of_the_same_trunk(prefix, trunk):
    name = f"{prefix}_{trunk}"
    v1 = f"hrnet_{trunk}"
    assert [t.split(".")[1] for t in timm.list_pretrained(f"{name}.*")] == [
        t.split(".")[1] for t in timm.list_pretrained(f"{v1}.*")
    ]
    for tag in timm_hrnet.default_cfgs[v1].tags:
        cfg = timm.models.get_pretrained_cfg(f"{name}.{tag}")
        assert cfg.hf_hub_id == f"timm/{v1}.{tag}"
        assert cfg.first_conv == "conv1" and cfg.classifier == "classifier" and cfg.paper_ids


@pytest.mark.slow
def test_importing_prints_no_warning():
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import hrnet_backbones, timm; timm.create_model('hrnet_w18')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""


@pytest.mark.slow
def test_pretrained_tags_load_through_the_hub_cache_offline(tmp_path):
    """timm's `hrnet_w18.ms_in1k` file, served by huggingface_hub from a local cache, loads into every variant."""
    builtin = randomize(HighResolutionNet(cfg_cls["hrnet_w18"]), seed=3).eval()
    weights = tmp_path / "model.safetensors"
    save_file(builtin.state_dict(), str(weights))
    cache = tmp_path / "hub"
    populate_hub_cache(cache, "timm/hrnet_w18.ms_in1k", {"model.safetensors": weights})
    x = torch.randn(1, 3, 64, 64)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(builtin(x), tmp_path / "logits.pt")

    script = textwrap.dedent(
        f"""
        import json, torch, timm, hrnet_backbones
        x = torch.load({str(tmp_path / "x.pt")!r})
        want = torch.load({str(tmp_path / "logits.pt")!r})
        out = {{}}
        for name in ("hrnet_w18.ms_in1k", "hrnetv2_w18.ms_in1k", "hrnetv2p_w18.ms_in1k"):
            m = timm.create_model(name, pretrained=True).eval()
            with torch.no_grad():
                out[name] = (m(x) - want).abs().max().item()
        f = timm.create_model("hrnetv2_w18.ms_in1k", pretrained=True, features_only=True).eval()
        out["features"] = [list(t.shape) for t in f(x)]
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("hrnet_w18.ms_in1k", "hrnetv2_w18.ms_in1k", "hrnetv2p_w18.ms_in1k"):
        assert out[name] < 1e-5, name
    assert out["features"] == [[1, 270, 16, 16]]
