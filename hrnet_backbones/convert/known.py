"""Facts a checkpoint file cannot tell: datasets, the officially released files, their metrics and licences.

Sources: the READMEs and configs of the official HRNet repositories (pose, classification, segmentation, facial
landmarks, detection) and of OpenMMLab, as summarised in ``tests/fixtures/*/README.md``. Metrics are quoted as the READMEs give them (flip test etc. as noted there). Keypoint layouts (names,
flip pairs, skeletons, sigmas) come from :mod:`hrnet_backbones.keypoints.datasets`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = [
    "DATASETS",
    "RELEASES",
    "REPOS",
    "Dataset",
    "Release",
    "dataset_for",
    "find_release",
    "keypoint_metadata",
    "size_from_name",
]

#: Every HRNet code base normalises RGB input with the ImageNet statistics (OpenMMLab writes them in 0-255 units:
#: 123.675/255 = 0.485, 58.395/255 = 0.229, ...), so one mean/std serves all families.
MEAN = tuple(IMAGENET_DEFAULT_MEAN)
STD = tuple(IMAGENET_DEFAULT_STD)


@dataclass(frozen=True)
class Repo:
    """A code base that published HRNet checkpoints."""

    url: str
    license: str
    paper_ids: tuple[str, ...]
    paper_name: str


_POSE_PAPER = "arXiv:1902.09212"  # Sun et al., CVPR 2019
_V2_PAPERS = ("arXiv:1904.04514", "arXiv:1908.07919")  # HRNetV2 report; Wang et al., TPAMI 2020
_POSE_TITLE = "Deep High-Resolution Representation Learning for Human Pose Estimation"
_V2_TITLE = "Deep High-Resolution Representation Learning for Visual Recognition"

#: family -> repository, licence of its code and weights, papers
REPOS: dict[str, Repo] = {
    "pose": Repo(
        "https://github.com/leoxiaobin/deep-high-resolution-net.pytorch", "mit", (_POSE_PAPER,), _POSE_TITLE
    ),
    "cls": Repo("https://github.com/HRNet/HRNet-Image-Classification", "mit", _V2_PAPERS, _V2_TITLE),
    "seg": Repo("https://github.com/HRNet/HRNet-Semantic-Segmentation", "mit", _V2_PAPERS, _V2_TITLE),
    "face": Repo("https://github.com/HRNet/HRNet-Facial-Landmark-Detection", "mit", _V2_PAPERS, _V2_TITLE),
    # a fork of mmdetection, whose licence it keeps
    "det": Repo("https://github.com/HRNet/HRNet-Object-Detection", "apache-2.0", _V2_PAPERS, _V2_TITLE),
    "mmpose": Repo("https://github.com/open-mmlab/mmpose", "apache-2.0", (_POSE_PAPER,), _POSE_TITLE),
    "mmseg": Repo("https://github.com/open-mmlab/mmsegmentation", "apache-2.0", _V2_PAPERS, _V2_TITLE),
    "mmdet": Repo("https://github.com/open-mmlab/mmdetection", "apache-2.0", _V2_PAPERS, _V2_TITLE),
    "backbone": Repo("", "other", (_POSE_PAPER, *_V2_PAPERS), _V2_TITLE),
}


@dataclass(frozen=True)
class Dataset:
    """What a model trained on one dataset takes and gives.

    ``input_size`` and ``test_input_size`` are (H, W) as in timm's ``input_size``; ``aliases`` are the tokens that
    name the dataset in released file names.
    """

    key: str
    task: str
    title: str
    num_outputs: int
    input_size: tuple[int, int]
    test_input_size: tuple[int, int] | None = None
    hub_id: str | None = None
    heatmap_sigma: float | None = None
    label_names: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()


_CITYSCAPES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

DATASETS: tuple[Dataset, ...] = (
    Dataset("coco", "pose", "COCO keypoints (17 joints)", 17, (256, 192), hub_id="coco", heatmap_sigma=2.0),
    Dataset("mpii", "pose", "MPII Human Pose (16 joints)", 16, (256, 256), hub_id="mpii", heatmap_sigma=2.0),
    Dataset("wflw", "landmark", "WFLW (98 landmarks)", 98, (256, 256), hub_id="wflw", heatmap_sigma=1.5),
    Dataset("300w", "landmark", "300W (68 landmarks)", 68, (256, 256), hub_id="300w", heatmap_sigma=1.5),
    Dataset("cofw", "landmark", "COFW (29 landmarks)", 29, (256, 256), hub_id="cofw", heatmap_sigma=1.5),
    Dataset("aflw", "landmark", "AFLW (19 landmarks)", 19, (256, 256), hub_id="aflw", heatmap_sigma=1.5),
    Dataset(
        "cityscapes",
        "segmentation",
        "Cityscapes (19 classes)",
        19,
        (512, 1024),
        (1024, 2048),
        hub_id="cityscapes",
        label_names=_CITYSCAPES,
        aliases=("cs",),
    ),
    Dataset("lip", "segmentation", "LIP (20 classes)", 20, (473, 473), hub_id="lip"),
    Dataset(
        "pascal_context",
        "segmentation",
        "PASCAL-Context (59 classes)",
        59,
        (520, 520),
        hub_id="pascal-context",
        aliases=("pascal_ctx", "pcontext", "pascal-context"),
    ),
    Dataset(
        "pascal_context_60",
        "segmentation",
        "PASCAL-Context (60 classes)",
        60,
        (520, 520),
        hub_id="pascal-context",
        aliases=("pcontext60", "pascal_context59"),
    ),
    Dataset(
        "cocostuff",
        "segmentation",
        "COCO-Stuff (171 classes)",
        171,
        (520, 520),
        hub_id="coco-stuff",
        aliases=("coco-stuff", "coco_stuff", "coco-stuff164k"),
    ),
    Dataset("ade20k", "segmentation", "ADE20K (150 classes)", 150, (520, 520), hub_id="ade20k"),
    Dataset(
        "imagenet",
        "classification",
        "ImageNet-1k",
        1000,
        (224, 224),
        hub_id="imagenet-1k",
        aliases=("in1k", "imagenet-1k"),
    ),
    Dataset("coco", "detection", "COCO detection", 0, (800, 1333), hub_id="coco"),
)


def dataset_for(task: str, name: str | None = None, num_outputs: int | None = None) -> Dataset | None:
    """The dataset called ``name`` (key or alias) for ``task``, else the one with ``num_outputs`` outputs."""
    options = [d for d in DATASETS if d.task == task]
    if name is not None:
        name = name.lower()
        hit = next((d for d in options if name == d.key or name in d.aliases), None)
        if hit is None:
            known = ", ".join(d.key for d in options) or "none"
            raise ValueError(f"unknown --dataset {name!r} for a {task} model; known: {known}")
        return hit
    if task == "detection":
        return options[0]
    return next((d for d in options if d.num_outputs == num_outputs), None)


@dataclass(frozen=True)
class Release:
    """An officially released file, recognised by its name."""

    pattern: str
    family: str
    dataset: str
    input_size: tuple[int, int] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""
    #: the released network's width; None: the one the file name gives (``..._w32_...``, ``HR18-...``)
    width: int | None = None

    def matches(self, filename: str) -> bool:
        return re.fullmatch(self.pattern, filename) is not None

    def width_for(self, filename: str) -> int | None:
        """The width of the released file called ``filename``, when the table or the name says it."""
        if self.width is not None:
            return self.width
        m = re.search(r"(?:^|[^a-z])(?:w|hr)(\d+)(?:[^0-9]|$)", filename.lower())
        return int(m.group(1)) if m else None


_COCO_AP = "COCO val2017 AP (flip test, person detector AP 56.4)"
_IN1K = ("ImageNet val top-1 error (%)", "ImageNet val top-5 error (%)")
_IN1K_ERRORS = {
    18: (23.2, 6.6),
    30: (21.8, 5.8),
    32: (21.5, 5.8),
    40: (21.1, 5.5),
    44: (21.1, 5.6),
    48: (20.7, 5.5),
}

RELEASES: tuple[Release, ...] = (
    Release(r"pose_hrnet_w32_256x192\.pth", "pose", "coco", (256, 192), {_COCO_AP: 0.744}),
    Release(r"pose_hrnet_w32_384x288\.pth", "pose", "coco", (384, 288), {_COCO_AP: 0.758}),
    Release(r"pose_hrnet_w48_256x192\.pth", "pose", "coco", (256, 192), {_COCO_AP: 0.751}),
    Release(r"pose_hrnet_w48_384x288\.pth", "pose", "coco", (384, 288), {_COCO_AP: 0.763}),
    Release(
        r"pose_hrnet_w32_256x256\.pth",
        "pose",
        "mpii",
        (256, 256),
        {"MPII val PCKh@0.5 mean (flip test)": 90.3, "MPII val PCKh@0.1 mean (flip test)": 37.7},
    ),
    Release(r"pose_hrnet_w48_256x256\.pth", "pose", "mpii", (256, 256)),
    *(
        Release(
            rf"hrnetv2_w{w}_imagenet_pretrained\.pth",
            "cls",
            "imagenet",
            (224, 224),
            dict(zip(_IN1K, errors)),
        )
        for w, errors in _IN1K_ERRORS.items()
    ),
    Release(
        r"hrnet_w(18|32|48)-[0-9a-f]{8}\.pth",
        "cls",
        "imagenet",
        (224, 224),
        note="the ImageNet initialisation shipped with the pose repository",
    ),
    # the segmentation releases are all HRNetV2-W48
    Release(
        r"hrnet_cs_8090_torch11\.pth",
        "seg",
        "cityscapes",
        (512, 1024),
        {"Cityscapes val mIoU": 80.9},
        width=48,
    ),
    Release(
        r"hrnet_lip_5583_torch04\.pth",
        "seg",
        "lip",
        (473, 473),
        {"LIP val mIoU (flip test)": 55.83},
        width=48,
    ),
    Release(
        r"hrnet_pascal_ctx_5410_torch11\.pth",
        "seg",
        "pascal_context",
        (520, 520),
        {"PASCAL-Context val mIoU (59 classes, multi-scale + flip)": 54.1},
        width=48,
    ),
    Release(
        r"hrnet_cocostuff_3617_torch04\.pth",
        "seg",
        "cocostuff",
        (520, 520),
        {"COCO-Stuff val mIoU": 36.2, "COCO-Stuff val mIoU (multi-scale + flip)": 37.9},
        width=48,
    ),
    Release(
        r"hrnet_ade20k_4312_torch04\.pth",
        "seg",
        "ade20k",
        (520, 520),
        {"ADE20K val mIoU": 43.1, "ADE20K val mIoU (multi-scale + flip)": 44.2},
        width=48,
    ),
    Release(r"HR18-WFLW\.pth", "face", "wflw", (256, 256), {"WFLW test NME (%)": 4.60}),
    Release(
        r"HR18-300W\.pth",
        "face",
        "300w",
        (256, 256),
        {
            "300W full NME (%)": 3.34,
            "300W common NME (%)": 2.91,
            "300W challenge NME (%)": 5.11,
            "300W test NME (%)": 3.85,
        },
    ),
    Release(
        r"HR18-COFW\.pth",
        "face",
        "cofw",
        (256, 256),
        {"COFW test NME (%)": 3.45, "COFW test FR@0.1 (%)": 0.20},
    ),
    Release(
        r"HR18-AFLW\.pth",
        "face",
        "aflw",
        (256, 256),
        {"AFLW full NME (%)": 1.57, "AFLW frontal NME (%)": 1.46},
    ),
)


def find_release(filename: str, family: str) -> Release | None:
    """The released file ``filename`` is, when it is one of ``family``'s."""
    return next((r for r in RELEASES if r.family == family and r.matches(filename)), None)


def size_from_name(filename: str) -> tuple[int, int] | None:
    """The ``HxW`` input size that released file names carry (``..._256x192.pth``, ``...coco-256x192-...``)."""
    m = re.search(r"(?<!\d)(\d{2,4})x(\d{2,4})(?!\d)", filename)
    return (int(m.group(1)), int(m.group(2))) if m else None


def dataset_from_name(filename: str, task: str) -> str | None:
    """A dataset key when a token of ``filename`` names one of ``task``'s datasets."""
    tokens = set(re.split(r"[^a-z0-9]+", filename.lower()))
    joined = filename.lower()
    for d in DATASETS:
        if d.task != task:
            continue
        if d.key in tokens or any(a in tokens or (len(a) > 4 and a in joined) for a in d.aliases):
            return d.key
    return None


# ------------------------------------------------------------------------------------------ keypoint metadata
def keypoint_metadata(dataset: str) -> dict[str, Any]:
    """Keypoint names, flip pairs, skeleton and OKS sigmas of ``dataset`` (0-based index pairs), as JSON values.

    The facts live in :mod:`hrnet_backbones.keypoints.datasets`; an empty dict means the dataset has no layout
    there.
    """
    from ..keypoints.datasets import LAYOUTS

    layout = LAYOUTS.get(dataset)
    if layout is None:
        return {}
    meta: dict[str, Any] = {
        "keypoint_names": list(layout.keypoint_names),
        "flip_pairs": [list(p) for p in layout.flip_pairs],
    }
    if layout.skeleton:
        meta["skeleton"] = [list(p) for p in layout.skeleton]
    if layout.sigmas is not None:
        meta["sigmas"] = [round(float(s), 6) for s in layout.sigmas]
    return meta
