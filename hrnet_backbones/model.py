"""The timm model class: an HRNet trunk, one of three representations and an optional head.

A model's features (``feature_info``, ``forward_intermediates``, ``out_indices``) are the taps it can return, each
named by its ``module``: ``stem`` (stride 2), ``branch0``-``branch3`` (the four branches of the last module, C, 2C,
4C, 8C channels at strides 4-32), ``concat`` (V2: the branches concatenated, 15C channels at stride 4) and
``pyramid0``-``pyramid4`` (V2p: 256 channels at strides 4-64). The index of a tap is its position in
``feature_info``, which lists them by stride (timm's ``FeatureInfo`` requires reductions that never decrease), the
trunk's tap first at equal strides:

=======  ==============================================================================================
variant  indices
=======  ==============================================================================================
V1       0 stem, 1 branch0, 2 branch1, 3 branch2, 4 branch3
V2       0 stem, 1 branch0, 2 concat, 3 branch1, 4 branch2, 5 branch3
V2p      0 stem, 1 branch0, 2 pyramid0, 3 branch1, 4 pyramid1, 5 branch2, 6 pyramid2, 7 branch3, 8 pyramid3,
         9 pyramid4
=======  ==============================================================================================

A model lists only what it can return: a V2p model with the ImageNet head has no pyramid (0-4 as V1), dense heads
keep the branches and pyramid levels that reach the stride-4 map. With ``feature_location="incre"`` (V1 only) the
branches pass through the classification head's channel-increase blocks first (128, 256, 512, 1024 channels),
which is what timm's built-in HRNet returns by default.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from timm.layers import create_classifier, get_device_dtype, register_notrace_function
from timm.models import FeatureInfo
from torch import nn

from .config import HRNetConfig, hrnet_config
from .heads import HEADS, build_head
from .representations import HRFPN, REPRESENTATION_LABELS, REPRESENTATIONS, concat_branches
from .trunk import BN_MOMENTUM, HRNetTrunk, down_step, make_layer

__all__ = ["HRNet", "HRNetFeatureInfo", "HRNetFeatures"]

_logger = logging.getLogger(__name__)

HEAD_TYPES = ("classification", "none", *HEADS)
FEATURE_LOCATIONS = ("", "incre")


#: timm's ``FeatureInfo``, under the name earlier versions exported (features are now listed in timm's order).
HRNetFeatureInfo = FeatureInfo

#: tap names of the representations (the others are ``stem`` and ``branch{b}``)
_REPRESENTATION_TAPS = ("concat", "pyramid")


@register_notrace_function  # a leaf for torch.fx (which skips wrapping names starting with "_")
def check_input(x: torch.Tensor, in_chans: int, weight_dtype: torch.dtype | None = None) -> None:
    """Refuse, with what to do instead, the inputs that would otherwise fail deep inside with a cryptic error."""
    if x.dim() != 4:
        fix = "add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else "reshape it to (N, C, H, W)"
        raise ValueError(
            f"HRNet expects a batch of images shaped (N, {in_chans}, H, W), got a {x.dim()}-D tensor of shape "
            f"{tuple(x.shape)}; {fix}"
        )
    if x.shape[1] != in_chans:
        if x.shape[-1] == in_chans:
            fix = "the input looks channels-last (N, H, W, C): pass x.permute(0, 3, 1, 2)"
        else:
            fix = f"create the model with in_chans={x.shape[1]} (pretrained weights adapt the first conv)"
        raise ValueError(
            f"HRNet was built for {in_chans} input channels but got {x.shape[1]} (input shape {tuple(x.shape)}); "
            f"{fix}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"HRNet expects floating-point images, got {x.dtype}; convert and normalise them first, e.g. "
            "x.float() / 255 and then the model's mean and std (model.pretrained_cfg['mean'], ['std'])"
        )
    if 0 in x.shape[2:]:
        raise ValueError(
            f"HRNet got an image with no pixels (input shape {tuple(x.shape)}); height and width must be >= 1"
        )
    autocast = torch.is_autocast_enabled(x.device.type) if x.device.type != "meta" else False
    if weight_dtype is not None and x.dtype != weight_dtype and not autocast:
        raise TypeError(
            f"HRNet's weights are {weight_dtype} but the images are {x.dtype}; pass x.to({weight_dtype}) "
            "(NumPy arrays are float64: torch.from_numpy(a).float()), or run under torch.autocast"
        )


class HRNet(HRNetTrunk):
    """HRNet (V1 / V2 / V2p) with the timm model interface.

    Args:
        arch: the trunk (an :class:`HRNetConfig`, or its dict form); fields may also be given as keyword arguments
            (``fusion_upsample="bilinear"``, ``align_corners=True``, ``multi_scale_last=False``, ``stage4=...``).
        representation: ``"v1"`` (branches), ``"v2"`` (concatenation) or ``"v2p"`` (pyramid).
        head: ``"classification"`` (timm's ImageNet head), ``"pose"``, ``"landmark"``, ``"segmentation"`` or
            ``"none"`` (forward returns the representation).
        num_classes: classes, keypoints or landmarks of the head.
        feature_location: ``""`` (raw branches) or ``"incre"`` (branches through the channel-increase blocks).
        output_stride: 32 (the published network), 16 or 8: branches that would be coarser stay at this stride and
            are dilated instead (same parameters, so pretrained weights load); ``feature_info`` reports the true
            reductions. For DeepLab-style decoders that ask for it.
        head_channels, head_features, head_conv_bias: classification head sizes (timm: 32/64/128/256, 2048, bias).
        head_kernel_size, head_hidden_channels: pose / landmark / segmentation head sizes.
        neck_channels, neck_levels: V2p pyramid width and depth.
    """

    def __init__(
        self,
        arch: HRNetConfig | dict[str, Any] | None = None,
        representation: str = "v1",
        head: str = "classification",
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        output_stride: int = 32,
        feature_location: str = "",
        head_channels: tuple[int, ...] = (32, 64, 128, 256),
        head_features: int = 2048,
        head_conv_bias: bool = True,
        head_kernel_size: int = 1,
        head_hidden_channels: int | None = None,
        neck_channels: int = 256,
        neck_levels: int = 5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **arch_overrides: Any,
    ):
        arch = hrnet_config(32) if arch is None else HRNetConfig.coerce(arch)
        if arch_overrides:
            unknown = set(arch_overrides) - set(HRNetConfig.__dataclass_fields__)
            if unknown:
                raise TypeError(f"HRNet got unexpected keyword argument(s) {sorted(unknown)}")
            arch = HRNetConfig.from_dict({**arch.to_dict(), **arch_overrides})
        if representation not in REPRESENTATIONS:
            raise ValueError(f"unknown representation {representation!r}; expected one of {REPRESENTATIONS}")
        head = "none" if head in ("", None) else head
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown head {head!r}; expected one of {HEAD_TYPES}")
        if feature_location not in FEATURE_LOCATIONS:
            raise ValueError(f"unknown feature_location {feature_location!r}; expected '' or 'incre'")
        if feature_location == "incre" and representation != "v1":
            raise ValueError(
                "feature_location='incre' applies to the HRNetV1 branches; use an hrnet_w* model"
            )
        dd = dict(device=device, dtype=dtype)
        super().__init__(arch, in_chans, output_stride, **dd)
        self.representation = representation
        self.head_type = head
        self.num_classes = num_classes if head != "none" else 0
        self.drop_rate = drop_rate
        self.feature_location = feature_location
        if representation != "v1" and not arch.multi_scale_last:
            raise ValueError(
                f"the {REPRESENTATION_LABELS[representation]} representation needs all four branches, but this trunk's last "
                "module fuses into branch 0 only (multi_scale_last=False, as the official pose checkpoints)"
            )

        branch_chs = arch.branch_channels
        concat_chs = sum(branch_chs)
        # registration order = state-dict order: trunk, ImageNet head (as timm and the official files), neck, head
        self.incre_modules = self.downsamp_modules = self.final_layer = None
        if head == "classification" or feature_location == "incre":
            # the classification head of the official ImageNet models (and timm); incre blocks double as features
            self.incre_modules = nn.ModuleList(
                make_layer("BOTTLENECK", c, hc, 1, dilation=4 * 2**b // s, **dd)
                for b, (c, hc, s) in enumerate(zip(branch_chs, head_channels, self.branch_strides))
            )
        if head == "classification":
            self._build_aggregation(head_channels, head_features, head_conv_bias, **dd)
            self.num_features = head_features
            self.global_pool, self.head_drop, self.classifier = create_classifier(
                head_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd
            )
            self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        else:
            self.global_pool, self.head_drop, self.classifier = nn.Identity(), nn.Identity(), nn.Identity()
        # the ImageNet head reads the branches, so a V2p classifier has no pyramid (its neck would get no gradient
        # and DistributedDataParallel would need find_unused_parameters)
        has_neck = representation == "v2p" and head != "classification"
        self.neck = HRFPN(concat_chs, neck_channels, neck_levels, **dd) if has_neck else None
        self.head = None
        if head != "classification":
            self.num_features = self._stride4_channels(branch_chs, concat_chs, neck_channels)
            if head != "none":
                self.head = build_head(
                    head, self.num_features, num_classes, head_kernel_size, head_hidden_channels, **dd
                )
                self._prune_for_dense_head()
            self.head_hidden_size = self.num_features

        feature_dicts = self._feature_dicts(head_channels, neck_channels)
        self.feature_info = FeatureInfo(feature_dicts, tuple(range(len(feature_dicts))))
        self._stem_only = False
        self.init_weights()

    # ----------------------------------------------------------------------------------------------- building
    def _build_aggregation(self, head_channels, head_features, conv_bias, **dd) -> None:
        inc = [c * 4 for c in head_channels]
        steps = [down_step(4 * 2**i, self.output_stride) for i in range(len(inc) - 1)]
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(inc[i], inc[i + 1], 3, stride, dilation, dilation, bias=conv_bias, **dd),
                nn.BatchNorm2d(inc[i + 1], momentum=BN_MOMENTUM, **dd),
                nn.ReLU(inplace=True),
            )
            for i, (stride, dilation) in enumerate(steps)
        )
        self.final_layer = nn.Sequential(
            nn.Conv2d(inc[-1], head_features, 1, bias=conv_bias, **dd),
            nn.BatchNorm2d(head_features, momentum=BN_MOMENTUM, **dd),
            nn.ReLU(inplace=True),
        )

    def _prune_for_dense_head(self) -> None:
        """A dense head reads the stride-4 map only: drop the layers that cannot reach it.

        V1: the last module's fusions into branches 1-3; V2p: pyramid levels 1-4. Every remaining parameter then
        gets a gradient, so DistributedDataParallel needs no ``find_unused_parameters``; checkpoints that have
        those weights (ImageNet, detection) still load, ``checkpoint_filter_fn`` drops them.
        """
        if self.representation == "v1":
            self._keep_final_branches((0,))
        elif self.representation == "v2p":
            self.neck.keep_levels((0,))

    def _stride4_channels(self, branch_chs, concat_chs, neck_channels) -> int:
        """Channels of the stride-4 map a dense head reads: branch 0, the concatenation, or pyramid level 0."""
        return {"v1": branch_chs[0], "v2": concat_chs, "v2p": neck_channels}[self.representation]

    def _feature_dicts(self, head_channels, neck_channels) -> list[dict[str, Any]]:
        """Every tap this model can return, by stride (timm's order); at equal strides the trunk's comes first."""
        branch_chs = self.arch.branch_channels
        if self.feature_location == "incre":
            branch_chs = tuple(c * 4 for c in head_channels)
        info = [dict(num_chs=self.arch.stem_width, reduction=2, module="stem")]
        info += [
            dict(num_chs=branch_chs[b], reduction=self.branch_strides[b], module=f"branch{b}")
            for b in self.final_out_branches
        ]
        if self.representation == "v2":
            info.append(dict(num_chs=sum(self.arch.branch_channels), reduction=4, module="concat"))
        elif self.neck is not None:
            info += [
                dict(num_chs=neck_channels, reduction=4 * 2**i, module=f"pyramid{i}")
                for i in self.neck.levels
            ]
        return sorted(info, key=lambda fi: fi["reduction"])  # a stable sort: ties keep the order above

    @torch.jit.ignore
    def init_weights(self) -> None:
        if self.conv1.weight.is_meta:
            return  # nothing to initialise on the meta device (shapes only); saves seconds for full-size models
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------------ feature taps
    def feature_names(self, indices: list[int] | tuple[int, ...] | None = None) -> list[str]:
        """Tap names (``feature_info`` modules: ``stem``, ``branch1``, ``concat``, ``pyramid0``...) of ``indices``."""
        info = self.feature_info.info
        return [fi["module"] for fi in info] if indices is None else [info[i]["module"] for i in indices]

    def _computable_taps(self) -> set[str]:
        """Names of the taps the model can compute now (pruning removes some)."""
        if self._stem_only:
            return {"stem"}
        taps = {"stem", *(f"branch{b}" for b in self.final_out_branches)}
        if self.final_out_branches == (0, 1, 2, 3):
            if self.representation == "v2":
                taps.add("concat")
            elif self.representation == "v2p" and self.neck is not None:
                taps.update(f"pyramid{i}" for i in self.neck.levels)
        return taps

    def available_feature_indices(self) -> tuple[int, ...]:
        """Feature indices this model can return: all of ``feature_info`` unless it has been pruned since."""
        taps = self._computable_taps()
        return tuple(i for i, name in enumerate(self.feature_names()) if name in taps)

    def default_feature_indices(self) -> tuple[int, ...]:
        """What ``features_only=True`` returns by default: V1 all it has, V2 the concat, V2p the pyramid."""
        if self.representation == "v1":
            return self.available_feature_indices()
        return tuple(
            i
            for i in self.available_feature_indices()
            if self.feature_names([i])[0].startswith(_REPRESENTATION_TAPS)
        )

    def resolve_feature_indices(self, indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
        """timm-style indices (None: all available, int N: the last N, negatives from the end) to absolute ones."""
        n = len(self.feature_info.info)
        if indices is None:
            return list(self.available_feature_indices())
        if isinstance(indices, int):
            if not 0 < indices <= n:
                raise ValueError(f"last-n out_indices={indices} is out of range (1 to {n}){self._why_few()}")
            take = list(range(n - indices, n))
        else:
            take = []
            for i in indices:
                idx = n + i if i < 0 else i
                if not 0 <= idx < n:
                    raise ValueError(
                        f"feature index {i} is out of range for {n} features (0 to {n - 1}: "
                        f"{', '.join(self.feature_names())}){self._why_few()}"
                    )
                take.append(idx)
        missing = [i for i in take if i not in self.available_feature_indices()]
        if missing:
            if self._stem_only:
                why = "the model was pruned to its stem"
            else:
                why = "the model was pruned (prune_intermediate_layers) to other features since it was built"
            raise ValueError(
                f"feature indices {missing} ({', '.join(self.feature_names(missing))}) are not available: {why}; "
                f"available indices: {list(self.available_feature_indices())}"
            )
        return take

    def _why_few(self) -> str:
        """Why ``feature_info`` lacks taps of the variant ("" when it has them all)."""
        names = self.feature_names()
        if self.representation == "v2p" and not any(name.startswith("pyramid") for name in names):
            return (
                "; a V2p model with the ImageNet classification head has no pyramid neck (the head reads the "
                "branches); build it with features_only=True, head='none' or a dense head for the pyramid"
            )
        if sum(name.startswith("branch") for name in names) == 4:
            return ""
        return (
            "; the last stage-4 module of this model fuses into branch(es) "
            f"{[b for b in range(4) if f'branch{b}' in names]} only (official pose checkpoints carry "
            "no weights for the other fusions; V1 models with a dense head drop them)"
        )

    def _taps(self, x: torch.Tensor, take: list[int], need_final: bool):
        """Run as far as needed; return ({index: tensor}, final features or None)."""
        # the fast path's fused stem converts its input itself; a plain Conv2d needs the weights' dtype
        weight_dtype = self.conv1.weight.dtype if isinstance(self.conv1, nn.Conv2d) else None
        check_input(x, self.in_chans, weight_dtype)
        wanted = dict(zip(self.feature_names(take), take))  # tap name -> index
        stem = self.forward_stem(x)
        taps: dict[int, torch.Tensor] = {}
        if "stem" in wanted:
            taps[wanted["stem"]] = stem
        if self._stem_only or (not need_final and list(wanted) == ["stem"]):
            return taps, (stem if need_final else None)
        branches = self.forward_branches(stem)
        for pos, b in enumerate(self.final_out_branches):
            if f"branch{b}" in wanted:
                t = branches[pos]
                if self.feature_location == "incre":
                    t = self.incre_modules[b](t)
                taps[wanted[f"branch{b}"]] = t
        final = None
        wants_rep = any(name.startswith(_REPRESENTATION_TAPS) for name in wanted)
        if wants_rep or (need_final and self.head_type != "classification"):
            rep = self._representation(branches)
            if self.representation == "v2" and "concat" in wanted:
                taps[wanted["concat"]] = rep
            elif self.representation == "v2p":
                for i, level in zip(self.neck.levels, rep):
                    if f"pyramid{i}" in wanted:
                        taps[wanted[f"pyramid{i}"]] = level
            final = rep
        if need_final and self.head_type == "classification":
            final = self._aggregate(branches)
        return taps, final

    # -------------------------------------------------------------------------------------------- forwards
    def _representation(self, branches: list[torch.Tensor]):
        if self.representation == "v1":
            return branches
        concat = concat_branches(branches, self.arch.align_corners)
        if self.representation == "v2":
            return concat
        return self.neck(concat)

    def _aggregate(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """The ImageNet head's aggregation: increase channels, sum downwards, 1x1 to ``head_features``."""
        y = self.incre_modules[0](branches[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](branches[i + 1]) + down(y)
        return self.final_layer(y)

    def forward_features(self, x: torch.Tensor):
        """Classification: the (N, head_features, H/32, W/32) map; otherwise the representation.

        The representation is a list of branch maps (V1), the (N, 15C, H/4, W/4) concatenation (V2) or a list of
        five pyramid levels (V2p).
        """
        _, final = self._taps(x, [0], need_final=True)
        return final

    def forward_head(self, x, pre_logits: bool = False):
        if self.head_type == "classification":
            x = self.head_drop(self.global_pool(x))
            return x if pre_logits else self.classifier(x)
        if self.head is None:
            return x
        x = x[0] if isinstance(x, (list, tuple)) else x  # dense heads read the stride-4 map
        return self.head.pre_logits(x) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor):
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Features at ``indices`` (see the module docstring), and unless ``intermediates_only`` the final features.

        All branch outputs come out of the last fused module together, so ``stop_early`` only saves work when the
        stem alone is asked for. ``norm`` is accepted for timm compatibility (HRNet has no final norm).
        """
        if output_fmt != "NCHW":
            raise ValueError(f"HRNet features are NCHW only, got output_fmt={output_fmt!r}")
        take = self.resolve_feature_indices(indices)
        taps, final = self._taps(x, take, need_final=not intermediates_only)
        intermediates = [taps[i] for i in take]
        return intermediates if intermediates_only else (final, intermediates)

    # ------------------------------------------------------------------------------------ timm model surface
    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop every layer the features at ``indices`` do not need (so DDP needs no ``find_unused_parameters``).

        Returns the absolute indices kept. After pruning the head, ``forward_features`` returns the representation
        (or the list of remaining branches, or the stem).
        """
        take = self.resolve_feature_indices(indices)
        names = self.feature_names(take)
        if prune_head:
            self.global_pool, self.head_drop, self.classifier = nn.Identity(), nn.Identity(), nn.Identity()
            self.downsamp_modules = self.final_layer = self.head = None
            self.head_type = "none"
            self.num_classes = 0
        if set(names) == {"stem"}:
            for name in (
                "conv2",
                "bn2",
                "act2",
                "layer1",
                "transition1",
                "stage2",
                "transition2",
                "stage3",
                "transition3",
                "stage4",
            ):
                setattr(self, name, nn.Identity())
            self.incre_modules = self.neck = None
            self._stem_only = True
            self.num_features = self.head_hidden_size = self.arch.stem_width
            return take
        representation_taps = [name for name in names if name.startswith(_REPRESENTATION_TAPS)]
        if self.head_type == "none" and not representation_taps:
            # only branch taps (and the stem) remain: fuse just the branches asked for
            keep = tuple(
                sorted(int(name.removeprefix("branch")) for name in names if name.startswith("branch"))
            )
            self._keep_final_branches(keep)
            self.neck = None
            self.representation = "v1"
            if self.incre_modules is not None and self.feature_location == "incre":
                self.incre_modules = nn.ModuleList(
                    m if b in keep else nn.Identity() for b, m in enumerate(self.incre_modules)
                )
        elif self.head_type == "none" and self.neck is not None:
            self.neck.keep_levels(tuple(int(name.removeprefix("pyramid")) for name in representation_taps))
        if self.head_type == "none" and self.feature_location != "incre":
            self.incre_modules = None
        return take

    def _keep_final_branches(self, keep: tuple[int, ...]) -> None:
        last = self.stage4[-1]
        last.fuse_layers = nn.ModuleList(
            row if i in keep else nn.ModuleList() for i, row in enumerate(last.fuse_layers) if i <= max(keep)
        )
        last.out_branches = keep

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^conv[12]|bn[12]",
            blocks=r"^(?:layer|stage|transition)(\d+)"
            if coarse
            else [
                (r"^layer(\d+)\.(\d+)", None),
                (r"^stage(\d+)\.(\d+)", None),
                (r"^transition(\d+)", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute layer1 and each multi-resolution module in the backward pass (less activation memory)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        if self.head_type == "classification":
            return self.classifier
        if isinstance(self.head, nn.Sequential):
            return self.head[-1]
        return self.head.final_layer if self.head is not None else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New output layer with ``num_classes`` outputs (classes, keypoints or landmarks).

        The new layers are built on the model's device and dtype and take its train / eval mode; ``global_pool``
        (classification) defaults to the current pooling.
        """
        self.num_classes = num_classes
        if self.head_type == "classification":
            if global_pool is None:
                global_pool = getattr(self.global_pool, "pool_type", "avg")
            self.global_pool, self.classifier = create_classifier(
                self.num_features, num_classes, global_pool, **get_device_dtype(self)
            )
            self.global_pool.train(self.training)
            self.classifier.train(self.training)
            self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        elif self.head is not None:
            if num_classes <= 0:
                raise ValueError(f"a {self.head_type} head needs num_classes >= 1; use head='none' for none")
            self.head.reset(num_classes)
            self.head.train(self.training)


class HRNetFeatures(HRNet):
    """``features_only`` HRNet: forward returns the features at ``out_indices`` (a list, or a dict by name).

    Layers the requested features do not need are pruned at construction, so every parameter receives a gradient.
    """

    def __init__(
        self,
        *args: Any,
        out_indices: int | tuple[int, ...] | None = None,
        return_dict: bool = False,
        **kwargs: Any,
    ):
        kwargs["head"] = "none"
        kwargs.pop("num_classes", None)
        kwargs.pop("global_pool", None)
        super().__init__(*args, **kwargs)
        if out_indices is None:
            out_indices = self.default_feature_indices()
        take = self.prune_intermediate_layers(out_indices, prune_head=True)
        self.out_indices = tuple(take)
        self.return_dict = return_dict
        self.feature_info = self.feature_info.from_other(self.out_indices)

    def forward(self, x: torch.Tensor):
        taps, _ = self._taps(x, list(self.out_indices), need_final=False)
        feats = [taps[i] for i in self.out_indices]
        if self.return_dict:
            return {self.feature_info.info[i]["module"]: f for i, f in zip(self.out_indices, feats)}
        return feats
