"""From someone else's checkpoint to a timm model folder: detect, map, infer, check, describe, write.

:func:`convert_state_dict` does everything in memory and returns a :class:`Conversion`; :func:`convert_checkpoint`
reads a file safely, converts it and writes the folder (``model.safetensors``, ``config.json``, ``README.md``) that
``timm.create_model("local-dir:DIR", pretrained=True)`` (and ``hf-hub:`` once pushed) turns back into the full model.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..complexity import Complexity
from ..config import TRUNKS, WIDTHS, HRNetConfig, hrnet_config, tiny_config
from ..registry import VARIANTS, nearest_trunk, trunk_name, trunk_title
from . import known
from .errors import CheckpointError, LayoutError
from .infer import in_chans_of, infer_arch, infer_head
from .layouts import Layout, match_layout
from .load import read_checkpoint

__all__ = ["Conversion", "convert_checkpoint", "convert_state_dict", "parse_arch", "CONVERTER_VERSION"]

#: The largest input side recorded (from --input-size or a file's config); beyond it the size is a mistake.
MAX_INPUT_SIDE = 16384

#: Bumped when the written folders change in a way a reader could care about.
CONVERTER_VERSION = "1"

#: task -> (model-name prefix (see registry.VARIANTS), short tag used in folder names)
_TASK_MODELS = {
    "pose": ("hrnet", "pose"),
    "classification": ("hrnet", "cls"),
    "segmentation": ("hrnetv2", "seg"),
    "landmark": ("hrnetv2", "landmark"),
    "detection": ("hrnetv2p", "det"),
    "backbone": ("hrnet", "backbone"),
}
#: the module whose weights are the per-class/keypoint outputs (timm's ``pretrained_cfg["classifier"]``)
_CLASSIFIERS = {
    "pose": "head.final_layer",
    "classification": "classifier",
    "segmentation": "head.3",
    "landmark": "head.3",
}


@dataclass
class Conversion:
    """Everything a converted folder holds, before it is written.

    ``state_dict`` is in this package's key layout and in the model's order; ``dropped`` maps each source key left
    out on purpose to the reason; ``added`` lists keys the source lacked and that were filled with their neutral
    value (a zero conv bias where the source conv had none, BatchNorm ``num_batches_tracked`` in old files).
    """

    layout: Layout
    architecture: str
    arch: HRNetConfig
    model_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    pretrained_cfg: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_name: str | None = None
    source_sha256: str | None = None
    container: list[str] = field(default_factory=list)
    meta_model: torch.nn.Module | None = field(default=None, repr=False)
    #: the model card's account of where the weights come from (default: converted, unchanged, from the source)
    origin: str | None = None

    def complexity(self) -> Complexity:
        """Parameters and multiply-adds of the full model at the recorded input size (on the meta device)."""
        from ..complexity import measure, meta_model

        if self.meta_model is None:
            self.meta_model = meta_model(self.architecture, **self.model_args)
        return measure(self.meta_model, tuple(self.pretrained_cfg["input_size"][1:]))

    @property
    def task(self) -> str:
        return self.layout.task

    @property
    def num_classes(self) -> int:
        return int(self.model_args.get("num_classes", 0))

    @property
    def tag(self) -> str:
        return self.pretrained_cfg["tag"]

    @property
    def default_folder_name(self) -> str:
        """``<variant>_w<width>.<tag>``, the timm-style name (e.g. ``hrnet_w32.coco_pose_256x192``)."""
        return f"{self.architecture.rsplit('_w', 1)[0]}_w{self.arch.width}.{self.tag}"

    def config_json(self) -> dict[str, Any]:
        """The ``config.json`` of timm's Hugging Face Hub format."""
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "num_features": _num_features(self),
            "model_args": self.model_args,
            "pretrained_cfg": self.pretrained_cfg,
        }

    def safetensors_metadata(self) -> dict[str, str]:
        """String metadata stored in ``model.safetensors``."""
        from .. import __version__

        meta = {
            "format": "pt",
            "architecture": self.architecture,
            "family": self.layout.family,
            "task": self.task,
            "converter": f"hrnet_backbones {__version__} (converter {CONVERTER_VERSION})",
        }
        if self.source_name:
            meta["source_file"] = self.source_name
        if self.source_sha256:
            meta["source_sha256"] = self.source_sha256
        return meta

    def summary(self) -> list[str]:
        """Human-readable lines: what was detected, inferred, dropped and added."""
        a = self.arch
        stages = "/".join(str(s.num_modules) for s in a.stages)
        blocks = "/".join(str(s.num_blocks[0]) for s in a.stages)
        lines = [
            f"detected: {self.layout.family} ({self.layout.description})"
            + (f"; container: {' -> '.join(self.container)}" if self.container else ""),
            f"inferred: {self.architecture} W{a.width}, channels {list(a.branch_channels)}, modules {stages}, "
            f"blocks {blocks}, stem {a.stem_width}, multi_scale_last={a.multi_scale_last}, "
            f"fusion {a.fusion_upsample}" + (", align_corners=True" if a.align_corners else ""),
            "model args: " + ", ".join(f"{k}={v}" for k, v in self.model_args.items() if k != "arch"),
        ]
        cfg = self.pretrained_cfg
        lines.append(
            f"metadata: tag {cfg['tag']}, dataset {cfg.get('dataset') or 'unknown'}, "
            f"input {cfg['input_size'][1]}x{cfg['input_size'][2]}, licence {cfg.get('license')}"
        )
        if self.dropped:
            reasons: dict[str, int] = {}
            for reason in self.dropped.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            lines += [f"dropped {n} key(s): {reason}" for reason, n in reasons.items()]
        if self.added:
            lines.append(
                f"added {len(self.added)} key(s) the source lacks, with neutral values: {_brief(self.added)}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return lines


def _brief(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _num_features(conv: Conversion) -> int:
    args = conv.model_args
    if args["head"] == "classification":
        return int(args["head_features"])
    rep = VARIANTS[conv.architecture.rsplit("_w", 1)[0]]
    chs = conv.arch.branch_channels
    return {"v1": chs[0], "v2": sum(chs), "v2p": int(args.get("neck_channels", 256))}[rep]


# ----------------------------------------------------------------------------------------------------- --arch
def parse_arch(arch: str | dict[str, Any] | HRNetConfig) -> tuple[HRNetConfig, set[str]]:
    """An ``--arch`` value as a config and the set of fields it states explicitly.

    Accepts an :class:`HRNetConfig`, a dict or JSON text of one (``HRNetConfig.to_dict`` form; ``stage2..4``
    required), a path to such a JSON file, a registered name (``hrnet_w48``, ``hrnetv2_w18``), ``wNN`` or ``tiny``.
    A name states the structure only (stages, stem), not the fusion mode or ``multi_scale_last``.
    """
    structural = {"stage1", "stage2", "stage3", "stage4", "stem_width"}
    if isinstance(arch, HRNetConfig):
        return arch, set(arch.to_dict())
    if isinstance(arch, dict):
        return _arch_from_dict(arch), set(arch)
    text = str(arch).strip()
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise LayoutError(f"--arch is not valid JSON ({e.msg} at character {e.pos})") from None
        return _arch_from_dict(d), set(d)
    if text.endswith(".json") or os.path.sep in text:
        path = Path(text)
        if path.is_dir():
            raise LayoutError(
                f"--arch {path} is a folder; give an HRNetConfig JSON file, JSON text or a name"
            )
        if not path.is_file():
            raise FileNotFoundError(f"--arch file not found: {path}")
        try:
            text = path.read_bytes()[: 2**20].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise LayoutError(
                f"--arch file {path} is not JSON text (binary data); give an HRNetConfig JSON file"
            ) from None
        if not text.startswith("{"):
            raise LayoutError(
                f"--arch file {path} does not hold a JSON object; give an HRNetConfig JSON file"
            )
        return parse_arch(text)
    if text == "tiny":
        return tiny_config(), structural
    m = re.fullmatch(r"(?:(hrnet|hrnetv2|hrnetv2p)_)?w(\d+)", text)
    if not m:
        raise LayoutError(
            f"--arch {text!r} is neither a model name (hrnet_w32, hrnetv2_w48, w18, tiny) nor HRNetConfig JSON"
        )
    return hrnet_config(int(m.group(2))), structural


def _arch_from_dict(d: dict[str, Any]) -> HRNetConfig:
    try:
        return HRNetConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise LayoutError(f"--arch is not a valid HRNet config: {e}") from None


def _check_arch(inferred: HRNetConfig, given: HRNetConfig, stated: set[str]) -> None:
    """Every structural field ``--arch`` states must agree with the tensors."""
    got, want = inferred.to_dict(), given.to_dict()
    for name in ("stage1", "stage2", "stage3", "stage4", "stem_width", "multi_scale_last"):
        if name in stated and got[name] != want[name]:
            raise LayoutError(
                f"--arch contradicts the checkpoint: {name} is {_show(want[name])} in --arch but "
                f"{_show(got[name])} in the tensors; drop --arch (the architecture is read from the file) "
                "or convert the matching checkpoint"
            )


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return f"{v['num_modules']} module(s), blocks {v['num_blocks']}, channels {v['num_channels']} ({v['block']})"
    return repr(v)


# --------------------------------------------------------------------------------------------- the state dict
def _architecture_name(task: str, arch: HRNetConfig) -> tuple[str, str | None]:
    """The registered entry point for ``task`` with ``arch``'s trunk (``hrnetv2_w18_small`` for HRNetV2-W18-Small-v1,
    ...); a trunk that is not registered uses the name of the nearest standard width."""
    prefix = _TASK_MODELS[task][0]
    trunk = trunk_name(arch)
    if trunk is not None:
        return f"{prefix}_{trunk}", None
    width = arch.width
    near = min(WIDTHS, key=lambda w: (abs(w - width), w))
    return f"{prefix}_w{near}", (
        f"this W{width} trunk is not a registered one; the entry point is {prefix}_w{near}, and "
        f"model_args['arch'] rebuilds the network exactly"
    )


def _check_against_model(
    architecture: str, model_args: dict[str, Any], sd: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], torch.nn.Module]:
    """Order ``sd`` as the model's state dict and fill ``num_batches_tracked``; refuse any other difference.

    The model is built on the meta device (no memory). Returns the ordered state dict, the keys added and the model.
    """
    from ..complexity import meta_model

    try:
        model = meta_model(architecture, **model_args)
    except (TypeError, ValueError) as e:
        raise LayoutError(f"the inferred architecture cannot be built: {e}") from None
    own = model.state_dict()
    wrong = [k for k, v in own.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if len(wrong) > 1:  # one odd tensor is an edit (reported below); many mean parts of different networks
        raise LayoutError(
            f"the tensors do not form one network: {len(wrong)} of them have other shapes than the rest of the file "
            f"implies for a {architecture} (e.g. {wrong[0]}: {tuple(sd[wrong[0]].shape)}, expected "
            f"{tuple(own[wrong[0]].shape)}); the file was spliced from checkpoints of different widths or edited: "
            "convert an original checkpoint"
        )
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    added = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in added]
    if missing:
        raise LayoutError(
            f"the checkpoint lacks {len(missing)} weight(s) that a {architecture} with the inferred architecture "
            f"needs: {_brief(missing, 5)}; the file is incomplete or was cut down"
        )
    if unexpected:
        raise LayoutError(
            f"{len(unexpected)} weight(s) have no place in the inferred {architecture}: {_brief(unexpected, 5)}; "
            "the file has layers this architecture lacks (e.g. modules of one stage with different depths, which "
            "HRNetConfig cannot express)"
        )
    for k, v in own.items():
        if k in sd and tuple(sd[k].shape) != tuple(v.shape):
            raise LayoutError(
                f"shape mismatch for {k}: the checkpoint has {tuple(sd[k].shape)}, the inferred architecture "
                f"expects {tuple(v.shape)}; the file is inconsistent (edited or damaged)"
            )
        if k in sd and v.is_floating_point() and not sd[k].is_floating_point():
            # timm would cast them silently on load; integer or complex weights are not an HRNet's
            raise LayoutError(
                f"{k} holds {str(sd[k].dtype).removeprefix('torch.')} values, but weights must be floating point; "
                "the file is damaged or quantised: convert the original floating-point checkpoint"
            )
    out = {k: sd[k] if k in sd else torch.zeros((), dtype=torch.long) for k in own}
    return out, added, model


def _map_keys(state_dict: dict[str, torch.Tensor], mapping: dict[str, str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    for src, ours in mapping.items():
        if ours in out:
            raise LayoutError(
                f"keys {source_of[ours]!r} and {src!r} both map to {ours!r}; the file holds two heads"
            )
        out[ours] = state_dict[src]
        source_of[ours] = src
    return out


def _fill_zero_biases(sd: dict[str, torch.Tensor], layout: Layout) -> list[str]:
    added = []
    for prefix in layout.zero_biases:
        w, b = f"{prefix}.weight", f"{prefix}.bias"
        if w in sd and b not in sd:
            sd[b] = torch.zeros(sd[w].shape[0], dtype=sd[w].dtype)
            added.append(b)
    return added


# ------------------------------------------------------------------------------------------ pretrained config
def _dict_block(text: str, start: int) -> str:
    """``text`` from ``start`` to the parenthesis closing the first one opened after it."""
    depth, end = 0, start
    for end in range(text.find("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
    return text[start : end + 1]


def _codec_from_mm_cfg(text: str) -> dict[str, Any]:
    """The heatmap codec of an mmpose config text (``codec = dict(type=..., input_size=(w, h), ...)``)."""
    start = text.find("codec = dict(")
    if start < 0:
        return {}
    block = _dict_block(text, start)
    codec: dict[str, Any] = {}
    if m := re.search(r"type\s*=\s*'(\w+)'", block):
        codec["type"] = m.group(1)
    for name in ("input_size", "heatmap_size"):
        if m := re.search(name + r"\s*=\s*[(\[]\s*(\d+),\s*(\d+)", block):
            codec[name] = [int(m.group(1)), int(m.group(2))]
    if m := re.search(r"sigma\s*=\s*([\d.]+)", block):
        codec["sigma"] = float(m.group(1))
    return codec


def _modules_from_mm_cfg(text: str) -> dict[int, int]:
    """Stage -> ``num_modules`` that an OpenMMLab config text gives its HRNet backbone
    (``extra=dict(stage1=dict(num_modules=1, ...), ...)``); empty when it gives none."""
    stated = {}
    for m in re.finditer(r"stage([1-4])\s*=\s*dict\(", text):
        if n := re.search(r"num_modules\s*=\s*(\d+)", _dict_block(text, m.start())):
            stated.setdefault(int(m.group(1)), int(n.group(1)))
    return stated


def _check_layout_claims(
    layout: Layout, arch: HRNetConfig, meta: dict[str, Any], source_name: str | None, arch_given: bool
) -> str | None:
    """Hold the inferred trunk against what the file claims to be; returns a warning note, or None.

    Dropping a whole module (the last of a stage, whose neighbours still fit) leaves a checkpoint that converts
    as a shallower network. Refused when the file claims otherwise: its OpenMMLab config states other module
    counts, or it is named like a released file (every release is a registered trunk) and its trunk is one or
    two changes away from that release's. Otherwise (custom layouts are legitimate) a trunk that close to a
    registered one of its width gets a warning naming the differences. ``arch_given``: ``--arch`` stated the
    stages, so the layout stands as it is.
    """
    cfg_text = meta.get("cfg") or meta.get("config") or ""
    stages = (arch.stage1, *arch.stages)
    for s, n in _modules_from_mm_cfg(cfg_text if isinstance(cfg_text, str) else "").items():
        held = stages[s - 1].num_modules
        if n != held:
            why = (
                "a module is missing from the checkpoint"
                if held < n
                else "the two do not describe one network"
            )
            raise LayoutError(
                f"the file's meta['cfg'] gives stage {s} {n} module(s) but its tensors hold {held}: {why} (a "
                "damaged or edited file?); convert the complete checkpoint"
            )
    if arch_given or trunk_name(arch) is not None:
        return None
    near = nearest_trunk(arch)
    if near is None or not 1 <= len(near[1]) <= 2:
        return None
    trunk, differences = near
    ref = TRUNKS[trunk]
    short = any(a.num_modules < r.num_modules for a, r in zip(stages, (ref.stage1, *ref.stages)))
    what = "; ".join(differences) + (": a module may be missing from the checkpoint" if short else "")
    release = known.find_release(source_name, layout.family) if source_name else None
    if release is not None and release.width_for(source_name) in (None, arch.width):
        raise LayoutError(
            f"{source_name} is named like a released HRNet-{trunk_title(trunk)} checkpoint, but {what}; convert "
            "the complete file (a network of this layout on purpose: state it with --arch, or rename the file)"
        )
    return f"warning: {what}; converted as this layout, which model_args['arch'] rebuilds exactly"


def _crop_from_mm_cfg(text: str) -> tuple[int, int] | None:
    m = re.search(r"crop_size\s*=\s*\(\s*(\d+),\s*(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _meta_error(where: str, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"the file's {where} is unusable ({type(err).__name__}: {err}); its metadata was damaged or edited: pass "
        "--dataset to use the dataset's own metadata, or re-save the checkpoint with only its state_dict"
    )


def _keypoints_from_mm_meta(dataset_meta: dict[str, Any]) -> dict[str, Any]:
    """Keypoint names, flip pairs, skeleton and sigmas from an mmpose ``meta['dataset_meta']``.

    Raises :class:`CheckpointError` naming the field when one cannot be read.
    """
    out: dict[str, Any] = {}
    field = "keypoint_id2name"
    try:
        names = dataset_meta.get(field)
        if isinstance(names, dict) and names:
            out["keypoint_names"] = [str(names[i]) for i in sorted(names, key=int)]
        field = "flip_indices"
        flip = dataset_meta.get(field)
        if flip is not None:
            pairs = sorted({tuple(sorted((i, int(j)))) for i, j in enumerate(flip) if i != int(j)})
            out["flip_pairs"] = [list(p) for p in pairs]
        field = "skeleton_links"
        links = dataset_meta.get(field)
        if links is not None and len(links):
            out["skeleton"] = [[int(a), int(b)] for a, b in links]
        field = "sigmas"
        sigmas = dataset_meta.get(field)
        if sigmas is not None and len(sigmas):
            out["sigmas"] = [round(float(s), 6) for s in sigmas]
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise _meta_error(f"meta['dataset_meta']['{field}']", e) from None
    return out


def _size_from_meta(size: Any, where: str) -> tuple[int, int] | None:
    """An (H, W) read from the file's config text, refused when it has no pixels or is absurdly large."""
    if size is not None and not all(1 <= v <= MAX_INPUT_SIDE for v in size):
        raise _meta_error(where, ValueError(f"size {size[0]}x{size[1]} outside 1..{MAX_INPUT_SIDE}"))
    return size


def _label_names(labels: Any, where: str) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        raise _meta_error(
            where, TypeError(f"a list of class names was expected, got {type(labels).__name__}")
        )
    return [str(c) for c in labels]


def _release_disagrees(
    release: known.Release,
    filename: str,
    task: str,
    width: int | None,
    num_outputs: int | None,
    size: tuple[int, int] | None,
) -> str:
    """Why the tensors (or the stated input size) contradict the released file ``filename`` is; "" if they do not."""
    named = release.width_for(filename)
    if width is not None and named is not None and named != width:
        return f"its tensors are W{width}, not W{named}"
    ds = known.dataset_for(task, release.dataset)
    if ds is not None and task != "detection" and num_outputs is not None and ds.num_outputs != num_outputs:
        return f"its head has {num_outputs} outputs, not the {ds.num_outputs} of {ds.title}"
    if size is not None and release.input_size is not None and tuple(size) != tuple(release.input_size):
        return (
            f"it was trained at {size[0]}x{size[1]}, not the release's {release.input_size[0]}x"
            f"{release.input_size[1]}"
        )
    return ""


def _pretrained_cfg(
    layout: Layout,
    architecture: str,
    head_args: dict[str, Any],
    meta: dict[str, Any],
    source_name: str | None,
    source_sha256: str | None,
    dataset: str | None,
    input_size: tuple[int, int] | None,
    width: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """timm's ``pretrained_cfg`` plus this package's task metadata, from flags, the file's meta and known facts.

    Each fact comes from the first source that has it: the explicit argument; the file's own metadata (OpenMMLab
    ``meta``: dataset metadata, codec, crop size) or the table of released files; the file name; the dataset's
    defaults. The dataset must have as many outputs as the head. A released file's entry (dataset, input size,
    published metrics) applies only when the tensors agree with it: the width (``width``, read from the tensors),
    the number of outputs and, where the file or the flags give it, the input size.
    """
    task, family = layout.task, layout.family
    notes: list[str] = []
    num_outputs = head_args.get("num_classes")
    filename = source_name or ""
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    cfg_text = meta.get("cfg") or meta.get("config") or ""
    cfg_text = cfg_text if isinstance(cfg_text, str) else ""
    codec = _codec_from_mm_cfg(cfg_text) if task == "pose" else {}
    size = input_size
    if size is None and codec.get("input_size"):
        w, h = codec["input_size"]
        size = _size_from_meta((h, w), "meta['cfg'] codec input_size")
    if size is None and task == "segmentation" and cfg_text:
        size = _size_from_meta(_crop_from_mm_cfg(cfg_text), "meta['cfg'] crop_size")
    release = known.find_release(filename, family) if filename else None
    if release is not None:
        why = _release_disagrees(release, filename, task, width, num_outputs, size)
        if why:
            notes.append(
                f"the file is named like the released {filename}, but {why}; the release's dataset, input size and "
                "published metrics were not recorded"
            )
            release = None

    ds_name = dataset or (release.dataset if release else None)
    if ds_name is None and isinstance(dataset_meta.get("dataset_name"), str):
        ds_name = dataset_meta["dataset_name"]
    if ds_name is None and filename:
        ds_name = known.dataset_from_name(filename, task)
    try:
        ds = known.dataset_for(task, ds_name, num_outputs)
    except ValueError:
        if dataset:
            raise
        ds = known.dataset_for(task, None, num_outputs)
    if ds is not None and task != "detection" and ds.num_outputs != num_outputs:
        if dataset:
            raise LayoutError(
                f"--dataset {dataset} has {ds.num_outputs} outputs but the checkpoint's head has {num_outputs}"
            )
        ds = None
    if ds is None and task not in ("backbone",):
        notes.append(f"dataset unknown ({num_outputs} outputs); pass --dataset to record it")

    if size is None and release is not None:
        size = release.input_size
    if size is None and filename:
        size = known.size_from_name(filename)
    if size is None and ds is not None:
        size = ds.input_size
    if size is None:
        size = (256, 256) if task in ("pose", "landmark", "backbone") else (224, 224)
        notes.append(f"input size unknown; recorded {size[0]}x{size[1]} (pass --input-size H W)")
    h, w = size

    repo = known.REPOS[family]
    short = _TASK_MODELS[task][1]
    tag = f"{ds.key}_{short}_{h}x{w}" if ds else f"{short}_{h}x{w}"
    cfg: dict[str, Any] = {
        "tag": tag,
        "custom_load": False,
        "input_size": [int(head_args.get("in_chans", 3)), h, w],
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": 0.875 if task == "classification" else 1.0,
        "crop_mode": "center",
        "mean": list(known.MEAN),
        "std": list(known.STD),
        "num_classes": int(num_outputs or 0),
        "first_conv": "conv1",
    }
    if ds is not None and ds.test_input_size:
        cfg["test_input_size"] = [cfg["input_size"][0], *ds.test_input_size]
    if task == "classification":
        cfg["pool_size"] = [max(1, h // 32), max(1, w // 32)]
    if task in _CLASSIFIERS:
        cfg["classifier"] = _CLASSIFIERS[task]
    if dataset_meta.get("classes") is not None:
        labels = _label_names(dataset_meta["classes"], "meta['dataset_meta']['classes']")
    else:
        labels = _label_names(meta.get("CLASSES"), "meta['CLASSES']")
    if task == "segmentation":
        if labels and len(labels) == num_outputs:
            cfg["label_names"] = [str(c) for c in labels]
        elif ds is not None and ds.label_names:
            cfg["label_names"] = list(ds.label_names)
    cfg.update(
        license=repo.license,
        description=f"{architecture} {short} model converted from {layout.description}",
        origin_url=repo.url or None,
        paper_name=repo.paper_name,
        paper_ids=list(repo.paper_ids),
    )
    # ---- this package's task metadata (kept in model.pretrained_cfg by the registry)
    cfg["task"] = task
    cfg["dataset"] = ds.key if ds else None
    cfg["dataset_title"] = ds.title if ds else None
    cfg["hub_dataset"] = ds.hub_id if ds else None
    if task in ("pose", "landmark", "segmentation"):
        cfg["output_stride"] = 4
    if task in ("pose", "landmark"):
        kp = _keypoints_from_mm_meta(dataset_meta) if dataset_meta else {}
        if len(kp.get("keypoint_names", ())) != num_outputs:
            kp = {}  # metadata of another layout than the head's
        if not kp and ds is not None:
            kp = known.keypoint_metadata(ds.key)
        cfg.update(kp)
        cfg["num_keypoints"] = int(num_outputs or 0)
        if not codec:
            sigma = ds.heatmap_sigma if ds else 2.0
            if task == "pose" and ds is not None and ds.key == "coco" and h >= 384:
                sigma = 3.0  # the official 384x288 configs widen the target Gaussian
            codec = {"type": "MSRAHeatmap", "sigma": sigma}
        codec.setdefault("input_size", [w, h])
        codec.setdefault("heatmap_size", [w // 4, h // 4])
        cfg["codec"] = codec
    if task == "detection":
        cfg["pyramid_strides"] = [4 * 2**i for i in range(int(head_args.get("neck_levels", 5)))]
    if release is not None and release.metrics:
        cfg["metrics"] = dict(release.metrics)
    if release is not None and release.note:
        notes.append(release.note)
    cfg["source_file"] = source_name
    cfg["source_sha256"] = source_sha256
    cfg["source_family"] = family
    cfg["converter_version"] = CONVERTER_VERSION
    return {k: v for k, v in cfg.items() if v is not None}, notes


# ------------------------------------------------------------------------------------------------ public API
def convert_state_dict(
    state_dict: dict[str, torch.Tensor],
    *,
    family: str | None = None,
    arch: str | dict[str, Any] | HRNetConfig | None = None,
    fusion_upsample: str | None = None,
    align_corners: bool | None = None,
    dataset: str | None = None,
    input_size: tuple[int, int] | None = None,
    meta: dict[str, Any] | None = None,
    source_name: str | None = None,
    source_sha256: str | None = None,
) -> Conversion:
    """Convert a state dict of any known HRNet layout (containers already unwrapped) to this package's.

    Args:
        state_dict: source key -> tensor.
        family: force a layout (``pose``, ``cls``, ``seg``, ``face``, ``det``, ``mmpose``, ``mmseg``, ``mmdet``,
            ``backbone``); it must fit the keys. ``backbone`` keeps only the trunk of any of them.
        arch: an ``--arch`` value (see :func:`parse_arch`); stated structure must agree with the tensors, stated
            ``fusion_upsample`` / ``align_corners`` override the family's.
        fusion_upsample, align_corners: override how the fusion upsamples (the file cannot say).
        dataset, input_size: override the recorded dataset and (H, W) input size.
        meta: the file's ``meta`` dict (OpenMMLab files: dataset metadata and config text).
        source_name, source_sha256: the source file's name and digest, recorded in the metadata.
    """
    meta = meta or {}
    km = match_layout(state_dict.keys(), family)
    layout = km.layout
    sd = _map_keys(state_dict, km.mapping)
    added = _fill_zero_biases(sd, layout)

    given, stated = (None, set()) if arch is None else parse_arch(arch)
    fusion = fusion_upsample or (given.fusion_upsample if given and "fusion_upsample" in stated else None)
    fusion = fusion or layout.fusion_upsample
    corners = align_corners
    if corners is None and given is not None and "align_corners" in stated:
        corners = given.align_corners
    if corners and fusion == "nearest":
        raise LayoutError(
            f"align_corners applies to bilinear fusion, but a '{layout.family}' checkpoint fuses by nearest "
            "upsampling; drop --align-corners (or set --fusion-upsample bilinear if the model was trained so)"
        )
    inferred = infer_arch(sd, fusion, bool(corners))
    if given is not None:
        _check_arch(inferred, given, stated)
    head_args = infer_head(sd, layout.task, inferred)
    in_chans = in_chans_of(sd)
    if in_chans != 3:
        head_args["in_chans"] = in_chans
    if layout.task not in ("pose", "backbone") and not inferred.multi_scale_last:
        # the pose head (and a bare trunk) read branch 0 alone; the other heads need all four branches
        raise LayoutError(
            f"the last stage-4 module fuses into branch 0 only, which a '{layout.family}' model cannot use "
            "(its head needs all four branches); is this a pose checkpoint with another head?"
        )
    architecture, name_note = _architecture_name(layout.task, inferred)
    stages_stated = bool(stated & {"stage1", "stage2", "stage3", "stage4"})
    layout_warning = _check_layout_claims(layout, inferred, meta, source_name, stages_stated)
    if layout_warning:  # says more than the name note
        name_note = layout_warning
    model_args = {"arch": inferred.to_dict(), **head_args}
    ordered, bn_added, model = _check_against_model(architecture, model_args, sd)
    pretrained_cfg, notes = _pretrained_cfg(
        layout, architecture, head_args, meta, source_name, source_sha256, dataset, input_size, inferred.width
    )
    if name_note:
        notes.insert(0, name_note)
    named = re.search(r"(?:^|[^a-z])w(\d+)(?:[^0-9]|$)", (source_name or "").lower())
    if named and int(named.group(1)) != inferred.width:
        notes.append(
            f"the file name says W{named.group(1)} but the tensors are W{inferred.width}; the tensors were used"
        )
    if not inferred.multi_scale_last:
        notes.append(
            "the last stage-4 module fuses into branch 0 only (as the official pose code): features_only gives the "
            "stem and branch 0; branches 1-3 have no trained fusion weights and are refused"
        )
    not_finite = [
        k
        for k, t in ordered.items()
        if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all())
    ]  # meta tensors (shapes only, e.g. to name an architecture) hold no values to check
    if not_finite:
        notes.append(
            f"warning: {len(not_finite)} tensor(s) hold NaN or infinite values ({_brief(not_finite)}); the model "
            "will output NaN: check the source file (a diverged training run or a damaged download?)"
        )
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in ordered.values() if t.is_floating_point()})
    if dtypes != ["float32"]:
        notes.append(f"weights kept in {'/'.join(dtypes)}, as stored in the source")
    return Conversion(
        layout=layout,
        architecture=architecture,
        arch=inferred,
        model_args=model_args,
        state_dict=ordered,
        pretrained_cfg=pretrained_cfg,
        dropped=dict(km.dropped),
        added=added + bn_added,
        notes=notes,
        source_name=source_name,
        source_sha256=source_sha256,
        meta_model=model,
    )


def convert_checkpoint(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    model_id: str | None = None,
    complexity: bool = True,
    **options: Any,
) -> tuple[Conversion, Path]:
    """Read ``path`` safely, convert it and write the model folder; returns the conversion and the folder.

    ``out_dir`` defaults to ``./<architecture>.<tag>`` (e.g. ``hrnet_w32.coco_pose_256x192``). An existing folder
    is replaced only with ``force=True``; on any error nothing is written. ``model_id`` (``hf-hub:ORG/NAME``) is
    the name the model card's usage code loads; ``complexity=False`` leaves the multiply-add count (a second or
    two on the meta device) out of the card. ``options`` are those of :func:`convert_state_dict`.
    """
    from .writer import check_destination, write_folder

    if out_dir is not None:
        check_destination(Path(out_dir), force, path)
    ckpt = read_checkpoint(path)
    conversion = convert_state_dict(
        ckpt.state_dict,
        meta=ckpt.meta,
        source_name=ckpt.path.name,
        source_sha256=ckpt.sha256,
        **options,
    )
    conversion.container = ckpt.container
    folder = Path(out_dir) if out_dir is not None else Path.cwd() / conversion.default_folder_name
    write_folder(conversion, folder, force=force, model_id=model_id, complexity=complexity, source=path)
    return conversion, folder
