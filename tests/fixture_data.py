"""Access to the copied reference fixtures (tests/fixtures, copied from the project's shared fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official"
OPENMMLAB = FIXTURES / "openmmlab"
OFFICIAL_FLAVORS = ("pose", "cls", "seg", "face", "det")


def tiny_dir(flavor: str) -> Path:
    return OFFICIAL / "tiny" / flavor


def load_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def load_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(folder / f"{name}.safetensors"))


def load_checkpoint(folder: Path):
    return torch.load(folder / "checkpoint.pth", map_location="cpu", weights_only=False)
