"""Writing a converted model folder: ``model.safetensors``, ``config.json`` (timm's hub format), ``README.md``.

The folder is assembled in a temporary sibling directory and renamed into place (``fileio.atomic_folder``), so a
crash or an error never leaves a half-written folder behind. An existing folder is replaced only with ``force``,
and only when it holds nothing but a conversion's files; never the current folder or the input's.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from ..fileio import atomic_folder, check_output_folder, make_parent_folders, only_these_entries

if TYPE_CHECKING:
    from .converter import Conversion

__all__ = ["FOLDER_FILES", "check_destination", "check_folder", "model_card", "write_folder"]

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


def _is_converted_folder(folder: Path) -> tuple[bool, str]:
    """Whether ``folder`` holds nothing but what a conversion writes; if not, why not."""
    ours, why = only_these_entries(folder, FOLDER_FILES, "a conversion")
    if not ours:
        return ours, why
    not_files = [name for name in sorted(os.listdir(folder)) if not (folder / name).is_file()]
    if not_files:
        return False, f"{', '.join(not_files)} in it is not a plain file"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        ours = "converter_version" in config["pretrained_cfg"]
    except (OSError, ValueError, KeyError, TypeError):
        ours = False
    if not ours:
        return False, "its config.json was not written by `hrnet-backbones convert`"
    return True, ""


def check_destination(folder: Path, force: bool, source: str | os.PathLike[str] | None = None) -> None:
    """Refuse early (before any work) an output folder that cannot or must not be written
    (:func:`hrnet_backbones.fileio.check_output_folder`): never the current folder or an ancestor, never one
    holding ``source``; with ``force`` only a folder that holds nothing but a conversion's files."""
    if str(folder) in ("", "."):
        raise ValueError(
            f"--out {str(folder)!r} is the current folder, which convert never replaces; name a new folder "
            "(or leave --out out for the default ./<architecture>.<tag>)"
        )
    inputs = () if source is None else (source,)
    check_output_folder(
        folder,
        force,
        command="convert",
        is_ours=_is_converted_folder,
        inputs=inputs,
        input_name="input checkpoint",
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


def _save_weights(conv: Conversion, path: Path) -> None:
    from safetensors import SafetensorError

    try:
        save_file(_standalone(conv.state_dict), str(path), metadata=conv.safetensors_metadata())
    except SafetensorError as e:  # safetensors reports its I/O errors (a full disk) as its own type
        raise OSError(f"cannot write {path.name}: {e}") from None


def write_folder(
    conv: Conversion,
    folder: Path,
    force: bool = False,
    model_id: str | None = None,
    complexity: bool = True,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``conv`` as a timm model folder at ``folder`` (atomically; replaced only with ``force``).

    ``model_id`` is the name the card's usage code loads; ``complexity`` see :func:`model_card`; ``source`` is the
    input file, which the folder must not hold (see :func:`check_destination`). The folder and its files get the
    umask's permissions.
    """
    folder = Path(folder)
    check_destination(folder, force, source)
    make_parent_folders(folder)
    with ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_folder(folder, replace=force))
        except OSError as e:  # e.g. a read-only or pseudo file system: name the folder, not a temporary one
            raise ValueError(
                f"cannot create the output folder {folder}: {e.strerror}; choose another --out"
            ) from None
        _save_weights(conv, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(conv.config_json(), indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(conv, model_id, complexity), encoding="utf-8")
    return folder


def _config_error(path: Path, what: str) -> ValueError:
    return ValueError(f"{path} {what}; convert the checkpoint again with `hrnet-backbones convert`")


def check_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify a model folder before it is uploaded (``push``) or described (``info DIR``); returns its
    ``config.json``.

    All of :data:`FOLDER_FILES` must be there; ``config.json`` must pass
    :func:`hrnet_backbones.folder.check_model_config` (every field by type), name one of this package's
    architectures and hold ``model_args`` that build (on the meta device, no memory) and an input size;
    ``model.safetensors`` must be a complete safetensors file (safetensors checks that its header covers the file
    exactly) whose tensors have exactly the model's keys, shapes and kinds (floating point, integer step
    counters). Only the headers are read, not the weights. Raises ``FileNotFoundError`` or ``ValueError`` naming the file and what is wrong.
    """
    from safetensors import SafetensorError, safe_open

    from ..complexity import meta_model
    from ..folder import read_model_config
    from ..registry import MODELS

    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(
            f"folder not found: {folder}; convert a checkpoint first (hrnet-backbones convert)"
        )
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file; push takes the folder written by `hrnet-backbones convert`")
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"{folder} is not a converted model folder: {', '.join(missing)} missing; "
            "convert the checkpoint again with `hrnet-backbones convert`"
        )
    path = folder / "config.json"
    config = read_model_config(folder)  # every field by type
    architecture, model_args, cfg = (config.get(k) for k in ("architecture", "model_args", "pretrained_cfg"))
    if architecture not in MODELS:
        raise _config_error(path, f"names {architecture!r}, not a model of hrnet-backbones")
    for name, value in (("model_args", model_args), ("pretrained_cfg", cfg)):
        if value is None:
            raise _config_error(path, f"has no {name} object")
    if cfg.get("input_size") is None:
        raise _config_error(path, "has no pretrained_cfg.input_size [C, H, W]")
    try:
        model = meta_model(architecture, **model_args)
    except (TypeError, ValueError, KeyError, AttributeError, AssertionError) as e:
        raise _config_error(
            path, f"describes a model that cannot be built: {type(e).__name__}: {e}"
        ) from None
    weights = folder / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{weights} is damaged or not a safetensors file ({str(e).strip()}); convert the checkpoint again"
        ) from None
    own = model.state_dict()
    problems = [f"{k} missing" for k in own if k not in header]
    problems += [f"{k} unexpected" for k in header if k not in own]
    for k, t in own.items():
        if k in header and header[k][0] != tuple(t.shape):
            problems.append(f"{k} is {list(header[k][0])}, the model's {list(t.shape)}")
        elif k in header and t.is_floating_point() != header[k][1].startswith(("F", "BF")):
            problems.append(f"{k} is {header[k][1]}")
    if problems:
        raise ValueError(
            f"{weights} does not fit the {architecture} that config.json describes ({len(problems)} problem(s): "
            f"{'; '.join(problems[:3])}); convert the checkpoint again"
        )
    return config
