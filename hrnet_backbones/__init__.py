"""HRNet as first-class timm backbones.

Importing this package registers with timm, under its module ``hrnet``: every HRNetV1 name of timm
(``hrnet_w18_small`` ... ``hrnet_w64``, ``hrnet_w*_ssld``; replacing timm's built-in entries with a strict superset),
and ``hrnetv2_*`` (concatenated representation) and ``hrnetv2p_*`` (feature pyramid) for every trunk.
"""

from . import hrnet  # noqa: F401  (registers the models with timm)
from .config import HRNetConfig, StageSpec, hrnet_config, tiny_config
from .fast import optimize_for_inference
from .model import HRNet, HRNetFeatureInfo, HRNetFeatures
from .registry import VARIANTS, model_names

__version__ = "0.1.0"

__all__ = [
    "HRNet",
    "HRNetConfig",
    "HRNetFeatureInfo",
    "HRNetFeatures",
    "StageSpec",
    "VARIANTS",
    "hrnet_config",
    "model_names",
    "optimize_for_inference",
    "tiny_config",
    "__version__",
]
