"""timm entry points for every model of :data:`registry.MODELS`, generated from that table.

timm files a model under the last component of its entry point's ``__module__`` (``register_model``), and that is
what ``timm.list_models(module="hrnet")`` and timm's own contract tests select by. This module is therefore named
``hrnet``, like timm's: our names (V1, V2, V2p) are listed together with, and in place of, timm's built-in HRNet.
``register_model`` also reads this module's ``default_cfgs`` for the pretrained tags.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from timm.models import is_model, model_entrypoint, register_model

from .config import TRUNKS
from .model import HRNet
from .registry import (
    MODELS,
    create_hrnet,
    default_cfgs,  # noqa: F401  (register_model reads the tags from this module)
    trunk_title,
)

__all__: list[str] = []  # register_model adds every entry point's name

_TITLES = {"v1": "HRNetV1", "v2": "HRNetV2", "v2p": "HRNetV2p"}
_WHAT = {
    "v1": "the four parallel branches",
    "v2": "the branches upsampled to stride 4 and concatenated",
    "v2p": "the concatenated map as a 5-level, 256-channel pyramid (strides 4-64)",
}


def _entrypoint(name: str) -> Callable[..., HRNet]:
    spec = MODELS[name]

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> HRNet:
        return create_hrnet(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    channels = ", ".join(str(c) for c in TRUNKS[spec.trunk].branch_channels)
    entrypoint.__doc__ = (
        f"{_TITLES[spec.representation]}-{trunk_title(spec.trunk)}: {_WHAT[spec.representation]} "
        f"(branch channels {channels})."
    )
    return entrypoint


def _replaces_timm_builtin(name: str) -> bool:
    return is_model(name) and model_entrypoint(name).__module__ == "timm.models.hrnet"


for _name in MODELS:
    with warnings.catch_warnings():
        # taking over one of timm's own HRNet names is by design (same keys, logits and tags): silence only the
        # warning about that, and only for timm's own entry
        if _replaces_timm_builtin(_name):
            warnings.filterwarnings("ignore", message=rf"Overwriting {_name} in registry")
        globals()[_name] = register_model(_entrypoint(_name))
