"""Architecture as data: stage specifications, fusion settings and the published trunks.

An HRNet is fully described by an :class:`HRNetConfig`: the stem width, four stage specifications and how the
multi-resolution fusion upsamples. The published trunks (:data:`TRUNKS`: W18-Small v1/v2 and W18 to W64) and the
tiny configuration of the test fixtures are just values of it. Configs are frozen and round-trip through plain dicts (``to_dict`` / ``from_dict``), which
is how they travel in a Hugging Face ``config.json`` (``model_args["arch"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = [
    "BLOCK_TYPES",
    "FUSION_UPSAMPLE_MODES",
    "HRNetConfig",
    "StageSpec",
    "TRUNKS",
    "WIDTHS",
    "hrnet_config",
    "tiny_config",
]

BLOCK_TYPES = ("BASIC", "BOTTLENECK")

#: How a lower-resolution branch is brought up to a higher one in the fusion (j > i):
#: ``nearest``: nearest-neighbour by the integer factor 2^(j-i), cropped to the target size (the pose, ImageNet and
#: detection code; identical to theirs whenever the input is a multiple of 32, and still aligned when it is not).
#: ``bilinear``: bilinear straight to the target size, with ``align_corners`` (segmentation and facial landmarks).
#: ``bilinear_scale``: bilinear by 2^(j-i), then bilinearly resized to the target size (mmsegmentation's HRNet).
FUSION_UPSAMPLE_MODES = ("nearest", "bilinear", "bilinear_scale")

#: The widths published with the standard layout (C = channels of the highest-resolution branch).
WIDTHS = (18, 30, 32, 40, 44, 48, 64)


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``num_modules`` high-resolution modules over ``len(num_channels)`` parallel branches.

    ``num_channels`` are block *planes*; a branch carries ``planes * expansion`` channels (expansion 1 for BASIC,
    4 for BOTTLENECK).
    """

    num_modules: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    block: str = "BASIC"
    fuse_method: str = "SUM"

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_blocks", tuple(int(b) for b in self.num_blocks))
        object.__setattr__(self, "num_channels", tuple(int(c) for c in self.num_channels))
        object.__setattr__(self, "block", str(self.block).upper())
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {self.block!r}; expected one of {BLOCK_TYPES}")
        if self.fuse_method != "SUM":
            raise ValueError(f"unsupported fuse_method {self.fuse_method!r}; HRNet fuses by 'SUM'")
        if self.num_modules < 1:
            raise ValueError(f"num_modules must be >= 1, got {self.num_modules}")
        if len(self.num_blocks) != len(self.num_channels) or not self.num_channels:
            raise ValueError(
                f"num_blocks {self.num_blocks} and num_channels {self.num_channels} must name the same, non-zero "
                "number of branches"
            )
        if min(self.num_blocks) < 1 or min(self.num_channels) < 1:
            raise ValueError(f"blocks and channels must be positive: {self.num_blocks}, {self.num_channels}")

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)

    @property
    def expansion(self) -> int:
        return 4 if self.block == "BOTTLENECK" else 1

    @property
    def branch_channels(self) -> tuple[int, ...]:
        """Channels each branch carries out of this stage."""
        return tuple(c * self.expansion for c in self.num_channels)

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str = "stage") -> StageSpec:
        """A stage from its dict (``to_dict`` form or the official YAML's upper-case keys), every field checked by
        type: a ``ValueError`` names the first wrong field as ``<name>.<field>``."""
        if not isinstance(d, dict):
            raise ValueError(
                f"HRNet config field {name} must be a dict (num_modules, num_blocks, num_channels, block), got "
                f"{_shown(d)}"
            )
        d = {str(k).lower(): v for k, v in d.items()}
        d.pop("num_branches", None)  # derived; accepted for compatibility with the official YAML layout
        if "block_type" in d:
            d["block"] = d.pop("block_type")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown stage keys {sorted(unknown)} in {name}")
        missing = [f for f in ("num_modules", "num_blocks", "num_channels") if f not in d]
        if missing:
            raise ValueError(f"HRNet config field {name} lacks {', '.join(missing)}")
        _check_int(d["num_modules"], f"{name}.num_modules")
        for field_name in ("num_blocks", "num_channels"):
            value = d[field_name]
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(
                    f"HRNet config field {name}.{field_name} must be a list of positive integers (one per branch), "
                    f"got {_shown(value)}"
                )
            for i, v in enumerate(value):
                _check_int(v, f"{name}.{field_name}[{i}]")
        for field_name in ("block", "fuse_method"):
            if field_name in d and not isinstance(d[field_name], str):
                raise ValueError(
                    f"HRNet config field {name}.{field_name} must be a string, got {_shown(d[field_name])}"
                )
        return cls(**d)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _check_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"HRNet config field {name} must be a positive integer, got {_shown(value)}")


def _stage(num_modules: int, block: str, blocks: int, channels: tuple[int, ...]) -> StageSpec:
    return StageSpec(num_modules, (blocks,) * len(channels), channels, block)


@dataclass(frozen=True)
class HRNetConfig:
    """A whole HRNet trunk.

    ``stage1`` is the single-branch ``layer1`` (Bottleneck blocks on the stride-4 stem output); stages 2-4 add one
    branch each. ``multi_scale_last=False`` makes the last stage-4 module fuse into branch 0 only, as the official
    pose checkpoints do (they carry no weights for the other fusions).
    """

    stage2: StageSpec
    stage3: StageSpec
    stage4: StageSpec
    stage1: StageSpec = field(default_factory=lambda: _stage(1, "BOTTLENECK", 4, (64,)))
    stem_width: int = 64
    fusion_upsample: str = "nearest"
    align_corners: bool = False
    multi_scale_last: bool = True

    def __post_init__(self) -> None:
        for name in ("stage1", "stage2", "stage3", "stage4"):
            spec = getattr(self, name)
            if isinstance(spec, dict):
                object.__setattr__(self, name, StageSpec.from_dict(spec, name))
        if self.stage1.num_branches != 1:
            raise ValueError(f"stage1 has exactly one branch, got {self.stage1.num_branches}")
        for s, name in enumerate(("stage2", "stage3", "stage4"), start=2):
            if getattr(self, name).num_branches != s:
                raise ValueError(f"{name} must have {s} branches, got {getattr(self, name).num_branches}")
        if self.fusion_upsample not in FUSION_UPSAMPLE_MODES:
            raise ValueError(
                f"unknown fusion_upsample {self.fusion_upsample!r}; expected one of {FUSION_UPSAMPLE_MODES}"
            )
        if self.align_corners and self.fusion_upsample == "nearest":
            raise ValueError("align_corners applies to bilinear fusion only; use fusion_upsample='bilinear'")

    @property
    def stages(self) -> tuple[StageSpec, StageSpec, StageSpec]:
        """The multi-branch stages 2-4."""
        return (self.stage2, self.stage3, self.stage4)

    @property
    def branch_channels(self) -> tuple[int, ...]:
        """Channels of the four final branches (C, 2C, 4C, 8C for the published widths)."""
        return self.stage4.branch_channels

    @property
    def width(self) -> int:
        return self.branch_channels[0]

    def replace(self, **changes: Any) -> HRNetConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("stage1", "stage2", "stage3", "stage4"):
            d[name]["num_blocks"] = list(d[name]["num_blocks"])
            d[name]["num_channels"] = list(d[name]["num_channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HRNetConfig:
        """A config from its dict (``to_dict`` form, as in ``config.json``'s ``model_args["arch"]``).

        Every field is checked by type before anything is built; a ``ValueError`` names the first wrong field
        (``stage2.num_blocks[1]``, ``align_corners``) and what it must be.
        """
        if not isinstance(d, dict):
            raise ValueError(f"an HRNet config must be a dict of its fields, got {_shown(d)}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown HRNet config keys {sorted(unknown)}; known: {[f.name for f in fields(cls)]}"
            )
        missing = [name for name in ("stage2", "stage3", "stage4") if name not in d]
        if missing:
            raise ValueError(f"the HRNet config lacks {', '.join(missing)}; stage2 to stage4 are required")
        d = dict(d)
        for name in ("stage1", "stage2", "stage3", "stage4"):
            if name in d and not isinstance(d[name], StageSpec):
                d[name] = StageSpec.from_dict(d[name], name)
        if "stem_width" in d:
            _check_int(d["stem_width"], "stem_width")
        if "fusion_upsample" in d and not isinstance(d["fusion_upsample"], str):
            raise ValueError(
                f"HRNet config field fusion_upsample must be one of {FUSION_UPSAMPLE_MODES}, got "
                f"{_shown(d['fusion_upsample'])}"
            )
        for name in ("align_corners", "multi_scale_last"):
            if name in d and not isinstance(d[name], bool):
                raise ValueError(f"HRNet config field {name} must be true or false, got {_shown(d[name])}")
        return cls(**d)

    @classmethod
    def coerce(cls, arch: HRNetConfig | dict[str, Any]) -> HRNetConfig:
        if isinstance(arch, cls):
            return arch
        if isinstance(arch, dict):
            return cls.from_dict(arch)
        raise TypeError(f"arch must be an HRNetConfig or a dict, got {type(arch).__name__}")


def hrnet_config(width: int, **changes: Any) -> HRNetConfig:
    """The published HRNet layout at ``width``: stage 2 one module, stage 3 four, stage 4 three; 4 BASIC blocks."""
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    c = (width, 2 * width, 4 * width, 8 * width)
    cfg = HRNetConfig(
        stage2=_stage(1, "BASIC", 4, c[:2]),
        stage3=_stage(4, "BASIC", 4, c[:3]),
        stage4=_stage(3, "BASIC", 4, c),
    )
    return cfg.replace(**changes) if changes else cfg


def tiny_config(**changes: Any) -> HRNetConfig:
    """The tiny layout of the test fixtures: channels 4/8/16/32, 2 blocks per branch, 1/2/2 modules."""
    c = (4, 8, 16, 32)
    cfg = HRNetConfig(
        stage2=_stage(1, "BASIC", 2, c[:2]),
        stage3=_stage(2, "BASIC", 2, c[:3]),
        stage4=_stage(2, "BASIC", 2, c),
    )
    return cfg.replace(**changes) if changes else cfg


def _small_config(
    stage1_blocks: int, stage1_planes: int, c: tuple[int, ...], modules: tuple[int, int]
) -> HRNetConfig:
    """The small layouts: 2 BASIC blocks per branch, one module in stage 2."""
    return HRNetConfig(
        stage1=_stage(1, "BOTTLENECK", stage1_blocks, (stage1_planes,)),
        stage2=_stage(1, "BASIC", 2, c[:2]),
        stage3=_stage(modules[0], "BASIC", 2, c[:3]),
        stage4=_stage(modules[1], "BASIC", 2, c),
    )


#: The published trunks by name (the part of a model name after ``hrnet_`` / ``hrnetv2_`` / ``hrnetv2p_``):
#: HRNet-W18-Small-v1 and -v2 of the classification and segmentation releases, and the standard layout at every
#: published width. The same layouts as timm's ``cfg_cls``; a new trunk is one more entry here.
TRUNKS: dict[str, HRNetConfig] = {
    "w18_small": _small_config(1, 32, (16, 32, 64, 128), (1, 1)),
    "w18_small_v2": _small_config(2, 64, (18, 36, 72, 144), (3, 2)),
    **{f"w{w}": hrnet_config(w) for w in WIDTHS},
}
