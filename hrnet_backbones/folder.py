"""A model folder's ``config.json``, read and checked field by field.

A model folder is what ``hrnet-backbones convert`` and ``train`` write, ``push`` uploads and
``timm.create_model("local-dir:DIR" / "hf-hub:ORG/NAME")`` loads: ``config.json`` (timm's Hub format:
``architecture``, ``num_classes``, ``num_features``, ``model_args``, ``pretrained_cfg``), ``model.safetensors`` and
``README.md``. A hand-edited or damaged ``config.json`` would otherwise fail deep inside timm or the model with a
bare ``TypeError`` / ``AttributeError`` / ``KeyError``; :func:`check_model_config` checks every field timm and this
package read, by type, and names the first wrong one and the file.

Where it runs: every command that loads a folder (``cliutil.load_model``, so ``pose``, ``evaluate``,
``export``), ``push`` and ``info DIR`` (:func:`hrnet_backbones.convert.writer.check_folder`),
``train --pretrained local-dir:`` and this package's timm entry points
(:func:`hrnet_backbones.registry.create_hrnet`). timm itself parses the top level of the file (``architecture``,
``model_args``, ``pretrained_cfg``) before any entry point runs, so a wrongly typed top-level field still fails
inside timm on a plain ``timm.create_model("local-dir:DIR")``; the commands check it first.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_FILE", "check_model_config", "check_model_source", "config_file_of", "read_model_config"]

CONFIG_FILE = "config.json"

_FIX = "correct it, or write the folder again (hrnet-backbones convert / train)"


# ------------------------------------------------------------------------------------------- value kinds
def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _list_of(accepts: Callable[[Any], bool], length: int | None = None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (length is None or len(v) == length) and all(map(accepts, v))


#: (does a value fit, what it must be)
_Kind = tuple[Callable[[Any], bool], str]

STRING: _Kind = (lambda v: isinstance(v, str), "a string")
BOOL: _Kind = (lambda v: isinstance(v, bool), "true or false")
OBJECT: _Kind = (lambda v: isinstance(v, dict), "a JSON object")
COUNT: _Kind = (lambda v: _is_int(v, 0), "a non-negative integer")
POSITIVE: _Kind = (lambda v: _is_int(v, 1), "a positive integer")
POSITIVE_NUMBER: _Kind = (lambda v: _is_number(v) and v > 0, "a positive number")
RATE: _Kind = (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
STRINGS: _Kind = (_list_of(lambda v: isinstance(v, str)), "a list of strings")
POSITIVES: _Kind = (_list_of(lambda v: _is_int(v, 1)), "a list of positive integers")
NUMBERS: _Kind = (_list_of(_is_number), "a list of numbers")
POSITIVE_NUMBERS: _Kind = (_list_of(lambda v: _is_number(v) and v > 0), "a list of positive numbers")
PAIRS: _Kind = (_list_of(_list_of(lambda v: _is_int(v, 0), 2)), "a list of [i, j] keypoint index pairs")
SIZE_CHW: _Kind = (
    _list_of(lambda v: _is_int(v, 1) and v <= 2**15, 3),
    "[C, H, W]: three positive integers (at most 32768)",
)
SIZE_2: _Kind = (_list_of(lambda v: _is_int(v, 1) and v <= 2**15, 2), "two positive integers")

# ------------------------------------------------------------------------------------------- the fields
#: top-level fields besides architecture / model_args / pretrained_cfg (timm copies these into pretrained_cfg)
_TOP = {"num_classes": COUNT, "num_features": COUNT, "label_names": STRINGS, "label_descriptions": OBJECT}
#: pretrained_cfg fields of timm's PretrainedCfg (free-text fields are checked as strings); null stands for
#: absent except in _NOT_NULL
_PRETRAINED_CFG = {
    "input_size": SIZE_CHW,
    "test_input_size": SIZE_CHW,
    "min_input_size": SIZE_CHW,
    "fixed_input_size": BOOL,
    "mean": NUMBERS,
    "std": POSITIVE_NUMBERS,
    "interpolation": STRING,
    "crop_pct": POSITIVE_NUMBER,
    "test_crop_pct": POSITIVE_NUMBER,
    "crop_mode": STRING,
    "pool_size": SIZE_2,
    "num_classes": COUNT,
    "first_conv": STRING,
    "classifier": STRING,
    "label_names": STRINGS,
    "label_descriptions": OBJECT,
    "tag": STRING,
    "license": STRING,
    "description": STRING,
    "origin_url": STRING,
    "paper_name": STRING,
    "paper_ids": (lambda v: isinstance(v, str) or STRINGS[0](v), "a string or a list of strings"),
}
#: the task metadata this package adds to pretrained_cfg (checked for its own models)
_TASK_CFG = {
    "task": STRING,
    "dataset": STRING,
    "output_stride": POSITIVE,
    "pyramid_strides": POSITIVES,
    "keypoint_names": STRINGS,
    "num_keypoints": COUNT,
    "flip_pairs": PAIRS,
    "skeleton": PAIRS,
    "sigmas": POSITIVE_NUMBERS,
    "codec": OBJECT,
    "metrics": OBJECT,
}
_NOT_NULL = ("input_size", "mean", "std")
#: pretrained_cfg["codec"]: the heatmap codec of a keypoint model
_CODEC = {
    "type": STRING,
    "sigma": POSITIVE_NUMBER,
    "input_size": SIZE_2,
    "heatmap_size": SIZE_2,
    "unbiased": BOOL,
    "refine": STRING,
}
#: model_args of this package's models: HRNet's keyword arguments (``arch`` is checked by HRNetConfig itself)
_MODEL_ARGS = {
    "representation": STRING,
    "head": STRING,
    "num_classes": COUNT,
    "in_chans": POSITIVE,
    "global_pool": STRING,
    "drop_rate": RATE,
    "output_stride": POSITIVE,
    "feature_location": STRING,
    "head_channels": POSITIVES,
    "head_features": POSITIVE,
    "head_conv_bias": BOOL,
    "head_kernel_size": POSITIVE,
    "head_hidden_channels": POSITIVE,  # or null (the head's default)
    "neck_channels": POSITIVE,
    "neck_levels": POSITIVE,
}


def _shown(value: Any) -> str:
    """A value for an error message: its JSON type and (the start of) its text."""
    if value is None:
        return "null"
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object"}
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{kind.get(type(value), type(value).__name__)} {text}"


def _check_fields(
    values: dict[str, Any], kinds: dict[str, _Kind], prefix: str, where: str, nullable: Callable[[str], bool]
) -> None:
    for name, (fits, what) in kinds.items():
        if name not in values or (values[name] is None and nullable(name)):
            continue
        if not fits(values[name]):
            raise _field_error(where, prefix + name, f"must be {what}, got {_shown(values[name])}")


def _field_error(where: str, field: str, problem: str) -> ValueError:
    return ValueError(f"{where}: field {field} {problem}; {_FIX}")


def _check_keypoint_indices(cfg: dict[str, Any], where: str) -> None:
    """flip_pairs / skeleton name keypoints that exist (when the number of keypoints is known)."""
    k = cfg.get("num_keypoints")
    if k is None and cfg.get("keypoint_names") is not None:
        k = len(cfg["keypoint_names"])
    if k is None:
        return
    for name in ("flip_pairs", "skeleton"):
        for i, pair in enumerate(cfg.get(name) or ()):
            if max(pair) >= k:
                raise _field_error(
                    where, f"pretrained_cfg.{name}[{i}]", f"names keypoint {max(pair)} of a model with {k}"
                )
    names = cfg.get("keypoint_names")
    if names is not None and len(names) != k:
        raise _field_error(
            where, "pretrained_cfg.keypoint_names", f"lists {len(names)} names for num_keypoints {k}"
        )


def _check_model_args(model_args: dict[str, Any], trunk: dict[str, Any], where: str) -> None:
    """``model_args`` of one of this package's models; ``trunk``: the registered trunk's config dict, which HRNet
    fields given beside (or instead of) ``arch`` override."""
    from .config import HRNetConfig

    arch_fields = set(HRNetConfig.__dataclass_fields__)
    unknown = sorted(set(model_args) - set(_MODEL_ARGS) - arch_fields - {"arch"})
    if unknown:
        raise _field_error(
            where,
            f"model_args.{unknown[0]}",
            "is not an argument of HRNet (hrnet_backbones.HRNet: arch, the HRNetConfig fields and its keyword "
            "arguments)",
        )
    _check_fields(model_args, _MODEL_ARGS, "model_args.", where, lambda n: n == "head_hidden_channels")
    if "arch" in model_args:
        try:
            HRNetConfig.from_dict(model_args["arch"])
        except ValueError as e:
            raise _field_error(where, "model_args.arch", f"is not a valid HRNet config ({e})") from None
    overrides = {k: v for k, v in model_args.items() if k in arch_fields}
    if overrides:
        try:
            HRNetConfig.from_dict({**model_args.get("arch", trunk), **overrides})
        except ValueError as e:
            raise _field_error(where, "model_args", f"overrides the HRNet config wrongly ({e})") from None


def check_model_config(config: Any, where: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a model folder's parsed ``config.json`` by type, field by field; returns it unchanged.

    ``where`` names the file in the error (a path, or ``config.json of hf-hub:ORG/NAME``). Checked: the file is a
    JSON object naming a registered timm ``architecture``; ``num_classes`` / ``num_features`` are non-negative
    integers, ``label_names`` a list of strings, ``model_args`` and ``pretrained_cfg`` objects; the
    ``pretrained_cfg`` fields timm and this package read (``input_size`` ``[C, H, W]``, ``mean`` / ``std``,
    keypoint names, flip pairs and skeleton as index pairs within the keypoints, the ``codec`` object ...); and for
    this package's models every ``model_args`` field (the ``arch`` dict by :meth:`HRNetConfig.from_dict`, which
    names the stage field). Raises ``ValueError`` ``"<where>: field <name> must be ..., got ...; <what to do>"``.
    An old timm file without ``pretrained_cfg`` (timm's legacy single-dict format) is checked as one.
    """
    import timm

    from .registry import MODELS

    where = str(where)
    if not isinstance(config, dict):
        raise ValueError(f"{where} holds a {type(config).__name__}, not a JSON object; {_FIX}")
    architecture = config.get("architecture")
    if "architecture" not in config:
        raise _field_error(where, "architecture", "is missing (the timm model name, e.g. 'hrnet_w32')")
    if not isinstance(architecture, str):
        raise _field_error(where, "architecture", f"must be a timm model name, got {_shown(architecture)}")
    if not timm.is_model(architecture):
        raise _field_error(
            where,
            "architecture",
            f"names no registered timm model ({architecture!r}; `hrnet-backbones list` shows this package's)",
        )
    _check_fields(config, _TOP, "", where, lambda n: True)
    legacy = "pretrained_cfg" not in config  # timm reads the whole file as the pretrained config
    cfg = config if legacy else config["pretrained_cfg"]
    for name in ("model_args", "pretrained_cfg"):
        if name in config and not isinstance(config[name], dict):
            raise _field_error(where, name, f"must be a JSON object, got {_shown(config[name])}")
    prefix = "" if legacy else "pretrained_cfg."
    _check_fields(cfg, _PRETRAINED_CFG, prefix, where, lambda n: n not in _NOT_NULL)
    size, mean, std = cfg.get("input_size"), cfg.get("mean"), cfg.get("std")
    for name, values in (("mean", mean), ("std", std)):
        if size is not None and values is not None and len(values) not in (1, size[0]):
            raise _field_error(where, prefix + name, f"has {len(values)} values for {size[0]} input channels")
    if architecture not in MODELS:
        return config  # another timm model: its own fields are its business
    if cfg.get("fixed_input_size"):
        raise _field_error(
            where, prefix + "fixed_input_size", "must be false: HRNet takes any input size (no img_size)"
        )
    _check_fields(cfg, _TASK_CFG, prefix, where, lambda n: True)
    if isinstance(cfg.get("codec"), dict):
        _check_fields(cfg["codec"], _CODEC, prefix + "codec.", where, lambda n: False)
    _check_keypoint_indices(cfg, where)
    _check_model_args(config.get("model_args") or {}, MODELS[architecture].arch.to_dict(), where)
    return config


def read_model_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``folder/config.json``, read and checked (:func:`check_model_config`).

    Raises ``FileNotFoundError`` when it is not there, ``ValueError`` naming the file when it is not UTF-8 JSON
    or a field is wrong.
    """
    return _read_checked(Path(folder) / CONFIG_FILE, str(Path(folder) / CONFIG_FILE))


def _read_checked(path: Path, where: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{where} not found; a model folder holds config.json, model.safetensors and README.md "
            "(hrnet-backbones convert / train write one)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}); {_FIX}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not text (not UTF-8); {_FIX}") from None
    return check_model_config(config, where)


def config_file_of(spec: str, download: bool = True) -> tuple[Path, str] | None:
    """The ``config.json`` that ``timm.create_model(spec)`` reads, and how to name it in an error, or None.

    ``spec``: ``local-dir:DIR`` or ``hf-hub:ORG/NAME[@REVISION]``. A Hub file is fetched as timm fetches it
    (``download``; from the cache under ``HF_HUB_OFFLINE=1``) or, without ``download``, only looked up in the
    cache (None when it is not there). Any other ``spec`` gives None.
    """
    if spec.startswith("local-dir:"):
        folder = Path(spec.removeprefix("local-dir:"))
        return folder / CONFIG_FILE, str(folder / CONFIG_FILE)
    if not spec.startswith("hf-hub:"):
        return None
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from timm.models._hub import hf_split

    repo_id, revision = hf_split(spec.removeprefix("hf-hub:"))
    where = f"config.json of {spec}"
    if download:
        return Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision)), where
    cached = try_to_load_from_cache(repo_id, CONFIG_FILE, revision=revision)
    return (Path(cached), where) if isinstance(cached, str) else None


def check_model_source(spec: str, download: bool = True) -> dict[str, Any] | None:
    """Read and check the ``config.json`` behind ``local-dir:DIR`` / ``hf-hub:ID`` (see :func:`config_file_of`);
    None for any other ``spec`` or a Hub file not in the cache without ``download``."""
    found = config_file_of(spec, download)
    return None if found is None else _read_checked(*found)
