"""Synchronised batch normalisation on any device and process-group backend, gloo on the CPU included.

torch's ``nn.SyncBatchNorm`` runs on CUDA only: it refuses CPU tensors, and the kernels it is built on
(``torch.batch_norm_stats``, ``batch_norm_gather_stats_with_counts``, ``batch_norm_backward_reduce``) have no CPU
implementation. :class:`CPUSyncBatchNorm` does the same computation with kernels every device has and two
collectives per layer and training step (one in the forward, one in the backward):

* forward: each process takes the per-channel mean and biased variance of its part of the batch with torch's own
  BatchNorm statistics kernel (``torch.batch_norm_update_stats``: two passes, mean first, so no
  ``E[x^2] - E[x]^2`` cancellation over the elements), turns them into ``n * mean`` and ``n * (var + mean^2)`` in
  float64 and sums those and ``n`` over the processes in ONE ``all_reduce``; the output is the input normalised
  with the global mean and variance (one ``addcmul`` pass, in the input's memory format, computed in float32
  at least and rounded once to a bfloat16 input's dtype). The running
  statistics are updated as ``nn.BatchNorm2d`` would with the whole batch: momentum (or the cumulative average
  for ``momentum=None``) and the unbiased variance of the global count.
* backward: the per-channel ``sum(dy)`` and ``sum(dy * xhat)`` from torch's batch-norm backward kernel, ONE
  ``all_reduce``, and ``grad_input`` with the global count. ``grad_weight`` and ``grad_bias`` are this process's
  sums; DDP averages them over the processes, exactly as for ``nn.SyncBatchNorm``.

As with ``nn.SyncBatchNorm``, the input gradient of each process is that of the SUM of every process's loss
(DDP's averaging of the parameter gradients then gives the gradient of the mean). The module keeps
``_BatchNorm``'s parameters and buffers, so its ``state_dict`` keys and values are those of the ``BatchNorm2d``
it replaced and a saved model loads as an ordinary one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["CPUSyncBatchNorm", "convert_sync_batchnorm"]


def _world_size(group: Any) -> int:
    """The number of processes in ``group`` (the default group if None); 1 outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor | None) -> torch.dtype:
    """float32 at least: under bfloat16 autocast x is bfloat16, and ``x * scale + shift`` with ``scale`` and
    ``shift`` rounded to bfloat16 loses the output to cancellation wherever ``|shift|`` is large against it
    (torch's own bfloat16 batch norm computes in float32 too and rounds the output once)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return dtype if weight is None else torch.promote_types(dtype, weight.dtype)


def _per_channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A (C,) tensor viewed as (1, C, 1, ...) to broadcast against an (N, C, *) tensor of ``ndim`` dimensions."""
    return t.view(1, -1, *([1] * (ndim - 2)))


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch normalisation of x (N, C, *) with the statistics of every process's x: see the module docstring."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        eps: float,
        momentum: float,
        group: Any,
    ) -> torch.Tensor:
        channels, nd = x.shape[1], x.dim()
        local_count = x.numel() // channels if channels else 0
        acc = _compute_dtype(x, weight)
        if local_count > 0:
            # scratch running buffers (momentum 0 leaves them as they are) make the kernel return its statistics
            # in their dtype: float32 for a bfloat16 x, which would otherwise get them rounded to bfloat16
            scratch = x.new_zeros(2, channels, dtype=acc)
            mean, var = torch.batch_norm_update_stats(x, scratch[0], scratch[1], 0.0)
        else:  # an empty part of the batch adds nothing to the sums
            mean = var = x.new_zeros(channels, dtype=acc)
        # one float64 buffer [n * mean, n * (var + mean^2), n] for one all_reduce
        sums = torch.cat([mean, var, mean.new_ones(1)]).double()
        sums[channels:-1].addcmul_(sums[:channels], sums[:channels])
        sums.mul_(local_count)
        dist.all_reduce(sums, group=group)
        count = int(sums[-1].item())
        if count <= 1:
            raise ValueError(
                f"batch norm in training needs more than one value per channel over all processes, got {count} "
                f"(input shape {tuple(x.shape)} here): use a larger batch or input"
            )
        moments = sums[:-1].div_(count)  # [mean, E[x^2]] of the whole batch
        mean64, var64 = moments[:channels], moments[channels:]
        var64.addcmul_(mean64, mean64, value=-1.0).clamp_(min=0.0)
        if running_mean is not None and running_var is not None:
            running_mean.lerp_(mean64.to(running_mean.dtype), momentum)
            running_var.lerp_((var64 * (count / (count - 1))).to(running_var.dtype), momentum)
        stats = moments.to(acc)
        mean, invstd = stats[:channels], stats[channels:].add(eps).rsqrt_()
        # out = x * scale + shift, scale = weight * invstd, shift = bias - mean * scale: one pass (the arithmetic
        # of torch's CPU batch-norm kernel), in x's memory format
        scale = invstd if weight is None else invstd * weight
        shift = -mean * scale if bias is None else torch.addcmul(bias, mean, scale, value=-1.0)
        out = torch.empty_like(x, dtype=stats.dtype)
        torch.addcmul(_per_channel(shift, nd), x, _per_channel(scale, nd), out=out)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.count, ctx.eps, ctx.group = count, eps, group
        return out.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        channels, nd = x.shape[1], x.dim()
        if x.numel() > 0:
            # training-mode backward with the global mean / invstd: its grad_weight and grad_bias outputs are the
            # local sum(dy * xhat) and sum(dy) (torch's fast, memory-format-aware reduction kernel)
            _, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
                dy, x, weight, None, None, mean, invstd, True, ctx.eps, [False, True, True]
            )
        else:
            sum_dy_xhat = sum_dy = mean.new_zeros(channels)
        means = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(means, group=ctx.group)
        means.div_(ctx.count)
        mean_dy, mean_dy_xhat = means[:channels], means[channels:]
        grad_x = None
        if ctx.needs_input_grad[0]:
            # grad_x = scale * (dy - mean_dy - xhat * mean_dy_xhat), xhat = (x - mean) * invstd, written as
            # dy * scale - x * slope + offset: two passes over the tensor, in x's memory format
            scale = invstd if weight is None else invstd * weight
            slope = scale * invstd * mean_dy_xhat
            offset = mean * slope - scale * mean_dy
            grad_x = torch.empty_like(x, dtype=scale.dtype)
            torch.addcmul(_per_channel(offset, nd), x, _per_channel(slope, nd), value=-1.0, out=grad_x)
            grad_x = grad_x.addcmul_(dy, _per_channel(scale, nd)).to(x.dtype)
        grad_weight = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_dy if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


class CPUSyncBatchNorm(_BatchNorm):
    """Batch normalisation over the whole batch of every process in ``process_group`` (default: the world), on
    any device and backend, gloo included (``nn.SyncBatchNorm`` needs CUDA).

    Input (N, C, *) with C = ``num_features``; the output has the input's shape and memory format. Outside
    training, outside a process group or in a group of one it is plain ``_BatchNorm`` (``F.batch_norm``), so
    evaluation and single-process use are exactly ``nn.BatchNorm2d``. Build it from a model with
    :func:`convert_sync_batchnorm`.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(
                f"expected an input of shape (N, C, *) with 2 or more dimensions, got {input.dim()}"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or _world_size(self.process_group) == 1:
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        running_mean = running_var = None
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as _BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
            running_mean, running_var = self.running_mean, self.running_var
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        return _SyncBatchNormFunction.apply(
            input, self.weight, self.bias, running_mean, running_var, self.eps, momentum, group
        )

    @classmethod
    def convert(cls, module: nn.Module, process_group: Any = None) -> nn.Module:
        """``module`` with every ``_BatchNorm`` replaced by a ``CPUSyncBatchNorm`` that shares its parameters and
        buffers (so optimizers and ``state_dict`` keys are unchanged); a batch norm ``module`` itself is returned
        replaced."""
        if isinstance(module, _BatchNorm):
            synced = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
                device="meta",  # parameters and buffers are replaced by the module's own below
            )
            if module.affine:
                synced.weight, synced.bias = module.weight, module.bias
            synced.running_mean = module.running_mean
            synced.running_var = module.running_var
            synced.num_batches_tracked = module.num_batches_tracked
            synced.train(module.training)
            if hasattr(module, "qconfig"):
                synced.qconfig = module.qconfig
            return synced
        for name, child in module.named_children():
            converted = cls.convert(child, process_group)
            if converted is not child:
                module.add_module(name, converted)
        return module


def convert_sync_batchnorm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """``module`` with its batch norms synchronised over ``process_group`` (default: the world).

    A model on CUDA gets torch's ``nn.SyncBatchNorm`` (its fused CUDA kernels); any other (the CPU with gloo)
    gets :class:`CPUSyncBatchNorm`. Either way the ``state_dict`` keys are unchanged, so a checkpoint or model
    folder written from the converted model loads into the plain one.
    """
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.is_cuda for t in tensors):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    return CPUSyncBatchNorm.convert(module, process_group)
