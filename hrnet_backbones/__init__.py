"""HRNet as first-class timm backbones.

Importing this package registers ``hrnet_w18/w32/w48`` (HRNetV1), ``hrnetv2_*`` and ``hrnetv2p_*`` with timm.
"""

__version__ = "0.1.0"
