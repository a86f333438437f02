"""Writing a converted model folder: ``model.safetensors``, ``config.json`` (timm's hub format), ``README.md``.

The folder is assembled in a temporary sibling directory and renamed into place, so a crash or an error never
leaves a half-written folder behind, and an existing folder is replaced only with ``force``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

if TYPE_CHECKING:
    from .converter import Conversion

__all__ = ["FOLDER_FILES", "check_destination", "model_card", "write_folder"]

#: The files of a converted folder, in upload order.
FOLDER_FILES = ("config.json", "model.safetensors", "README.md")

_PIPELINE = {
    "pose": "keypoint-detection",
    "landmark": "keypoint-detection",
    "segmentation": "image-segmentation",
    "classification": "image-classification",
    "detection": "image-feature-extraction",
    "backbone": "image-feature-extraction",
}
_TASK_TAGS = {
    "pose": ["pose-estimation", "human-pose-estimation", "heatmap"],
    "landmark": ["facial-landmark-detection", "face-alignment", "heatmap"],
    "segmentation": ["semantic-segmentation"],
    "classification": ["image-classification"],
    "detection": ["object-detection", "feature-pyramid", "backbone"],
    "backbone": ["backbone"],
}
_VARIANT_NAMES = {"hrnet": "HRNetV1", "hrnetv2": "HRNetV2", "hrnetv2p": "HRNetV2p"}
_CITATIONS = {
    "arXiv:1902.09212": """@inproceedings{sun2019hrnet,
  title     = {Deep High-Resolution Representation Learning for Human Pose Estimation},
  author    = {Sun, Ke and Xiao, Bin and Liu, Dong and Wang, Jingdong},
  booktitle = {CVPR},
  year      = {2019}
}""",
    "arXiv:1908.07919": """@article{wang2019hrnetv2,
  title   = {Deep High-Resolution Representation Learning for Visual Recognition},
  author  = {Wang, Jingdong and Sun, Ke and Cheng, Tianheng and Jiang, Borui and Deng, Chaorui and Zhao, Yang and
             Liu, Dong and Mu, Yadong and Tan, Mingkui and Wang, Xinggang and Liu, Wenyu and Xiao, Bin},
  journal = {TPAMI},
  year    = {2019}
}""",
}


def check_destination(folder: Path, force: bool) -> None:
    """Refuse early (before any work) to write over an existing path unless ``force``; never over a file."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another --out")
    if folder.exists() and not force:
        raise FileExistsError(f"{folder} already exists; pass --force to replace it, or choose another --out")
    ancestor = folder.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(
            f"cannot create the output folder {folder}: {ancestor} is a file; choose another --out"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(
            f"cannot create the output folder {folder}: {ancestor} is not writable; choose another --out"
        )


def _yaml_list(name: str, values: list[str]) -> list[str]:
    # JSON strings are valid YAML scalars, which spares a YAML dependency
    return [f"{name}:"] + [f"- {json.dumps(v)}" for v in values]


def _front_matter(conv: Conversion) -> str:
    cfg = conv.pretrained_cfg
    lines = ["---", "library_name: timm", f"license: {cfg.get('license', 'other')}"]
    lines.append(f"pipeline_tag: {_PIPELINE[conv.task]}")
    lines += _yaml_list("tags", ["timm", "hrnet", "hrnet-backbones", *_TASK_TAGS[conv.task]])
    if cfg.get("hub_dataset"):
        lines += _yaml_list("datasets", [cfg["hub_dataset"]])
    lines.append("---")
    return "\n".join(lines)


def _outputs(conv: Conversion, h: int, w: int) -> str:
    k = conv.num_classes
    if conv.task == "pose":
        return f"keypoint heatmaps `(N, {k}, {h // 4}, {w // 4})` (stride 4)"
    if conv.task == "landmark":
        return f"landmark heatmaps `(N, {k}, {h // 4}, {w // 4})` (stride 4)"
    if conv.task == "segmentation":
        return (
            f"class logits `(N, {k}, {h // 4}, {w // 4})` at stride 4, as the source's forward; upsample them "
            "bilinearly to the image size before the argmax (see Usage)"
        )
    if conv.task == "classification":
        return f"class logits `(N, {k})`"
    if conv.task == "detection":
        levels = conv.model_args.get("neck_levels", 5)
        chs = conv.model_args.get("neck_channels", 256)
        strides = ", ".join(str(4 * 2**i) for i in range(levels))
        return (
            f"a list of {levels} HRFPN pyramid levels, `{chs}` channels each, strides {strides} (mmdetection pads "
            "its inputs to a multiple of 32; this model also takes other sizes)"
        )
    return "the four branch maps (strides 4, 8, 16, 32)"


def _usage(conv: Conversion, model_id: str) -> str:
    cfg = conv.pretrained_cfg
    h, w = cfg["input_size"][1:]
    code = [
        "import timm, torch",
        "import hrnet_backbones  # registers the HRNet models with timm",
        "",
        f'model = timm.create_model("{model_id}", pretrained=True).eval()',
        "cfg = timm.data.resolve_data_config({}, model=model)  # input size, mean/std of this checkpoint",
        "transform = timm.data.create_transform(**cfg)",
        f"x = torch.randn(1, 3, {h}, {w})  # or transform(pil_image).unsqueeze(0)",
        "with torch.no_grad():",
        "    out = model(x)",
    ]
    if conv.task == "segmentation":
        code += [
            "# logits come at stride 4; bring them to the image size, then take the class per pixel",
            "logits = torch.nn.functional.interpolate(out, size=x.shape[-2:], mode='bilinear', "
            f"align_corners={conv.arch.align_corners})",
            "labels = logits.argmax(1)",
        ]
    if conv.task in ("pose", "landmark"):
        code += [
            "# heatmaps at stride 4; keypoint names, flip pairs and the codec are in model.pretrained_cfg",
            "names = model.pretrained_cfg.get('keypoint_names')",
        ]
    code += [
        "",
        "# the backbone alone: multi-resolution features for your own head",
        f'features = timm.create_model("{model_id}", pretrained=True, features_only=True)',
        "for f in features(x):",
        "    print(f.shape)",
    ]
    return "```python\n" + "\n".join(code) + "\n```"


def model_card(conv: Conversion, model_id: str | None = None, complexity: bool = True) -> str:
    """The ``README.md`` model card: Hub front matter, details, usage, metrics, source and citation.

    ``complexity`` adds the multiply-adds at the recorded input size, counted on the meta device (about a second
    for a full-size model); the parameter count is always given.
    """
    cfg = conv.pretrained_cfg
    name = conv.default_folder_name
    model_id = model_id or f"hf-hub:ORG/{name}"
    h, w = cfg["input_size"][1:]
    a = conv.arch
    what = {
        "pose": "top-down human pose estimation",
        "landmark": "facial landmark detection",
        "segmentation": "semantic segmentation",
        "classification": "image classification",
        "detection": "detection backbone with its HRFPN neck",
        "backbone": "backbone",
    }[conv.task]
    dataset = cfg.get("dataset_title")
    lines = [
        _front_matter(conv),
        f"# {name}",
        "",
        f"HRNet-W{a.width} {what}" + (f" trained on {dataset}" if dataset else "") + " for "
        "[timm](https://github.com/huggingface/pytorch-image-models). " + conv.origin
        if conv.origin
        else f"HRNet-W{a.width} {what}" + (f" trained on {dataset}" if dataset else "") + ", converted for "
        "[timm](https://github.com/huggingface/pytorch-image-models) by `hrnet-backbones` from "
        + (f"`{conv.source_name}` of " if conv.source_name else "")
        + (
            f"[{cfg['origin_url'].removeprefix('https://github.com/')}]({cfg['origin_url']})"
            if cfg.get("origin_url")
            else "a checkpoint"
        )
        + ". The weights are unchanged; only the key names are mapped, so the model gives the source code's outputs.",
        "",
        "## Model details",
        "",
        f"- **Architecture:** `{conv.architecture}` ({_VARIANT_NAMES[conv.architecture.rsplit('_w', 1)[0]]} "
        f"W{a.width}; branches {list(a.branch_channels)}; stage modules "
        f"{'/'.join(str(s.num_modules) for s in a.stages)}; fusion upsampling `{a.fusion_upsample}`"
        + (", `align_corners=True`" if a.align_corners else "")
        + (", single-scale last module" if not a.multi_scale_last else "")
        + ")",
    ]
    params = sum(t.numel() for k, t in conv.state_dict.items() if not _is_buffer(k)) / 1e6
    if complexity:
        lines.append(f"- **Params:** {params:.2f} M; **GMACs:** {conv.complexity().gmacs:.2f} at {h}x{w}")
    else:
        lines.append(f"- **Params:** {params:.2f} M")
    lines += [
        f"- **Input:** RGB `{h}x{w}` (H x W), scaled to [0, 1] and normalised with mean {cfg['mean']}, std {cfg['std']}",
        f"- **Output:** {_outputs(conv, h, w)}",
        f"- **Task metadata** in `model.pretrained_cfg`: task `{conv.task}`"
        + (f", dataset `{cfg['dataset']}`" if cfg.get("dataset") else "")
        + (
            ", keypoint names, flip pairs, skeleton, heatmap codec"
            if conv.task in ("pose", "landmark")
            else ""
        )
        + (", class names" if cfg.get("label_names") else ""),
        f"- **Licence:** `{cfg.get('license', 'other')}` (that of the source code base; check the source's terms)",
    ]
    if not a.multi_scale_last:
        lines.append(
            "- **Features:** the source's last module fuses into the highest-resolution branch only, so "
            "`features_only=True` gives the stem and branch 0; asking for branches 1-3 raises an error instead of "
            "returning features computed from untrained fusion weights."
        )
    lines += ["", "## Usage", "", _usage(conv, model_id)]
    if model_id.startswith("hf-hub:ORG/"):
        lines += [
            "",
            f'From a local copy of this folder: `timm.create_model("local-dir:/path/to/{name}", pretrained=True)`.',
        ]
    if cfg.get("metrics"):
        lines += ["", "## Metrics (as reported by the source)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in cfg["metrics"].items()]
    lines += ["", "## Source", ""]
    if conv.source_name:
        lines.append(
            f"- File: `{conv.source_name}`"
            + (f", SHA-256 `{conv.source_sha256}`" if conv.source_sha256 else "")
        )
    lines.append(f"- Layout: `{conv.layout.family}` ({conv.layout.description})")
    if conv.dropped:
        reasons = sorted(set(conv.dropped.values()))
        lines.append(f"- Left out on purpose ({len(conv.dropped)} keys): " + "; ".join(reasons))
    if conv.added:
        lines.append(
            f"- Filled with neutral values ({len(conv.added)} keys the source lacks): zero conv bias / "
            "BatchNorm step counters"
        )
    lines += ["", "## Citation", "", "```bibtex"]
    papers = [p for p in cfg.get("paper_ids", []) if p in _CITATIONS] or list(_CITATIONS)
    lines += ["\n\n".join(_CITATIONS[p] for p in papers), "```", ""]
    return "\n".join(lines)


def _standalone(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors that share no storage (safetensors refuses aliases; a file may tie two keys)."""
    seen: set[int] = set()
    out = {}
    for k, t in state_dict.items():
        t = t.contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def _is_buffer(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def write_folder(
    conv: Conversion,
    folder: Path,
    force: bool = False,
    model_id: str | None = None,
    complexity: bool = True,
) -> Path:
    """Write ``conv`` as a timm model folder at ``folder`` (atomically; replaced only with ``force``).

    ``model_id`` is the name the card's usage code loads; ``complexity`` see :func:`model_card`.
    """
    folder = Path(folder)
    check_destination(folder, force)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    except OSError as e:  # e.g. a read-only or pseudo file system: name the folder, not our temporary one
        raise ValueError(
            f"cannot create the output folder {folder}: {e.strerror}; choose another --out"
        ) from None
    try:
        save_file(
            _standalone(conv.state_dict), str(tmp / "model.safetensors"), metadata=conv.safetensors_metadata()
        )
        (tmp / "config.json").write_text(json.dumps(conv.config_json(), indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(conv, model_id, complexity), encoding="utf-8")
        _move_into_place(tmp, folder, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _move_into_place(tmp: Path, folder: Path, force: bool) -> None:
    if not folder.exists():
        os.replace(tmp, folder)
        return
    if not force:  # appeared while we were converting
        raise FileExistsError(f"{folder} already exists; pass --force to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    os.replace(folder, old / folder.name)
    try:
        os.replace(tmp, folder)
    except BaseException:
        os.replace(old / folder.name, folder)  # put the previous folder back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def read_folder_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a converted folder."""
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
