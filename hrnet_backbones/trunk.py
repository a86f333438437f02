"""The HRNet trunk: stem, layer1, transitions and the multi-resolution modules (parallel branches + fusion).

Module and parameter names follow the official HRNet code (and so timm's ``HighResolutionNet``): ``conv1``,
``bn1``, ``conv2``, ``bn2``, ``layer1``, ``transition{1,2,3}``, ``stage{2,3,4}.{m}.branches`` and
``.fuse_layers``. Checkpoints of every official family therefore map onto it key for key.

Blocks are written here rather than taken from ``timm.models.resnet``: the official key layout must hold exactly,
and the inference fast path folds each BatchNorm into its convolution and sums residuals in place, which needs
plain conv/bn pairs without timm's optional attention, anti-aliasing and drop-block hooks.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import HRNetConfig, StageSpec

__all__ = [
    "OUTPUT_STRIDES",
    "BasicBlock",
    "Bottleneck",
    "HighResolutionModule",
    "HRNetTrunk",
    "branch_strides",
    "down_step",
    "upsample_to",
]

BN_MOMENTUM = 0.1

#: Output strides the trunk can be built for: 32 is the published network; 16 and 8 keep the lowest branches at
#: that stride and dilate them instead (as DeepLab dilates a ResNet), with exactly the same parameters.
OUTPUT_STRIDES = (8, 16, 32)


def branch_strides(output_stride: int = 32, num_branches: int = 4) -> tuple[int, ...]:
    """The stride of each branch: 4, 8, 16, 32, each capped at ``output_stride``."""
    return tuple(min(4 * 2**b, output_stride) for b in range(num_branches))


def down_step(nominal_in: int, output_stride: int) -> tuple[int, int]:
    """(stride, dilation) of a 3x3 conv that takes a map of nominal stride ``nominal_in`` to ``2 * nominal_in``.

    Past ``output_stride`` the conv keeps the resolution (stride 1) and is dilated by the factor its input has
    already lost (the "first dilation" of a dilated ResNet stage), so its taps land on the same input pixels as
    in the stride-32 network.
    """
    stride = 2 if 2 * nominal_in <= output_stride else 1
    return stride, nominal_in // min(nominal_in, output_stride)


def _bn(channels: int, **dd) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, **dd)


def _conv3x3(in_chs: int, out_chs: int, stride: int = 1, dilation: int = 1, **dd) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 3, stride, padding=dilation, dilation=dilation, bias=False, **dd)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (expansion 1); both dilated by ``dilation``."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation, **dd)
        self.bn1 = _bn(planes, **dd)
        self.conv2 = _conv3x3(planes, planes, 1, dilation, **dd)
        self.bn2 = _bn(planes, **dd)
        self.downsample = downsample
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += shortcut  # in place: the BN output is not needed by autograd, and no new full-size tensor
        return self.act(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (expansion 4) with a residual connection; the 3x3 is dilated by ``dilation``."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False, **dd)
        self.bn1 = _bn(planes, **dd)
        self.conv2 = _conv3x3(planes, planes, stride, dilation, **dd)
        self.bn2 = _bn(planes, **dd)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False, **dd)
        self.bn3 = _bn(planes * self.expansion, **dd)
        self.downsample = downsample
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut
        return self.act(out)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_layer(
    block: str,
    inplanes: int,
    planes: int,
    num_blocks: int,
    stride: int = 1,
    dilation: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """A stack of ``num_blocks`` blocks; the first one projects the shortcut when the shape changes."""
    dd = dict(device=device, dtype=dtype)
    block_cls = BLOCKS[block]
    out_chs = planes * block_cls.expansion
    downsample = None
    if stride != 1 or inplanes != out_chs:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_chs, 1, stride, bias=False, **dd), _bn(out_chs, **dd)
        )
    layers = [block_cls(inplanes, planes, stride, downsample, dilation, **dd)]
    layers += [block_cls(out_chs, planes, dilation=dilation, **dd) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def upsample_to(
    x: torch.Tensor, size: tuple[int, int] | torch.Size, factor: int, mode: str, align_corners: bool = False
) -> torch.Tensor:
    """Bring ``x`` up by ``factor`` so that it lands exactly on ``size`` (see ``config.FUSION_UPSAMPLE_MODES``).

    Every stride-2 convolution here maps a side ``s`` to ``ceil(s / 2)``, so ``factor`` times the low-resolution
    side is never smaller than the target side: cropping the nearest upsample keeps each high-resolution pixel
    aligned with the low-resolution pixel whose receptive field it sits in, for any input size. ``factor`` 1 (two
    branches at the same stride, which only happens with ``output_stride`` < 32) returns ``x`` itself.
    """
    if factor == 1:
        return x
    if mode == "nearest":
        return F.interpolate(x, scale_factor=float(factor), mode="nearest")[..., : size[0], : size[1]]
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    # "bilinear_scale" (mmsegmentation): scale first, then resize to the target
    x = F.interpolate(x, scale_factor=float(factor), mode="bilinear", align_corners=align_corners)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class HighResolutionModule(nn.Module):
    """Parallel branch stacks followed by the exchange (fusion) across resolutions.

    ``fuse_layers[i][j]`` brings branch ``j`` to branch ``i``: identity for ``j == i``; 1x1 conv + BN and then
    upsampling for ``j > i``; a chain of ``i - j`` stride-2 3x3 conv + BN (ReLU between) for ``j < i``.
    ``out_branches`` lists the branches this module outputs; rows of the others are left empty (no weights), which
    is how the single-scale last module of the official pose models and pruned feature extractors are expressed.
    With ``output_stride`` < 32 the branches past it stay at that stride, dilated (see :func:`branch_strides`).
    """

    def __init__(
        self,
        spec: StageSpec,
        out_branches: tuple[int, ...] | None = None,
        upsample_mode: str = "nearest",
        align_corners: bool = False,
        output_stride: int = 32,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        n = spec.num_branches
        self.num_branches = n
        self.upsample_mode = upsample_mode
        self.align_corners = align_corners
        self.output_stride = output_stride
        self.strides = branch_strides(output_stride, n)
        self.out_branches = tuple(range(n)) if out_branches is None else tuple(sorted(set(out_branches)))
        # the transition before each stage already brings every branch to its width
        self.out_channels = spec.branch_channels
        self.branches = nn.ModuleList(
            make_layer(
                spec.block,
                self.out_channels[b],
                spec.num_channels[b],
                spec.num_blocks[b],
                dilation=4 * 2**b // self.strides[b],
                **dd,
            )
            for b in range(n)
        )
        if n == 1:
            self.fuse_layers = nn.ModuleList()
        else:
            self.fuse_layers = nn.ModuleList(
                self._make_fuse_row(i, **dd) if i in self.out_branches else nn.ModuleList()
                for i in range(max(self.out_branches) + 1)
            )
        self.fuse_act = nn.ReLU(inplace=True)  # applied to a sum this module owns

    def _make_fuse_row(self, i: int, **dd) -> nn.ModuleList:
        chs = self.out_channels
        row = []
        for j in range(self.num_branches):
            if j > i:
                row.append(nn.Sequential(nn.Conv2d(chs[j], chs[i], 1, bias=False, **dd), _bn(chs[i], **dd)))
            elif j == i:
                row.append(nn.Identity())
            else:
                steps = []
                for k in range(i - j):
                    last = k == i - j - 1
                    out_chs = chs[i] if last else chs[j]
                    stride, dilation = down_step(4 * 2 ** (j + k), self.output_stride)
                    step = [_conv3x3(chs[j], out_chs, stride, dilation, **dd), _bn(out_chs, **dd)]
                    if not last:
                        step.append(nn.ReLU(inplace=True))
                    steps.append(nn.Sequential(*step))
                row.append(nn.Sequential(*steps))
        return nn.ModuleList(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.num_branches == 1:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            if len(row) == 0:
                continue
            size = xs[i].shape[-2:]
            y = None
            # summed in branch order, like the official code, so results match it bit for bit
            for j, fuse in enumerate(row):
                if j == i:
                    t = xs[j]
                elif j < i:
                    t = fuse(xs[j])
                else:
                    factor = self.strides[j] // self.strides[i]
                    t = upsample_to(fuse(xs[j]), size, factor, self.upsample_mode, self.align_corners)
                # in place once y is a sum of our own (branch i's output is still read by the other rows)
                y = t if y is None else (y + t if y is xs[i] else y.add_(t))
            out.append(self.fuse_act(y))
        return out


@contextlib.contextmanager
def _batchnorm_statistics_kept(module: nn.Module):
    """Put back the BatchNorm running statistics (and batch counts) of ``module`` when the block ends.

    Gradient checkpointing runs a module's forward a second time during the backward pass. In training mode each
    BatchNorm would then update its running statistics twice per step (and count the batch twice), so a
    checkpointed run would end with other statistics than the same run without checkpointing. The second,
    recomputing pass runs inside this block, which undoes its updates.
    """
    buffers = [
        b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()
    ]
    saved = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in zip(buffers, saved):
                b.copy_(v)


class HRNetTrunk(nn.Module):
    """Stem, layer1 and stages 2-4 of an HRNet; ``forward_stem`` and ``forward_branches`` run them.

    Subclasses (the timm model) inherit these attributes directly, so state-dict keys stay unprefixed.
    ``output_stride`` (32, 16 or 8) caps the stride of the branches: those that would go coarser keep the capped
    resolution and are dilated instead, so every parameter keeps its shape and pretrained weights still load.
    """

    def __init__(
        self,
        arch: HRNetConfig,
        in_chans: int = 3,
        output_stride: int = 32,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride={output_stride} is not supported; HRNet can be built for output_stride "
                f"{OUTPUT_STRIDES} (32 is the published network, 16 and 8 dilate the lowest-resolution branches)"
            )
        self.arch = arch
        self.in_chans = in_chans
        self.output_stride = output_stride
        self.grad_checkpointing = False
        self.conv1 = nn.Conv2d(in_chans, arch.stem_width, 3, 2, 1, bias=False, **dd)
        self.bn1 = _bn(arch.stem_width, **dd)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(arch.stem_width, 64, 3, 2, 1, bias=False, **dd)
        self.bn2 = _bn(64, **dd)
        self.act2 = nn.ReLU(inplace=True)
        s1 = arch.stage1
        self.layer1 = make_layer(s1.block, 64, s1.num_channels[0], s1.num_blocks[0], **dd)

        prev = s1.branch_channels
        for s, spec in enumerate(arch.stages, start=2):
            last_stage = s == 4
            setattr(
                self,
                f"transition{s - 1}",
                self._make_transition(prev, spec.branch_channels, output_stride, **dd),
            )
            modules = []
            for m in range(spec.num_modules):
                out_branches = None
                if last_stage and m == spec.num_modules - 1 and not arch.multi_scale_last:
                    out_branches = (0,)
                modules.append(
                    HighResolutionModule(
                        spec, out_branches, arch.fusion_upsample, arch.align_corners, output_stride, **dd
                    )
                )
            prev = spec.branch_channels
            setattr(self, f"stage{s}", nn.Sequential(*modules))
        self.branch_channels = arch.branch_channels
        self.branch_strides = branch_strides(output_stride)

    @staticmethod
    def _make_transition(
        prev: tuple[int, ...], cur: tuple[int, ...], output_stride: int, **dd
    ) -> nn.ModuleList:
        strides = branch_strides(output_stride, len(cur))
        layers: list[nn.Module] = []
        for i, out_chs in enumerate(cur):
            if i < len(prev):
                if prev[i] == out_chs:
                    layers.append(nn.Identity())
                else:
                    dilation = 4 * 2**i // strides[i]
                    layers.append(
                        nn.Sequential(
                            _conv3x3(prev[i], out_chs, 1, dilation, **dd),
                            _bn(out_chs, **dd),
                            nn.ReLU(inplace=True),
                        )
                    )
            else:
                steps = []
                for k in range(i + 1 - len(prev)):
                    in_chs = prev[-1]
                    step_out = out_chs if k == i - len(prev) else in_chs
                    stride, dilation = down_step(4 * 2 ** (len(prev) - 1 + k), output_stride)
                    steps.append(
                        nn.Sequential(
                            _conv3x3(in_chs, step_out, stride, dilation, **dd),
                            _bn(step_out, **dd),
                            nn.ReLU(inplace=True),
                        )
                    )
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @property
    def final_out_branches(self) -> tuple[int, ...]:
        """Branches the last module outputs (all four unless the last fusion is single-scale or pruned)."""
        return self.stage4[-1].out_branches

    def _run(self, module: nn.Module, x):
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(
                module,
                x,
                use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), _batchnorm_statistics_kept(module)),
            )
        return module(x)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-2 stem map (feature index 0)."""
        return self.act1(self.bn1(self.conv1(x)))

    def forward_branches(self, stem: torch.Tensor) -> list[torch.Tensor]:
        """Branch maps of the last module, in ``final_out_branches`` order."""
        x = self.act2(self.bn2(self.conv2(stem)))
        x = self._run(self.layer1, x)
        ys = [x]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            xs = []
            for i, t in enumerate(transition):
                # an existing branch keeps its own map; a new branch grows from the lowest-resolution one
                src = ys[i] if i < len(ys) else ys[-1]
                xs.append(t(src))
            for module in stage:
                xs = self._run(module, xs)
            ys = xs
        return ys
