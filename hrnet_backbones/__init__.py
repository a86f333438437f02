"""HRNet as first-class timm backbones.

Importing this package registers ``hrnet_w18/w32/w48`` (HRNetV1, replacing timm's built-in entries with a strict
superset), ``hrnetv2_w*`` (concatenated representation) and ``hrnetv2p_w*`` (feature pyramid) with timm.
"""

from . import registry  # noqa: F401  (registers the models with timm)
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
