"""Does a checkpoint fit a model? Fit it, or say exactly why not.

timm loads ``pretrained=True`` weights strictly only while the model's ``num_classes`` equals the tag's; any other
head size (every pose, landmark, segmentation or features-only model) makes it load with ``strict=False`` and
merely log what did not match, which would leave a wrong checkpoint silently half-random. So
:func:`fit_checkpoint` (``registry.checkpoint_filter_fn``) does the checking itself, for checkpoints in this
package's key layout (timm's): the trunk must be complete and of the model's width, a task checkpoint (pose,
landmark/segmentation, detection) must go into a model of the same task or into a trunk-only model, and files
still in another project's layout are sent to the converter.

What may legitimately stay untrained, with a log line: a head the checkpoint does not carry (ImageNet weights
into a pose model), an output layer of another size (17 keypoints into 16: timm's ``num_classes`` rule), and a
V2p neck missing from ImageNet weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .config import WIDTHS

__all__ = ["TASK_PARTS", "checkpoint_kind", "damaged_weights_named", "fit_checkpoint"]

_logger = logging.getLogger(__name__)

_CLASSIFICATION_PARTS = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
#: key prefixes of the parts beyond the trunk (a model may lack them; a checkpoint may lack them)
_OPTIONAL_PARTS = (*_CLASSIFICATION_PARTS, "head.", "neck.")
#: checkpoint kind -> the model heads it fits (besides a trunk-only model: head "none" / features_only)
TASK_PARTS = {
    "pose": ("pose",),
    "landmark/segmentation": ("landmark", "segmentation"),
    "detection": (),
}
_SUGGESTION = {
    "pose": "an hrnet_w* model with head='pose', or into a trunk-only model (head='none' or features_only=True)",
    "landmark/segmentation": "an hrnetv2_w* model with head='landmark' or head='segmentation', or into a "
    "trunk-only model (head='none' or features_only=True)",
    "detection": "an hrnetv2p_w* model with head='none' or features_only=True (or hrnet_detection_backbone)",
}
#: output layer of each dense head: dropped (left untrained) when the number of outputs differs
_OUTPUT_LAYERS = ("head.final_layer.", "head.3.")


def checkpoint_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """What a checkpoint in this package's layout carries beyond the trunk.

    ``"pose"`` (``head.final_layer``), ``"landmark/segmentation"`` (``head.{0,1,3}``), ``"detection"`` (a V2p
    ``neck`` and no head), ``"classification"`` (the ImageNet head) or ``"trunk"`` (nothing else).
    """
    if any(k.startswith("head.final_layer.") for k in state_dict):
        return "pose"
    if any(k.startswith("head.3.") for k in state_dict):
        return "landmark/segmentation"
    if any(k.startswith("neck.") for k in state_dict):
        return "detection"
    if any(k.startswith(_CLASSIFICATION_PARTS) for k in state_dict):
        return "classification"
    return "trunk"


def _foreign_layout(state_dict: dict[str, torch.Tensor]) -> str | None:
    """What the checkpoint is, if its keys show it is still in another project's layout; else None."""
    w = state_dict.get("final_layer.weight")
    foreign = (
        any(k.startswith(("backbone.", "model.", "last_layer.")) for k in state_dict)
        or (isinstance(w, torch.Tensor) and w.ndim == 4)  # the official pose head; ours is head.final_layer
    )
    if not foreign:
        return None
    from .convert import LayoutError, match_layout  # the converter knows every layout; only needed here

    try:
        return f"a checkpoint of the {match_layout(state_dict).layout.description}"
    except LayoutError:
        return "a checkpoint in another project's key layout (prefixed keys such as 'backbone.' or 'model.')"


def _unwrap(state_dict: dict) -> dict[str, torch.Tensor]:
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if state_dict and all(
        k.startswith("module.") for k in state_dict
    ):  # saved from (Distributed)DataParallel
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


def _registered_trunk(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The ``config.TRUNKS`` name of the checkpoint's trunk (read from its tensors), or None."""
    from .convert import LayoutError
    from .convert.infer import infer_arch
    from .registry import trunk_name

    try:
        return trunk_name(infer_arch(state_dict))
    except (LayoutError, ValueError, KeyError):
        return None


def _check_width(state_dict: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    key = "transition1.0.0.weight"
    if key in state_dict and key in own and state_dict[key].shape[0] != own[key].shape[0]:
        got, want = state_dict[key].shape[0], own[key].shape[0]
        trunk = _registered_trunk(state_dict)
        if trunk is None and got in WIDTHS:
            trunk = f"w{got}"
        if trunk:
            from .registry import trunk_title

            what = f"HRNet-{trunk_title(trunk)}"
            build = f"'hrnet_{trunk}' (or hrnetv2_{trunk} / hrnetv2p_{trunk})"
        else:
            what, build = f"HRNet-W{got}", f"arch=hrnet_config({got})"
        raise ValueError(
            f"the checkpoint is an {what} but the model is HRNet-W{want}; create the model as {build}, or "
            f"use a W{want} checkpoint"
        )


def _check_task(kind: str, model: nn.Module) -> None:
    head = model.head_type
    if kind not in TASK_PARTS or head == "none" or head in TASK_PARTS[kind]:
        return
    raise ValueError(
        f"the checkpoint is a {kind} checkpoint but the model has a {head} head, which it would leave untrained; "
        f"load it into {_SUGGESTION[kind]}. To start another task from its trunk on purpose, load it yourself "
        "with load_state_dict(strict=False)"
    )


def _check_last_fusion(state_dict: dict[str, torch.Tensor], model: nn.Module) -> None:
    last = f"stage4.{len(model.stage4) - 1}.fuse_layers."
    needs = [b for b in model.final_out_branches if b > 0]
    has = {int(k[len(last) :].split(".", 1)[0]) for k in state_dict if k.startswith(last)}
    missing = [b for b in needs if b not in has]
    if has and missing:
        raise ValueError(
            f"the checkpoint's last stage-4 module fuses into branch(es) {sorted(has)} only (as the official pose "
            f"models, multi_scale_last=False) but this model uses branch(es) {needs}; build it with "
            "multi_scale_last=False (an hrnet_w* model with a pose head, or features_only with out_indices=(0, 1)) "
            "or use a checkpoint with the full last fusion (ImageNet)"
        )


def _pruned_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of trunk parts this model was pruned without (its checkpoint keys are simply not needed)."""
    pruned = [f"{name}." for name, child in model.named_children() if isinstance(child, nn.Identity)]
    if not isinstance(model.stage4, nn.Identity):
        pruned.append(f"stage4.{len(model.stage4) - 1}.fuse_layers.")  # rows dropped from the last fusion
    return tuple(pruned)


def fit_checkpoint(state_dict: dict, model: nn.Module) -> dict[str, torch.Tensor]:
    """Fit a checkpoint in this package's (timm's) key layout to ``model``, or raise saying which part differs.

    Unwraps ``{"state_dict": ...}`` and a ``module.`` prefix; drops the keys of parts the model was built or
    pruned without; keeps the model's own (initial) weights for a head or V2p neck the checkpoint lacks and for an
    output layer of another size. Raises ``ValueError`` for another width, another task, a last fusion the model
    cannot use, a file in another project's layout (convert it first) or a trunk with missing or unknown keys.
    """
    state_dict = _unwrap(state_dict)
    foreign = _foreign_layout(state_dict)
    if foreign:
        raise ValueError(
            f"this is {foreign}, not in this package's key layout; convert it first (`hrnet-backbones convert FILE --out "
            "DIR`) and create the model from the folder: timm.create_model('local-dir:DIR', pretrained=True)"
        )
    own = model.state_dict()
    kind = checkpoint_kind(state_dict)
    _check_width(state_dict, own)
    _check_task(kind, model)
    if not isinstance(model.stage4, nn.Identity):
        _check_last_fusion(state_dict, model)

    pruned = _pruned_prefixes(model)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in state_dict.items():
        if k in own:
            out[k] = v
        elif not k.startswith(_OPTIONAL_PARTS + pruned):
            unknown.append(k)
    if unknown:
        raise ValueError(
            f"the checkpoint ({kind}) has {len(unknown)} key(s) this model does not know, e.g. {unknown[:3]}; it "
            "was saved from a different architecture (check arch / the stage layout) or another key layout"
        )

    neck = [k for k in own if k.startswith("neck.")]
    if neck and not any(k.startswith("neck.") for k in out):
        _logger.info("the checkpoint has no V2p neck weights; the neck keeps its initialisation")
        out.update({k: own[k] for k in neck})
    for k, v in list(out.items()):
        if k.startswith("neck.") and v.shape != own[k].shape:
            raise ValueError(
                f"the checkpoint's V2p neck has {v.shape[0]} channels ({k}) but the model's has {own[k].shape[0]}; "
                f"create the model with neck_channels={v.shape[0]}"
            )
        if k.startswith(_OUTPUT_LAYERS) and v.shape != own[k].shape:
            _logger.info(
                f"{k}: {v.shape[0]} outputs in the checkpoint, {own[k].shape[0]} in the model; new layer"
            )
            out[k] = own[k]
    for k in own:
        if k.startswith(_OPTIONAL_PARTS) and k not in out:
            out[k] = own[
                k
            ]  # a head the checkpoint does not carry: keeps its initialisation (timm's adaptation)
    missing = [k for k in own if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"the checkpoint ({kind}) lacks {len(missing)} trunk weight(s) of this model, e.g. {missing[:3]}; it "
            "does not hold this architecture (check arch / the stage layout and multi_scale_last)"
        )
    out.update(
        {k: own[k] for k in own if k not in out}
    )  # num_batches_tracked absent from some official files
    return out


@contextmanager
def damaged_weights_named(pretrained_cfg: Any) -> Iterator[None]:
    """Turn safetensors' error for a damaged weights file into a ``ValueError`` that names the file.

    timm reads ``model.safetensors`` itself (``local-dir:`` folders, ``hf-hub:`` downloads), and a truncated or
    overwritten file then fails with ``SafetensorError`` and no file name.
    """
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        cfg = pretrained_cfg if isinstance(pretrained_cfg, dict) else {}
        if cfg.get("source") == "local-dir" and cfg.get("file"):
            where, fix = f"{cfg['file']}/model.safetensors", "convert the checkpoint again"
        elif cfg.get("hf_hub_id"):
            where, fix = (
                f"model.safetensors of hf-hub:{cfg['hf_hub_id']}",
                "download it again (force_download)",
            )
        else:
            where, fix = "the pretrained weights file", "download or convert it again"
        raise ValueError(f"{where} is truncated or damaged ({str(e).strip()}); {fix}") from None
