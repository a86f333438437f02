"""Official and OpenMMLab HRNet checkpoints to timm model folders (safetensors + config.json + model card).

>>> from hrnet_backbones.convert import convert_checkpoint
>>> conversion, folder = convert_checkpoint("pose_hrnet_w32_256x192.pth", "hrnet_w32.coco_pose_256x192")
>>> model = timm.create_model(f"local-dir:{folder}", pretrained=True)

Files are read without running code (``torch.load(weights_only=True)``); the family, width and whole architecture
are read from the tensors; facts the file cannot hold come from :mod:`.known`. :func:`push_to_hub` uploads a
folder with ``huggingface_hub``.
"""

from .converter import CONVERTER_VERSION, Conversion, convert_checkpoint, convert_state_dict, parse_arch
from .errors import CheckpointError, LayoutError, UnsafeCheckpointError
from .layouts import FAMILIES, LAYOUTS, Layout, match_layout
from .load import Checkpoint, read_checkpoint

__all__ = [
    "CONVERTER_VERSION",
    "Checkpoint",
    "CheckpointError",
    "Conversion",
    "FAMILIES",
    "LAYOUTS",
    "Layout",
    "LayoutError",
    "UnsafeCheckpointError",
    "convert_checkpoint",
    "convert_state_dict",
    "match_layout",
    "parse_arch",
    "read_checkpoint",
]
