"""A tiny in-memory keypoint data set for the training tests: bright squares where the keypoints are.

Each item is a pure function of ``(seed, epoch, index)`` like the real data sets' augmentation, so runs with any
number of DataLoader workers, and interrupted runs, see the same data.
"""

from __future__ import annotations

import json

import torch
from torch.utils.data import Dataset

from hrnet_backbones.keypoints import KeypointLayout
from hrnet_backbones.train import make_codec
from tests.helpers import MICRO

#: the micro trunk as the --arch JSON the training config takes
MICRO_ARCH = json.dumps(MICRO.to_dict())
SIZE = (32, 32)


class Interrupted(RuntimeError):
    """Raised by the data set to cut a run short at a chosen epoch."""


class Squares(Dataset):
    """``n`` crops of ``size`` (H, W) with ``k`` keypoints drawn as 3x3 squares (keypoint j in channel j % 3)."""

    def __init__(self, n: int = 16, k: int = 3, size=SIZE, seed: int = 0, fail_at_epoch: int | None = None):
        self.n, self.k, self.size, self.seed = n, k, size, seed
        self.fail_at_epoch = fail_at_epoch
        names = tuple(f"p{i}" for i in range(k))
        self.layout = KeypointLayout("squares", names, ((0, 1),), skeleton=((0, 1), (1, 2)))
        self.num_keypoints = k
        self.codec = make_codec("msra", size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.epoch == self.fail_at_epoch:
            raise Interrupted(f"stopped at epoch {self.epoch}")
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1009 + index)
        h, w = self.size
        kp = torch.rand(1, self.k, 2, generator=gen) * torch.tensor([w - 8.0, h - 8.0]) + 4
        image = torch.rand(3, h, w, generator=gen) * 0.2
        for j, (x, y) in enumerate(kp[0].round().long().tolist()):
            image[j % 3, y - 1 : y + 2, x - 1 : x + 2] = 1.0
        heatmaps, weights = self.codec.encode(kp, torch.ones(1, self.k))
        return {"image": (image - 0.45) / 0.25, "heatmaps": heatmaps[0], "weights": weights[0]}
