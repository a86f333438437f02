"""The official keypoint heatmap loss (HRNet ``JointsMSELoss``), vectorised."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["KeypointMSELoss"]


class KeypointMSELoss(nn.Module):
    """``0.5 * mean((pred * w - target * w) ** 2)``, the official ``JointsMSELoss``.

    The official loss averages ``0.5 * MSELoss(pred_k * w_k, gt_k * w_k)`` over joints; with equal map sizes
    that is the mean over all elements, computed here in one pass. The weight enters squared.

    Args:
        use_target_weight: multiply by the per-instance ``target_weight`` (the codecs' ``weights``).
        joint_weights: optional ``(K,)`` per-joint weights (e.g. ``COCO_KEYPOINTS.joint_weights``), multiplied
            into the weight like the official ``USE_DIFFERENT_JOINTS_WEIGHT`` (do not also bake them into
            ``target_weight``).
        loss_weight: overall factor.

    Shapes: ``pred``, ``target`` ``(N, K, H, W)``; ``target_weight`` ``(N, K)`` or ``(N, K, 1)``.
    """

    joint_weights: Tensor | None

    def __init__(
        self,
        use_target_weight: bool = True,
        joint_weights: Sequence[float] | Tensor | None = None,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.use_target_weight = bool(use_target_weight)
        self.loss_weight = float(loss_weight)
        if joint_weights is not None:
            jw = torch.as_tensor(joint_weights, dtype=torch.float32)
            if jw.ndim != 1:
                raise ValueError(f"joint_weights must be a (K,) sequence, got shape {tuple(jw.shape)}")
            self.register_buffer("joint_weights", jw, persistent=False)
        else:
            self.joint_weights = None

    def forward(self, pred: Tensor, target: Tensor, target_weight: Tensor | None = None) -> Tensor:
        if pred.shape != target.shape or pred.ndim != 4:
            raise ValueError(
                f"pred and target must both be (N, K, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        n, k = pred.shape[:2]
        weight: Tensor | None = None
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError("use_target_weight=True needs target_weight (N, K)")
            weight = (
                target_weight.reshape(target_weight.shape[:2]) if target_weight.ndim == 3 else target_weight
            )
            if tuple(weight.shape) != (n, k):
                raise ValueError(
                    f"target_weight must be (N, K) = {(n, k)} or (N, K, 1), got {tuple(target_weight.shape)}"
                )
            weight = weight.to(pred.dtype)
        if self.joint_weights is not None:
            if self.joint_weights.numel() != k:
                raise ValueError(
                    f"joint_weights has {self.joint_weights.numel()} entries for K = {k} keypoints"
                )
            jw = self.joint_weights.to(device=pred.device, dtype=pred.dtype)
            weight = jw.expand(n, k) if weight is None else weight * jw
        if weight is None:
            diff = pred - target
        else:
            w = weight[:, :, None, None]
            diff = pred * w - target * w
        return self.loss_weight * 0.5 * diff.pow(2).mean()

    def extra_repr(self) -> str:
        jw = None if self.joint_weights is None else self.joint_weights.tolist()
        return (
            f"use_target_weight={self.use_target_weight}, joint_weights={jw}, loss_weight={self.loss_weight}"
        )
