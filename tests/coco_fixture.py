"""Tiny COCO-format keypoint data sets written by the tests: a few Pillow-drawn images and a JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from hrnet_backbones.keypoints import COCO_KEYPOINTS

IMAGE_SIZE = (96, 80)  # (w, h)


def person_keypoints(
    rng: np.random.Generator, box: tuple[float, float, float, float], k: int = 17
) -> list[float]:
    """``3K`` values ``x, y, v`` inside ``box``: most labelled (v = 2), some occluded (v = 1), two unlabelled."""
    x, y, w, h = box
    xy = rng.uniform((x + 0.1 * w, y + 0.1 * h), (x + 0.9 * w, y + 0.9 * h), size=(k, 2)).round(2)
    v = np.full(k, 2.0)
    v[[3, 9]] = 1.0
    v[[4, 10]] = 0.0
    xy[v == 0] = 0.0
    return np.concatenate((xy, v[:, None]), axis=1).reshape(-1).tolist()


def coco_dict(seed: int = 0) -> dict[str, Any]:
    """Three images, six annotations: 1, 4 (box partly outside, gets clipped) and 6 are usable; 2 is a crowd,
    3 has no keypoints at all, 5 has coordinates but every v = 0."""
    rng = np.random.default_rng(seed)
    w, h = IMAGE_SIZE
    images = [{"id": i, "file_name": f"img{i}.png", "width": w, "height": h} for i in (1, 2, 3)]

    def ann(ann_id: int, image_id: int, box, **extra) -> dict[str, Any]:
        return {
            "id": ann_id,
            "image_id": image_id,
            "category_id": 1,
            "bbox": list(box),
            "area": float(box[2] * box[3]) * 0.6,
            "iscrowd": 0,
            "keypoints": person_keypoints(rng, box),
            "num_keypoints": 15,
            **extra,
        }

    crowd = ann(2, 1, (50, 10, 40, 60), iscrowd=1)
    empty = ann(3, 1, (5, 5, 20, 30))
    empty["keypoints"], empty["num_keypoints"] = [0.0] * 51, 0
    unlabelled = ann(5, 2, (10, 10, 30, 30))
    unlabelled["keypoints"] = [v if i % 3 != 2 else 0 for i, v in enumerate(unlabelled["keypoints"])]
    unlabelled["num_keypoints"] = 0
    anns = [
        ann(1, 1, (10.5, 8.0, 30.0, 60.0)),
        crowd,
        empty,
        ann(4, 2, (70.0, -6.0, 40.0, 50.0)),  # right and top edges outside the 96x80 image
        unlabelled,
        ann(6, 3, (20.0, 15.0, 44.0, 55.0)),
    ]
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_KEYPOINTS.keypoint_names),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton],
    }
    return {"images": images, "annotations": anns, "categories": [category]}


def draw_image(path: Path, seed: int, size: tuple[int, int] = IMAGE_SIZE, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.integers(0, size[0] - 10), rng.integers(0, size[1] - 10)
        draw.ellipse((x0, y0, x0 + 10, y0 + 14), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    img.convert(mode).save(path)


def write_coco(root: Path, data: dict[str, Any] | None = None, seed: int = 0) -> tuple[Path, Path]:
    """Write the images of ``data`` (default :func:`coco_dict`) under ``root/images`` and the JSON as
    ``root/ann.json``. Returns ``(ann_file, image_dir)``."""
    data = copy.deepcopy(data if data is not None else coco_dict(seed))
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for img in data["images"]:
        draw_image(image_dir / img["file_name"], int(img["id"]) + seed, (img["width"], img["height"]))
    ann_file = root / "ann.json"
    ann_file.write_text(json.dumps(data))
    return ann_file, image_dir
