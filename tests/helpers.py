"""Shared pieces of the framework tests (smp, detection, DDP, export, robustness, properties).

* The tiny official fixtures as ready-built models: each family's checkpoint mapped by hand onto our key layout
  (only the few renames the fixtures README documents; the converter does this for real files).
* ``MICRO``: an even smaller trunk (one module per stage, one block per branch) for the tests whose cost grows
  with the number of layers (compilers and exporters trace every op).
* The output-size rule of every feature map, written out independently of the model code.
* ``single_thread``: a fixture for tests that run many small ops (see its docstring).
* ``write_pose_folder``: a pose model folder in the converter's format, for the commands that load one.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones import HRNetConfig, StageSpec, tiny_config
from hrnet_backbones.keypoints import COCO_KEYPOINTS
from tests.fixture_data import load_checkpoint, load_tensors, tiny_dir

# ----------------------------------------------------------------------------------------- official fixtures
#: family -> (model name, model kwargs) that reproduce the tiny official checkpoint
FAMILY_MODELS = {
    "pose": ("hrnet_w32", dict(arch=tiny_config(multi_scale_last=False), head="pose", num_classes=17)),
    "cls": ("hrnet_w32", dict(arch=tiny_config(), head_channels=(3, 6, 12, 24), head_features=80)),
    "seg": (
        "hrnetv2_w32",
        dict(arch=tiny_config(fusion_upsample="bilinear"), head="segmentation", num_classes=19),
    ),
    "face": (
        "hrnetv2_w32",
        dict(arch=tiny_config(fusion_upsample="bilinear"), head="landmark", num_classes=98),
    ),
    "det": ("hrnetv2p_w32", dict(arch=tiny_config(), head="none", neck_channels=16)),
}


def timm_state_dict(family: str) -> dict[str, torch.Tensor]:
    """The tiny ``family`` checkpoint with its keys in this package's (timm's) layout."""
    sd = load_checkpoint(tiny_dir(family))
    if family == "det":
        sd = {k.removeprefix("backbone."): v for k, v in sd["state_dict"].items()}
    elif family == "seg":
        sd = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
    out = {}
    for k, v in sd.items():
        if family == "pose" and k.startswith("final_layer."):
            k = "head." + k
        elif family == "seg" and k.startswith("last_layer."):
            k = "head." + k.removeprefix("last_layer.")
        out[k] = v
    return out


def fixture_model(family: str, **overrides) -> nn.Module:
    """The tiny ``family`` model with its official weights, in eval mode."""
    name, kwargs = FAMILY_MODELS[family]
    model = timm.create_model(name, **{**kwargs, **overrides})
    model.load_state_dict(timm_state_dict(family))
    return model.eval()


def fixture_input(family: str, odd: bool = False) -> torch.Tensor:
    """The fixture's input batch (2, 3, H, W); ``odd``: the 72x56 one."""
    return load_tensors(tiny_dir(family), "input_odd" if odd else "input")["input"]


def fixture_expected(family: str) -> dict[str, torch.Tensor]:
    return load_tensors(tiny_dir(family), "expected")


# ------------------------------------------------------------------------------------------ a pose model folder
def write_pose_folder(
    folder: Path,
    model: nn.Module,
    input_size: tuple[int, int],
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    codec: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a COCO-17 pose model) to ``folder`` as the converter would: ``model.safetensors`` and a
    ``config.json`` with its architecture, input size (H, W), normalisation, COCO keypoint metadata and, if given,
    the heatmap ``codec``. Returns the folder (for ``local-dir:`` and the commands' ``--model``)."""
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    cfg: dict[str, Any] = {
        "input_size": [3, *input_size],
        "mean": list(mean),
        "std": list(std),
        "keypoint_names": list(COCO_KEYPOINTS.keypoint_names),
        "flip_pairs": [list(p) for p in COCO_KEYPOINTS.flip_pairs],
        "skeleton": [list(p) for p in COCO_KEYPOINTS.skeleton],
        "classifier": "head.final_layer",
        "first_conv": "conv1",
    }
    if codec is not None:
        cfg["codec"] = codec
    config = {
        "architecture": "hrnet_w32",
        "num_classes": model.num_classes,
        "model_args": {"arch": model.arch.to_dict(), "head": "pose"},
        "pretrained_cfg": cfg,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ------------------------------------------------------------------------------------------------ micro trunk
MICRO = HRNetConfig(
    stage1=StageSpec(1, (1,), (8,), "BOTTLENECK"),
    stage2=StageSpec(1, (1, 1), (4, 8)),
    stage3=StageSpec(1, (1, 1, 1), (4, 8, 16)),
    stage4=StageSpec(1, (1, 1, 1, 1), (4, 8, 16, 32)),
    stem_width=16,
)


@torch.no_grad()
def calibrate_batch_norm(
    model: nn.Module, input_size: tuple[int, int] = (64, 64), steps: int = 3
) -> nn.Module:
    """Give a randomly initialised model the BatchNorm statistics of its own activations, then ``eval()``.

    Random weights with unit BN statistics let activations grow layer after layer; after this the maps are of
    order one, as with trained weights, so absolute tolerances mean what they say.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        model(torch.randn(2, getattr(model, "in_chans", 3), *input_size, generator=gen))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


# ------------------------------------------------------------------------------------------------ sizes
def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def expected_feature_size(module: str, reduction: int, size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the feature ``module`` (``feature_info``: ``stem``, ``branch1``, ``concat``, ``pyramid2``, ...)
    with reduction ``reduction`` for an input of ``size``.

    Every stride-2 convolution maps a side s to ceil(s / 2), so the stem, the branches and the V2 concatenation are
    ceil(side / stride). The V2p pyramid pools the stride-4 map by reduction / 4 with floor rounding, never below 1
    (level 0 is the stride-4 map itself).
    """
    if module.startswith("pyramid"):
        return tuple(max(1, ceil_div(s, 4) // (reduction // 4)) for s in size)
    return tuple(ceil_div(s, reduction) for s in size)


def free_port() -> int:
    """A TCP port free on localhost now, for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
