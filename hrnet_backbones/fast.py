"""The inference fast path: ``optimize_for_inference(model)``.

What it does to a copy of the model (every variant, with or without a head, features_only or pruned):

* **BatchNorm folded** into the convolution before it (stem, blocks, shortcuts, transitions, every fusion conv,
  the ImageNet head and the landmark / segmentation head); the bias is created where the conv had none.
* **Conv + bias + residual add + ReLU as one kernel.** Each block's last convolution adds the shortcut and applies
  the ReLU in its epilogue, and each fusion sum accumulates the stride-2 convolutions straight into the row's
  output, the last one applying the fusion ReLU. On the CPU this calls oneDNN's fused convolution with
  post-ops (the kernels ``torch.compile`` itself emits for CPU convolutions); elsewhere, or when a gradient is
  needed, the same arithmetic runs as ``conv2d`` followed by in-place ``add_`` / ``relu_``.
* **Pre-packed weights** (CPU): each weight is reordered once into oneDNN's blocked layout instead of on every
  call (measured here: a third of the time of a 256-channel 3x3 convolution on the stride-32 branch).
* **Sums written in place** wherever the tensor is the module's own (a projected shortcut, the previous block's
  output, a fusion row): allocating and first-touching a fresh output costs as much as the addition itself.
* **Nearest fusion without upsampled copies.** The 1x1-projected lower branches are summed at the lowest
  resolution first and each partial sum is added into the next finer map through a broadcast view
  (``(N, C, h, f, w, f) += (N, C, h, 1, w, 1)``), so no upsampled tensor is ever materialised; sizes that are not
  a multiple of the factor (crops) are handled by the same views on the remaining rows and columns.
* **channels_last** activations and weights throughout (no NCHW <-> blocked re-layouts between layers), and an
  optional ``dtype`` (``torch.bfloat16`` / ``torch.float16``) for the weights and activations.

The result computes what the eager model computes in eval mode (fp32: within 1e-4 relative; only the order of
the fusion sums differs) and keeps the model's interface: ``forward``, ``forward_features``, ``forward_head``,
``forward_intermediates``, ``feature_info``. Outputs come back channels_last (and in ``dtype`` when given).
It is an inference model: BatchNorm statistics are frozen into the weights and its parameters do not require
gradients. ``compile=`` optionally wraps the result in ``torch.compile`` (minutes of compilation; measured
separately by the benchmark suite, never the default).
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .trunk import BasicBlock, Bottleneck, HighResolutionModule, HRNetTrunk, upsample_to

__all__ = [
    "FusedBasicBlock",
    "FusedBottleneck",
    "FusedConv2d",
    "FusedHighResolutionModule",
    "cpu_bf16_path",
    "native_bf16_cpu",
    "optimize_for_inference",
]

_CL = torch.channels_last


def _probe_onednn() -> bool:
    """Whether this torch build has oneDNN's fused convolution ops (and they run)."""
    try:
        ops = torch.ops.mkldnn
        x = torch.ones(1, 2, 3, 3).contiguous(memory_format=_CL)
        w = torch.ones(2, 2, 1, 1)
        packed = ops._reorder_convolution_weight(w, [0, 0], [1, 1], [1, 1], 1, [1, 2, 3, 3])
        y = ops._convolution_pointwise(x, packed, None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
        ops._convolution_pointwise_.binary(
            y, x, packed, None, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, None, [], ""
        )
        return bool(torch.backends.mkldnn.is_available() and torch.allclose(y, torch.full_like(y, 4.0)))
    except (AttributeError, RuntimeError):
        return False


#: oneDNN's fused conv + bias + add + ReLU kernels. They are private torch ops (``torch.compile`` lowers CPU
#: convolutions to them); eager PyTorch has no public conv with a fused residual add, so we call them directly
#: and fall back to ``conv2d`` + in-place ops whenever they are missing or the inputs do not suit them.
ONEDNN_FUSION = _probe_onednn()

#: Environment variable that makes this package treat the CPU as one without bfloat16 support: ``0`` (no oneDNN
#: bfloat16 kernels, no native bfloat16) or ``auto`` (the default: ask torch). It lets the bfloat16 fallback be
#: tested on any machine (``HRNET_BACKBONES_CPU_BF16=0 python -m pytest``). :data:`ONEDNN_BF16` reads it when this
#: module is imported, :func:`native_bf16_cpu` on each call.
CPU_BF16_ENV = "HRNET_BACKBONES_CPU_BF16"


def cpu_bf16_forced_off() -> bool:
    """Whether :data:`CPU_BF16_ENV` is ``0`` (``auto`` or unset: False; anything else is refused)."""
    value = os.environ.get(CPU_BF16_ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return False
    if value == "0":
        return True
    raise ValueError(
        f"{CPU_BF16_ENV}={value!r} is not understood: set it to 0 (treat this CPU as one without bfloat16 "
        "support) or auto (ask torch), or unset it"
    )


def _probe_onednn_bf16() -> bool:
    """Whether oneDNN's bfloat16 convolutions run on this CPU at all (natively or emulated with float32 code).

    ``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is ATen's ``mkldnn_bf16_device_check()``
    (aten/src/ATen/native/mkldnn/Utils.h): AVX512BW + AVX512VL + AVX512DQ, or AVX-NE-CONVERT. It is the very
    check behind ``mkldnn_reorder_conv2d_weight: bf16 path needs the cpu support avx_ne_convert or avx512bw,
    avx512vl and avx512dq``, and the one ``torch._inductor`` asks before it emits these kernels. It says nothing
    about speed: see :func:`native_bf16_cpu` for that.
    """
    if cpu_bf16_forced_off() or not ONEDNN_FUSION:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


#: oneDNN's bfloat16 convolution kernels run here. Without them (an AVX2-only CPU, or forced off through
#: :data:`CPU_BF16_ENV`) a bfloat16 fast model keeps bfloat16 weights and activations but computes each
#: convolution with oneDNN's float32 kernels on the upcast values and rounds the result to bfloat16, which is the
#: rounding oneDNN's bfloat16 kernels apply too (they accumulate in float32). We chose this over ATen's portable
#: bfloat16 ``conv2d`` (what ``F.conv2d`` falls back to on such CPUs), which is far slower: HRNet-W18 features at
#: 128x96, one thread, on a shared machine: fp32 fast path 601 ms, this fallback 688 ms, the portable bfloat16
#: ``conv2d`` 1705 ms (simulated with oneDNN turned off).
ONEDNN_BF16 = _probe_onednn_bf16()

#: On one thread, float32 convolutions smaller than this many multiply-adds per call (batch included) run as plain
#: ``conv2d`` + in-place add / ReLU. One call of oneDNN's fused op has a fixed cost of ~30 us (its primitive descriptor is
#: rebuilt on every call for channels_last tensors) against ~5 us for ``conv2d``: measured on one thread of an
#: AVX-512 EPYC, 1x1 convolutions of 0.4-1.6 M multiply-adds ran in 0.42-0.81x the time through ``conv2d``, 3x3
#: ones of 1.8 M in 0.93-1.05x, while from ~3 M on oneDNN's kernels and pre-packed weights win (1.0-1.3x). Whole
#: models, one thread: HRNet-W18-Small at 64x48 1.42x faster, W32 at 256x192 1.02x (batch 1) and 0.98x (batch 8).
#: On two threads W18-Small gained too (1.50x) but W32 at 256x192, batch 1, lost 7 %, so the rule stays at one
#: thread. ``benchmarks/deploy_profile.py`` prints the per-call costs.
SMALL_CONV_MACS = 2_000_000


class FusedConv2d(nn.Module):
    """A convolution with its BatchNorm folded in, computing ``act(conv(x) + bias [+ add])`` in one pass.

    ``forward(x, add=None, inplace=False, relu=None)``: ``add`` (same shape as the output) is summed before the
    ReLU; with ``inplace=True`` the result is written into ``add`` and returned. ``relu`` overrides the module's
    own activation for this call (a fusion sum applies the ReLU only after its last term). Inputs are brought to
    the weight's dtype and to ``memory_format`` on entry, so the first convolution also converts the image.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
        relu: bool,
    ):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride = list(stride)
        self.padding = list(padding)
        self.dilation = list(dilation)
        self.groups = groups
        self.relu = relu
        self.memory_format = torch.contiguous_format
        self._packed: torch.Tensor | None = None
        self._packed_key: tuple | None = None

    @classmethod
    def fold(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, relu: bool = False) -> FusedConv2d:
        """``conv`` followed by ``bn`` (eval-mode statistics) and optionally a ReLU, as one fused convolution."""
        if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise ValueError(f"cannot fuse {conv}: only explicit zero padding is supported")
        weight, bias = conv.weight, conv.bias
        if bias is None:
            bias = torch.zeros(conv.out_channels, device=weight.device, dtype=weight.dtype)
        if bn is not None:
            weight, bias = fuse_conv_bn_weights(
                weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
        return cls(weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups, relu)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def extra_repr(self) -> str:
        k = tuple(self.weight.shape[2:])
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={k}, stride={tuple(self.stride)}, "
            f"padding={tuple(self.padding)}, relu={self.relu}"
        )

    def __getstate__(self) -> dict[str, Any]:
        # the packed weight is an opaque oneDNN tensor: rebuilt on demand, never copied or pickled
        state = self.__dict__.copy()
        state["_packed"] = state["_packed_key"] = None
        return state

    def _onednn_weight(self, x: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
        """The weight in ``compute`` dtype, reordered once into oneDNN's blocked layout (channels_last only: with a
        packed weight oneDNN returns channels_last whatever the input, so NCHW models keep the plain layout)."""
        w = self.weight
        if self.memory_format != _CL and w.dtype == compute:
            return w
        key = (w.device, w.dtype, compute, w.data_ptr(), w._version)
        if self._packed_key != key:
            wc = w.detach().to(compute)
            if self.memory_format == _CL:
                wc = torch.ops.mkldnn._reorder_convolution_weight(
                    wc, self.padding, self.stride, self.dilation, self.groups, list(x.shape)
                )
            self._packed, self._packed_key = wc, key
        return self._packed

    def _macs(self, x: torch.Tensor) -> int:
        """Multiply-adds of this convolution on ``x`` (N, C, H, W)."""
        out_c, in_c, kh, kw = self.weight.shape
        n, _, h, w = x.shape
        return n * out_c * in_c * kh * kw * (h // self.stride[0]) * (w // self.stride[1])

    def _onednn_dtype(self, x: torch.Tensor, add: torch.Tensor | None) -> torch.dtype | None:
        """The dtype oneDNN's fused kernels compute this call in, or None for the portable ``conv2d`` path.

        float32 computes in float32; bfloat16 in bfloat16 where oneDNN has bfloat16 kernels for this CPU
        (:data:`ONEDNN_BF16`) and in float32 elsewhere.
        """
        if not ONEDNN_FUSION or x.device.type != "cpu":
            return None
        if torch.compiler.is_compiling():
            return None  # let the compiler see a plain conv2d and do its own fusion
        if x.dtype == torch.float32:
            if torch.get_num_threads() == 1 and self._macs(x) < SMALL_CONV_MACS:
                return None
            compute = torch.float32
        elif x.dtype == torch.bfloat16:
            compute = torch.bfloat16 if ONEDNN_BF16 else torch.float32
        else:
            return None
        if torch.is_grad_enabled() and x.requires_grad:
            return None
        if add is not None and (
            add.dtype != x.dtype or not add.is_contiguous(memory_format=self.memory_format)
        ):
            return None
        return compute

    def forward(
        self,
        x: torch.Tensor,
        add: torch.Tensor | None = None,
        inplace: bool = False,
        relu: bool | None = None,
    ) -> torch.Tensor:
        relu = self.relu if relu is None else relu
        if inplace and torch.is_grad_enabled() and (x.requires_grad or add.requires_grad):
            inplace = False  # autograd needs the tensors it saved unchanged
        if x.dtype != self.weight.dtype:
            x = x.to(self.weight.dtype)
        if not x.is_contiguous(memory_format=self.memory_format):
            x = x.contiguous(memory_format=self.memory_format)
        compute = self._onednn_dtype(x, add)
        if compute is not None:
            return self._onednn_forward(x, add, inplace, relu, compute)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if add is not None:
            y = add.add_(y) if inplace else y.add_(add)
        return torch.relu_(y) if relu else y

    def _onednn_forward(
        self, x: torch.Tensor, add: torch.Tensor | None, inplace: bool, relu: bool, compute: torch.dtype
    ) -> torch.Tensor:
        """One oneDNN call: conv + bias (+ add) (+ ReLU), computed in ``compute``; the result in ``x``'s dtype."""
        ops = torch.ops.mkldnn
        w = self._onednn_weight(x, compute)
        args = (self.padding, self.stride, self.dilation, self.groups)
        unary = "relu" if relu else None
        if compute == x.dtype:
            if add is None:
                return ops._convolution_pointwise(x, w, self.bias, *args, unary or "none", [], "")
            if inplace:
                return ops._convolution_pointwise_.binary(
                    add, x, w, self.bias, *args, "add", 1.0, unary, [], ""
                )
            return ops._convolution_pointwise.binary(x, add, w, self.bias, *args, "add", 1.0, unary, [], "")
        # bfloat16 values, float32 arithmetic (see ONEDNN_BF16): one rounding to bfloat16 at the end
        xc, bias = x.to(compute), self.bias.to(compute)
        if add is None:
            y = ops._convolution_pointwise(xc, w, bias, *args, unary or "none", [], "")
        else:
            y = ops._convolution_pointwise.binary(
                xc, add.to(compute), w, bias, *args, "add", 1.0, unary, [], ""
            )
        return add.copy_(y) if inplace else y.to(x.dtype)


def _fold_sequential(seq: nn.Sequential) -> FusedConv2d:
    """``Sequential(conv, bn[, relu])`` (a transition, a fusion step, a head layer) as one fused convolution."""
    if not _is_conv_bn(seq):
        raise TypeError(f"expected Sequential(Conv2d, BatchNorm2d[, ReLU]), got {seq}")
    return FusedConv2d.fold(seq[0], seq[1], relu=len(seq) == 3)


class FusedBasicBlock(nn.Module):
    """:class:`~hrnet_backbones.trunk.BasicBlock` as two fused convolutions; the second adds the shortcut.

    The sum is written into the shortcut tensor when this block owns it (a projected shortcut, or with
    ``owns_input`` the output of the previous block of the same stack): no fresh output tensor, whose allocation
    and first touch cost as much as the addition. A tensor passed in by a caller is never modified.
    """

    def __init__(self, block: BasicBlock, owns_input: bool = False):
        super().__init__()
        self.conv1 = FusedConv2d.fold(block.conv1, block.bn1, relu=True)
        self.conv2 = FusedConv2d.fold(block.conv2, block.bn2, relu=True)
        self.downsample = None if block.downsample is None else _fold_sequential(block.downsample)
        self.owns_input = owns_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        inplace = self.owns_input or self.downsample is not None
        return self.conv2(self.conv1(x), add=shortcut, inplace=inplace)


class FusedBottleneck(nn.Module):
    """:class:`~hrnet_backbones.trunk.Bottleneck` as three fused convolutions; the last adds the shortcut (in
    place under the same rule as :class:`FusedBasicBlock`)."""

    def __init__(self, block: Bottleneck, owns_input: bool = False):
        super().__init__()
        self.conv1 = FusedConv2d.fold(block.conv1, block.bn1, relu=True)
        self.conv2 = FusedConv2d.fold(block.conv2, block.bn2, relu=True)
        self.conv3 = FusedConv2d.fold(block.conv3, block.bn3, relu=True)
        self.downsample = None if block.downsample is None else _fold_sequential(block.downsample)
        self.owns_input = owns_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        inplace = self.owns_input or self.downsample is not None
        return self.conv3(self.conv2(self.conv1(x)), add=shortcut, inplace=inplace)


def _spans(size: int, factor: int) -> list[tuple[slice, slice, int, int]]:
    """Split a target side into whole blocks of ``factor`` and a cropped remainder.

    Returns ``(target slice, source slice, repeat, count)``: ``count`` source pixels each repeated ``repeat``
    times fill the target slice.
    """
    q, r = divmod(size, factor)
    spans = [(slice(0, q * factor), slice(0, q), factor, q)] if q else []
    if r:
        spans.append((slice(q * factor, size), slice(q, q + 1), r, 1))
    return spans


def add_nearest_upsampled(
    base: torch.Tensor, low: torch.Tensor, factor: int, inplace: bool = False, relu: bool = False
) -> torch.Tensor:
    """``base + nearest_upsample(low, factor)[..., :H, :W]`` without materialising the upsampled map.

    ``base``: (N, C, H, W); ``low``: (N, C, ceil(H / factor), ceil(W / factor)) or larger. Each target block of
    ``factor`` x ``factor`` pixels is a broadcast view of one ``low`` pixel. The sum goes into a new tensor of
    ``base``'s layout, or into ``base`` itself with ``inplace=True``; ``relu=True`` applies a ReLU in the same pass.
    """
    if torch.compiler.is_compiling() or (
        torch.is_grad_enabled() and (base.requires_grad or low.requires_grad)
    ):
        # out= views record no autograd and break a torch.compile graph; a compiler fuses this form by itself
        y = base + upsample_to(low, base.shape[-2:], factor, "nearest")
        return torch.relu(y) if relu else y
    out = base if inplace else torch.empty_like(base)
    # aten's fused add + ReLU kernel exists for CPU float32; elsewhere the ReLU is a second, in-place pass
    fused_relu = relu and out.device.type == "cpu" and out.dtype == torch.float32
    add = torch.ops.aten._add_relu.out if fused_relu else torch.add
    h, w = base.shape[-2:]
    for th, sh, fh, nh in _spans(h, factor):
        for tw, sw, fw, nw in _spans(w, factor):
            src = low[:, :, sh, sw][:, :, :, None, :, None]
            b = base[:, :, th, tw].unflatten(3, (nw, fw)).unflatten(2, (nh, fh))
            o = out[:, :, th, tw].unflatten(3, (nw, fw)).unflatten(2, (nh, fh))
            add(b, src, out=o)
    return torch.relu_(out) if relu and not fused_relu else out


class FusedHighResolutionModule(nn.Module):
    """:class:`~hrnet_backbones.trunk.HighResolutionModule` with fused blocks and a copy-free fusion.

    ``fuse_layers[i][j]`` keeps the original layout: a :class:`FusedConv2d` (1x1) for ``j > i``, ``Identity`` for
    ``j == i`` and a ``Sequential`` of stride-2 :class:`FusedConv2d` for ``j < i``. Output row ``i`` is

        relu(x_i + sum_{j>i} up(P_ij x_j) + sum_{j<i} D_ij x_j)

    computed as: the projections summed coarse-to-fine (nearest mode) or upsampled one by one (bilinear modes),
    added to ``x_i`` into a fresh tensor, then each stride-2 chain's last convolution accumulating into it in
    place, the last one applying the ReLU.
    """

    def __init__(self, module: HighResolutionModule, branches: nn.ModuleList, fuse_layers: nn.ModuleList):
        super().__init__()
        self.num_branches = module.num_branches
        self.upsample_mode = module.upsample_mode
        self.align_corners = module.align_corners
        self.out_branches = module.out_branches
        self.out_channels = module.out_channels
        self.strides = module.strides  # 4, 8, 16, 32, capped at the output stride (dilated branches)
        self.branches = branches
        self.fuse_layers = fuse_layers

    def _upsampled_sum(self, i: int, xs: list[torch.Tensor], relu: bool) -> torch.Tensor | None:
        """A fresh tensor ``x_i + sum_{j>i} up(P_ij x_j)`` (ReLU applied if ``relu``), or None when row ``i`` has
        no coarser branches."""
        row = self.fuse_layers[i]
        if i == self.num_branches - 1:
            return None
        base = xs[i]
        s = self.strides
        if self.upsample_mode == "nearest":
            z = None
            for j in range(self.num_branches - 1, i, -1):
                low = row[j](xs[j])
                z = low if z is None else add_nearest_upsampled(low, z, s[j + 1] // s[j], inplace=True)
            return add_nearest_upsampled(base, z, s[i + 1] // s[i], relu=relu)
        acc = None
        for j in range(i + 1, self.num_branches):
            t = upsample_to(
                row[j](xs[j]), base.shape[-2:], s[j] // s[i], self.upsample_mode, self.align_corners
            )
            acc = base + t if acc is None else acc.add_(t)
        return torch.relu_(acc) if relu else acc

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        out = []
        for i in self.out_branches:
            row = self.fuse_layers[i]
            acc = self._upsampled_sum(i, xs, relu=i == 0)  # row 0 has no finer branches: its ReLU goes here
            for j in range(i):
                h = xs[j]
                for step in row[j][:-1]:
                    h = step(h)
                last = j == i - 1
                if acc is None:
                    acc = row[j][-1](h, add=xs[i], relu=last)
                else:
                    acc = row[j][-1](h, add=acc, inplace=True, relu=last)
            out.append(acc)
        return out


def _fuse_module(module: HighResolutionModule) -> FusedHighResolutionModule:
    branches = nn.ModuleList(_fuse_children(b) for b in module.branches)
    rows = nn.ModuleList()
    for i, row in enumerate(module.fuse_layers):
        fused_row = nn.ModuleList()
        for j, layer in enumerate(row):
            if j == i:
                fused_row.append(nn.Identity())
            elif j > i:
                fused_row.append(_fold_sequential(layer))
            else:
                fused_row.append(nn.Sequential(*(_fold_sequential(step) for step in layer)))
        rows.append(fused_row)
    return FusedHighResolutionModule(module, branches, rows)


def _fuse_children(module: nn.Module) -> nn.Module:
    """Replace, below ``module``, every part that has a fused form; returns the (possibly new) module."""
    if isinstance(module, BasicBlock):
        return FusedBasicBlock(module)
    if isinstance(module, Bottleneck):
        return FusedBottleneck(module)
    if isinstance(module, nn.Sequential) and len(module) and all(type(b) in _BLOCKS for b in module):
        # a stack of blocks (make_layer): each block after the first owns its input, the previous block's output
        return nn.Sequential(*(_BLOCKS[type(b)](b, owns_input=k > 0) for k, b in enumerate(module)))
    if isinstance(module, HighResolutionModule):
        return _fuse_module(module)
    if isinstance(module, nn.Sequential) and _is_conv_bn(module):
        return _fold_sequential(module)
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
        return FusedConv2d.fold(module)
    if isinstance(module, nn.Sequential) and len(module) > 3 and _is_conv_bn(list(module)[:3]):
        # the landmark / segmentation head: conv, BN, ReLU, conv (indices kept so pre_logits still works)
        module[0] = FusedConv2d.fold(module[0], module[1], relu=True)
        module[1] = nn.Identity()
        module[2] = nn.Identity()
        for k in range(3, len(module)):
            module[k] = _fuse_children(module[k])
        return module
    if isinstance(module, HRNetTrunk):
        _fold_stem(module)
    for name, child in module.named_children():
        new = _fuse_children(child)
        if new is not child:
            setattr(module, name, new)
    return module


_BLOCKS = {BasicBlock: FusedBasicBlock, Bottleneck: FusedBottleneck}


def _is_conv_bn(seq: nn.Sequential | list[nn.Module]) -> bool:
    mods = list(seq)
    return (
        2 <= len(mods) <= 3
        and isinstance(mods[0], nn.Conv2d)
        and isinstance(mods[1], nn.BatchNorm2d)
        and (len(mods) == 2 or isinstance(mods[2], nn.ReLU))
    )


def _fold_stem(trunk: HRNetTrunk) -> None:
    """conv1/bn1/act1 (and conv2/bn2/act2 unless pruned) as fused convs; the BN and ReLU slots become Identity."""
    for conv, bn, act in (("conv1", "bn1", "act1"), ("conv2", "bn2", "act2")):
        c, b = getattr(trunk, conv), getattr(trunk, bn)
        if isinstance(c, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
            setattr(trunk, conv, FusedConv2d.fold(c, b, relu=True))
            setattr(trunk, bn, nn.Identity())
            setattr(trunk, act, nn.Identity())


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, from ``torch.cpu.get_capabilities()``);
    without it bfloat16 convolutions are emulated with float32 instructions plus conversions, slower than plain
    float32. False when :data:`CPU_BF16_ENV` is ``0``."""
    if cpu_bf16_forced_off():
        return False
    checks = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", None),
        getattr(torch.cpu, "_is_amx_tile_supported", None),
    )
    return any(check() for check in checks if check is not None)


def cpu_bf16_path() -> str:
    """How a bfloat16 fast model computes its convolutions on this CPU: ``"onednn-bf16"`` (oneDNN's bfloat16
    kernels) or ``"fp32-compute"`` (bfloat16 tensors, float32 oneDNN kernels: see :data:`ONEDNN_BF16`)."""
    return "onednn-bf16" if ONEDNN_BF16 else "fp32-compute"


def _warn_bf16_without_native_support() -> None:
    if ONEDNN_BF16:
        how = "oneDNN emulates bfloat16 with float32 instructions"
    else:
        how = (
            "this CPU lacks the AVX512BW/VL/DQ (or AVX-NE-CONVERT) instructions oneDNN's bfloat16 convolutions "
            "need, so the fast path keeps bfloat16 weights and activations and computes each convolution in "
            "float32"
        )
    warnings.warn(
        f"dtype=torch.bfloat16 on a CPU without native bfloat16 (no AVX512-BF16 or AMX): {how}; it runs slower "
        "than float32 here, so leave dtype unset on this machine",
        UserWarning,
        stacklevel=3,
    )


def optimize_for_inference(
    model: nn.Module,
    *,
    channels_last: bool = True,
    dtype: torch.dtype | None = None,
    compile: str | None = None,
    inplace: bool = False,
) -> nn.Module:
    """An inference-only copy of an HRNet model that computes the same outputs faster (see the module docstring).

    Args:
        model: any model of this package (``timm.create_model("hrnet_w32", ...)`` with any head, ``features_only``,
            pruned, or a ``feature_cls="getter"`` wrapper) in **eval mode**; BatchNorm statistics are folded in,
            so a model in training mode is refused rather than silently switched.
        channels_last: keep activations and weights channels_last (NHWC), oneDNN's and cuDNN's native layout.
        dtype: cast weights (and, on entry, inputs) to this dtype, e.g. ``torch.bfloat16`` on CPUs with AMX /
            AVX512-BF16 or ``torch.float16`` on GPUs; folding is done in the original precision first.
            ``torch.bfloat16`` works on every x86-64 CPU: where oneDNN has no bfloat16 kernels (AVX2-only CPUs)
            the convolutions compute in float32 on the bfloat16 values (:func:`cpu_bf16_path` says which).
        compile: a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``...) to wrap the
            result in; compilation takes minutes on the first call, so it is opt-in (on the CPU, Inductor's
            ``torch._inductor.config.freezing = True`` lets it pre-pack the weights as the eager fast path does).
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The optimised model (eval mode, parameters without gradients). Calling it again on its own result is a
        no-op apart from the ``dtype`` / ``channels_last`` / ``compile`` options.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize_for_inference expects an nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError(
            "optimize_for_inference folds BatchNorm running statistics into the convolutions, which reproduces "
            "eval-mode outputs only, but the model is in training mode; call model.eval() first"
        )
    if not any(isinstance(m, (HRNetTrunk, FusedConv2d)) for m in model.modules()):
        raise TypeError(
            f"optimize_for_inference expects a model of this package (an HRNet built by timm.create_model), "
            f"got {type(model).__name__}; for other models use torch.compile"
        )
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if dtype == torch.bfloat16 and on_cpu and not native_bf16_cpu():
        _warn_bf16_without_native_support()
    # under torch.inference_mode the folded weights would be inference tensors, which have no version counter
    # (the packed-weight cache keys on it) and cannot be used outside that mode: build them as normal tensors
    with torch.inference_mode(False), torch.no_grad():
        if not inplace:
            model = copy.deepcopy(model)
        model = _fuse_children(model)
        leftover = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        if leftover:
            raise RuntimeError(f"BatchNorm layers left unfused (please report this): {leftover}")
        if dtype is not None:
            model.to(dtype=dtype)
        memory_format = _CL if channels_last else torch.contiguous_format
        for m in model.modules():
            if isinstance(m, FusedConv2d):
                m.memory_format = memory_format
                m.weight.data = m.weight.data.contiguous(memory_format=memory_format)
        for p in model.parameters():
            p.requires_grad_(False)
    model.eval()
    if compile is not None:
        model = torch.compile(model, mode=None if compile == "default" else compile)
    return model
