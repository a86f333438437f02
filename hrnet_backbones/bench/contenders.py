"""The contenders a benchmark group times, as a registry: name -> builder.

A contender is registered for a mode (``"infer"`` or ``"train"``) with :func:`register_contender`; its builder gets
a :class:`BuildContext` (the group's eager model, input, precision, spec and device) and returns the step to time:
a zero-argument callable that runs one batch (inference steps return the outputs, which must equal the eager
model's; the runner checks that before timing). Building is timed as the contender's setup time, so a contender
that compiles should compile inside its builder. Names may take an option after a colon (``compile:MODE``); the
option reaches the builder as ``ctx.option``.

Registered here:

* inference: ``timm`` (timm's built-in HRNet, :class:`TimmBaseline`), ``eager`` (the model as
  ``timm.create_model(name, features_only=True)`` gives it), ``fast`` (:func:`~hrnet_backbones.optimize_for_inference`
  with ``dtype`` set for fp16 / bf16 rows), ``compile:MODE`` and ``fast+compile:MODE`` (``torch.compile`` of the
  eager / fast model);
* inference on exported files (the ``deploy`` extra): ``ort``, ``ort-int8``, ``openvino``, ``openvino-int8``
  (:mod:`hrnet_backbones.deploy.contenders`; CPU, fp32 rows; export and quantization in the setup time);
* training: ``timm``, ``eager`` and ``eager+ckpt`` (gradient checkpointing); one step is forward, a
  mean-of-outputs loss, backward and an SGD step.

A new contender (another runtime, say) is a builder in its own function, registered under a new name::

    @register_contender("mine", "infer", help="my runtime")
    def _mine(ctx: BuildContext) -> Callable[[], Any]:
        model = ...  # convert ctx.eager
        return lambda: model(ctx.x)
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .spec import BASELINE, PRECISIONS, BenchSpec

__all__ = [
    "CONTENDERS",
    "BuildContext",
    "Contender",
    "ContenderType",
    "TimmBaseline",
    "build_contender",
    "build_model",
    "contender_names",
    "contender_type",
    "register_contender",
]

Step = Callable[[], Any]


@dataclass(frozen=True)
class BuildContext:
    """What a builder gets: ``eager`` is the group's model (eval mode, on ``device``) that every inference
    contender must reproduce, ``x`` the (batch, C, H, W) input, ``option`` the text after ``NAME:`` ("" if none)."""

    eager: nn.Module
    x: torch.Tensor
    precision: str
    spec: BenchSpec
    device: torch.device
    option: str = ""


@dataclass(frozen=True)
class ContenderType:
    """A registered contender: ``build(ctx)`` returns its step. ``option`` is the metavar of a required
    ``NAME:OPTION`` suffix (None: the name takes none); ``channels_last`` marks contenders that always run
    channels_last (reported in their rows)."""

    name: str
    mode: str
    build: Callable[[BuildContext], Step]
    option: str | None = None
    channels_last: bool = False
    help: str = ""

    @property
    def usage(self) -> str:
        return self.name if self.option is None else f"{self.name}:{self.option}"


@dataclass
class Contender:
    """A built contender, ready to time."""

    name: str
    step: Step
    setup_s: float
    channels_last: bool = False


#: (mode, name) -> contender type, in registration order.
CONTENDERS: dict[tuple[str, str], ContenderType] = {}


def register_contender(
    name: str, mode: str, *, option: str | None = None, channels_last: bool = False, help: str = ""
) -> Callable[[Callable[[BuildContext], Step]], Callable[[BuildContext], Step]]:
    """Decorator registering ``build`` as contender ``name`` for ``mode`` (``"infer"`` or ``"train"``)."""
    if mode not in ("infer", "train"):
        raise ValueError(f"unknown mode {mode!r}; expected 'infer' or 'train'")
    if ":" in name:
        raise ValueError(f"contender name {name!r} must not contain ':' (it separates the option)")

    def decorate(build: Callable[[BuildContext], Step]) -> Callable[[BuildContext], Step]:
        if (mode, name) in CONTENDERS:
            raise ValueError(f"{mode} contender {name!r} is already registered")
        CONTENDERS[mode, name] = ContenderType(name, mode, build, option, channels_last, help)
        return build

    return decorate


def contender_names(mode: str) -> list[str]:
    """The registered contenders of ``mode`` as they are written on the command line (``compile:MODE``)."""
    return [c.usage for (m, _), c in CONTENDERS.items() if m == mode]


def contender_type(impl: str, mode: str) -> ContenderType:
    """The registered contender ``impl`` (``NAME`` or ``NAME:OPTION``) names, or a ValueError listing them."""
    name, colon, option = impl.partition(":")
    found = CONTENDERS.get((mode, name))
    if found is not None and (found.option is not None) == bool(colon and option):
        return found
    raise ValueError(f"unknown {mode} contender {impl!r}; expected one of {contender_names(mode)}")


def build_contender(impl: str, mode: str, ctx: BuildContext) -> Contender:
    """Build contender ``impl`` for one group, timing the build as its setup time."""
    kind = contender_type(impl, mode)
    t0 = time.perf_counter()
    step = kind.build(ctx)
    return Contender(impl, step, time.perf_counter() - t0, kind.channels_last or ctx.spec.channels_last)


# ------------------------------------------------------------------------------------------------- models
def arch_kwargs(spec: BenchSpec) -> dict[str, Any]:
    """``timm.create_model`` keyword arguments for the spec's trunk (``arch='tiny'``: the fixtures' tiny one)."""
    if spec.arch == "tiny":
        from ..config import tiny_config

        return {"arch": tiny_config()}
    return {}


def build_model(name: str, spec: BenchSpec) -> nn.Module:
    """The eager contender: ``timm.create_model(name, features_only=True)`` (tiny trunk with ``arch='tiny'``)."""
    import timm

    return timm.create_model(name, features_only=True, **arch_kwargs(spec))


def _timm_cfg(arch) -> dict[str, Any]:
    """Our :class:`~hrnet_backbones.config.HRNetConfig` in the dict layout of ``timm.models.hrnet.cfg_cls``."""
    cfg: dict[str, Any] = {"stem_width": arch.stem_width}
    for name in ("stage1", "stage2", "stage3", "stage4"):
        s = getattr(arch, name)
        cfg[name] = dict(
            num_modules=s.num_modules,
            num_branches=s.num_branches,
            block_type=s.block,
            num_blocks=s.num_blocks,
            num_channels=s.num_channels,
            fuse_method=s.fuse_method,
        )
    return cfg


class TimmBaseline(nn.Module):
    """timm's built-in HRNet trunk, followed for V2 / V2p by the same representation code as ours.

    Returns what our ``features_only`` model returns: V1 the stem and the four branches, V2 the concatenation,
    V2p the pyramid levels.
    """

    def __init__(self, ours: nn.Module):
        super().__init__()
        from timm.models.hrnet import HighResolutionNetFeatures

        arch = ours.arch
        if arch.fusion_upsample != "nearest" or not arch.multi_scale_last:
            raise ValueError("timm's HRNet has nearest, multi-scale fusion only")
        self.representation = ours.representation
        self.align_corners = arch.align_corners
        out_indices = (0, 1, 2, 3, 4) if self.representation == "v1" else (1, 2, 3, 4)
        trunk = HighResolutionNetFeatures(
            _timm_cfg(arch), in_chans=ours.in_chans, feature_location="", out_indices=out_indices
        )
        own = trunk.state_dict()
        trunk.load_state_dict({k: v for k, v in ours.state_dict().items() if k in own}, strict=True)
        self.trunk = trunk
        self.neck = copy.deepcopy(ours.neck) if self.representation == "v2p" else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        from ..representations import concat_branches

        feats = self.trunk(x)
        if self.representation == "v1":
            return feats
        concat = concat_branches(feats, self.align_corners)
        return [concat] if self.neck is None else self.neck(concat)


def outputs(y: Any) -> list[torch.Tensor]:
    """A model's output (tensor, list or dict of tensors) as a list of tensors."""
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return list(y.values())
    return list(y)


# ---------------------------------------------------------------------------------------------- inference
def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def _layout(model: nn.Module, ctx: BuildContext, channels_last: bool) -> tuple[nn.Module, torch.Tensor]:
    """The model and input, both made channels_last when ``channels_last``."""
    if not channels_last:
        return model, ctx.x
    return model.to(memory_format=torch.channels_last), ctx.x.contiguous(memory_format=torch.channels_last)


def _forward_step(model: nn.Module, x: torch.Tensor, ctx: BuildContext, autocast: bool) -> Step:
    """One inference call of ``model`` on ``x``, under fp16 / bf16 autocast when ``autocast`` (the fast path
    casts its own weights instead)."""
    precision = ctx.precision if autocast else "fp32"

    def forward():
        with torch.inference_mode(), _autocast(ctx.device, precision):
            return model(x)

    return forward


def _fast_model(ctx: BuildContext) -> nn.Module:
    from ..fast import optimize_for_inference

    low = PRECISIONS[ctx.precision] if ctx.precision != "fp32" else None
    with warnings.catch_warnings():  # the suite measures bf16 on purpose, native or not
        warnings.filterwarnings("ignore", message=".*without native bfloat16")
        return optimize_for_inference(ctx.eager, dtype=low)


def _compiled_step(model: nn.Module, x: torch.Tensor, ctx: BuildContext, autocast: bool) -> Step:
    model = torch.compile(model, mode=None if ctx.option == "default" else ctx.option)
    step = _forward_step(model, x, ctx, autocast)
    # compile now, so the setup time includes it and warm-up measures steady state; on the CPU with Inductor's
    # weight freezing (constant-folded BatchNorm, pre-packed oneDNN weights), its recommended inference setting
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=ctx.device.type == "cpu"):
        step()
    return step


@register_contender(BASELINE, "infer", help="timm's built-in HRNet with the same weights")
def _timm_infer(ctx: BuildContext) -> Step:
    model, x = _layout(TimmBaseline(ctx.eager).to(ctx.device).eval(), ctx, ctx.spec.channels_last)
    return _forward_step(model, x, ctx, autocast=True)


@register_contender("eager", "infer", help="timm.create_model(name, features_only=True)")
def _eager_infer(ctx: BuildContext) -> Step:
    model, x = _layout(copy.deepcopy(ctx.eager), ctx, ctx.spec.channels_last)
    return _forward_step(model, x, ctx, autocast=True)


# the fast model keeps its own layout (channels_last throughout): spec.channels_last does not apply to it
@register_contender(
    "fast", "infer", channels_last=True, help="optimize_for_inference (dtype for fp16 / bf16)"
)
def _fast_infer(ctx: BuildContext) -> Step:
    return _forward_step(_fast_model(ctx), ctx.x, ctx, autocast=False)


@register_contender("compile", "infer", option="MODE", help="torch.compile(eager model, mode=MODE)")
def _compile_infer(ctx: BuildContext) -> Step:
    model, x = _layout(copy.deepcopy(ctx.eager), ctx, ctx.spec.channels_last)
    return _compiled_step(model, x, ctx, autocast=True)


@register_contender(
    "fast+compile", "infer", option="MODE", channels_last=True, help="torch.compile(fast model, mode=MODE)"
)
def _fast_compile_infer(ctx: BuildContext) -> Step:
    return _compiled_step(_fast_model(ctx), ctx.x, ctx, autocast=False)


# ------------------------------------------------------------------------------------ exported files (deploy)
def _register_deploy(name: str, help: str) -> None:
    """``name`` runs the model exported as ``hrnet-backbones export`` does (:mod:`hrnet_backbones.deploy`)."""

    @register_contender(name, "infer", help=help)
    def _build(ctx: BuildContext) -> Step:
        from ..deploy.contenders import deploy_step

        return deploy_step(name, ctx.eager, ctx.x, ctx.precision)


for _name, _help in (
    ("ort", "ONNX Runtime on the exported fp32 ONNX (the deploy extra)"),
    ("ort-int8", "ONNX Runtime on the static int8 (QDQ) ONNX"),
    ("openvino", "OpenVINO on the exported fp32 ONNX"),
    ("openvino-int8", "OpenVINO on the static int8 (QDQ) ONNX"),
):
    _register_deploy(_name, _help)


# ----------------------------------------------------------------------------------------------- training
def _train_step(model: nn.Module, ctx: BuildContext) -> Step:
    model, x = _layout(model.to(ctx.device).train(), ctx, ctx.spec.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(x.device, ctx.precision):
            loss = sum(o.float().mean() for o in outputs(model(x)))
        loss.backward()
        opt.step()

    return step


@register_contender(BASELINE, "train", help="timm's built-in HRNet with the same weights")
def _timm_train(ctx: BuildContext) -> Step:
    return _train_step(TimmBaseline(ctx.eager), ctx)


@register_contender("eager", "train", help="timm.create_model(name, features_only=True)")
def _eager_train(ctx: BuildContext) -> Step:
    return _train_step(copy.deepcopy(ctx.eager), ctx)


@register_contender("eager+ckpt", "train", help="the eager model with gradient checkpointing")
def _eager_ckpt_train(ctx: BuildContext) -> Step:
    model = copy.deepcopy(ctx.eager)
    model.set_grad_checkpointing(True)
    return _train_step(model, ctx)
