"""Ours is a strict superset of timm's built-in HRNet: same keys, same logits, same features, same tags."""

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
from timm.models.hrnet import HighResolutionNet, HighResolutionNetFeatures, cfg_cls

from hrnet_backbones import HRNet


@pytest.mark.parametrize("width", [18, 32, 48])
def test_state_dict_keys_and_shapes_match_timm_builtin(width):
    with torch.device("meta"):
        builtin = HighResolutionNet(cfg_cls[f"hrnet_w{width}"])
        ours = timm.create_model(f"hrnet_w{width}")
    assert isinstance(ours, HRNet)
    theirs = {k: tuple(v.shape) for k, v in builtin.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert list(mine) == list(theirs)
    assert mine == theirs


@pytest.mark.slow
def test_classification_logits_match_timm_builtin():
    builtin = randomize(HighResolutionNet(cfg_cls["hrnet_w32"])).eval()
    ours = timm.create_model("hrnet_w32", num_classes=1000).eval()
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), builtin(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("feature_location", ["incre", ""])
def test_features_match_timm_builtin(feature_location):
    builtin = randomize(
        HighResolutionNetFeatures(cfg_cls["hrnet_w18"], feature_location=feature_location)
    ).eval()
    ours = timm.create_model(
        "hrnet_w18", features_only=True, feature_location=feature_location, out_indices=(0, 1, 2, 3, 4)
    ).eval()
    ours.load_state_dict(builtin.state_dict())
    assert ours.feature_info.channels() == builtin.feature_info.channels()
    assert ours.feature_info.reduction() == builtin.feature_info.reduction()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        for a, b in zip(ours(x), builtin(x), strict=True):
            assert torch.equal(a, b)


def test_default_features_are_stem_and_raw_branches():
    model = timm.create_model("hrnet_w32", features_only=True)
    assert model.feature_info.channels() == [64, 32, 64, 128, 256]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("prefix", ["hrnet", "hrnetv2", "hrnetv2p"])
@pytest.mark.parametrize("width", [18, 32, 48])
def test_imagenet_tags_resolve_to_timms_files(prefix, width):
    name = f"{prefix}_w{width}"
    tags = timm.list_pretrained(f"{name}.*")
    assert f"{name}.ms_in1k" in tags
    cfg = timm.models.get_pretrained_cfg(f"{name}.ms_in1k")
    assert cfg.hf_hub_id == f"timm/hrnet_w{width}.ms_in1k"
    assert cfg.num_classes == 1000 and cfg.first_conv == "conv1" and cfg.classifier == "classifier"
    assert cfg.license == "mit" and cfg.paper_ids


@pytest.mark.slow
def test_timm_other_hrnet_names_are_untouched():
    with torch.device("meta"):
        for name in ("hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w30", "hrnet_w64", "hrnet_w18_ssld"):
            assert type(timm.create_model(name)) is HighResolutionNet
    assert "hrnet_w64.ms_in1k" in timm.list_pretrained("hrnet_w64*")


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
