"""int8 against fp32 on a keypoint model: heatmap argmax agreement and keypoint distance, per person box.

    python benchmarks/int8_accuracy.py MODEL_DIR --int8 pose.int8.onnx --images DIR [--ann COCO.json]

MODEL_DIR is the trained / converted folder (PyTorch fp32, the reference); ``--int8`` the file that
``hrnet-backbones export MODEL_DIR --out pose.int8.onnx --int8 --calibration CALIB_DIR`` wrote (calibrate on
other images than the ones measured here). Boxes are the COCO file's person boxes (``bbox``, non-crowd, with
keypoints), or each whole image without ``--ann``. Both models go through the same top-down pipeline
(``predict_keypoints``, flip test off so the heatmaps compared are the model's own); printed: the share of
(person, keypoint) heatmaps whose argmax pixel agrees, the keypoint distance in image pixels (median, p90) and in
units of the box's longer side, and the relative error of the heatmaps (max |int8 - fp32| / max |fp32|).

COCO AP of both (the issue's "AP drop <= 1.0" check) comes from the ``evaluate`` command, which takes either
model (``load_keypoint_model`` opens exported files):

    hrnet-backbones evaluate MODEL_DIR --ann COCO.json --images DIR --device cpu
    hrnet-backbones evaluate pose.int8.onnx --ann COCO.json --images DIR --device cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrnet_backbones.cliutil import load_keypoint_model  # noqa: E402
from hrnet_backbones.deploy import relative_error  # noqa: E402
from hrnet_backbones.inference import keypoint_meta, predict_keypoints  # noqa: E402


def _boxes(images: Path, ann: str | None, limit: int) -> dict[Path, list[list[float]]]:
    if ann is None:
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:limit]
        return {p: [[0.0, 0.0, *Image.open(p).size]] for p in files}
    coco = json.loads(Path(ann).read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    out: dict[Path, list[list[float]]] = defaultdict(list)
    for a in coco["annotations"]:
        if a.get("iscrowd") or not a.get("num_keypoints", 1) or a["bbox"][2] <= 1 or a["bbox"][3] <= 1:
            continue
        out[images / names[a["image_id"]]].append([float(v) for v in a["bbox"]])
        if sum(len(b) for b in out.values()) >= limit:
            break
    return dict(out)


class _Recorder:
    """Wraps a model, keeping the heatmaps it returns."""

    def __init__(self, model):
        self.model, self.heatmaps = model, []
        self.num_classes, self.pretrained_cfg = model.num_classes, model.pretrained_cfg

    def eval(self):
        return self

    def parameters(self):  # where predict_keypoints puts the image
        return self.model.parameters()

    def buffers(self):
        return self.model.buffers()

    def __call__(self, x):
        y = self.model(x)
        self.heatmaps.append(y.detach().float().cpu())
        return y


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="the fp32 reference: a folder, local-dir:DIR or hf-hub:ID")
    p.add_argument("--int8", required=True, help="the int8 .onnx (or .xml) file")
    p.add_argument("--images", required=True)
    p.add_argument("--ann", help="COCO keypoint JSON whose person boxes to use (default: whole images)")
    p.add_argument("--limit", type=int, default=200, help="at most this many boxes (default 200)")
    p.add_argument("--runtime", default=None, help="onnxruntime (default for .onnx) or openvino")
    args = p.parse_args(argv)
    from hrnet_backbones.deploy import load

    fp32 = _Recorder(load_keypoint_model(args.model))
    int8 = _Recorder(load(args.int8, runtime=args.runtime))
    meta = keypoint_meta(fp32.model)
    dist, rel, size = [], [], []
    for path, boxes in _boxes(Path(args.images), args.ann, args.limit).items():
        image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).permute(
            2, 0, 1
        )
        a, _ = predict_keypoints(fp32, image, boxes, meta=meta, flip=False)
        b, _ = predict_keypoints(int8, image, boxes, meta=meta, flip=False)
        dist.append((a - b).norm(dim=-1))
        size.append(torch.tensor(boxes)[:, 2:].amax(-1, keepdim=True).expand_as(dist[-1]))
        rel.append(relative_error([int8.heatmaps[-1]], [fp32.heatmaps[-1]]))
    hf, hi = torch.cat(fp32.heatmaps), torch.cat(int8.heatmaps)
    agree = (hf.flatten(2).argmax(-1) == hi.flatten(2).argmax(-1)).float().mean().item()
    d, s = torch.cat(dist).flatten(), torch.cat(size).flatten()
    print(f"{args.int8} vs {args.model}: {hf.shape[0]} boxes x {hf.shape[1]} keypoints")
    print(f"heatmap argmax agreement {agree:.1%}")
    print(
        f"keypoint distance: median {d.median():.2f} px, p90 {d.quantile(0.9):.2f} px; "
        f"median {(d / s).median():.2%} of the box's longer side"
    )
    print(
        f"heatmap relative error (max |diff| / max |ref| per batch): median {np.median(rel):.2e}, max {max(rel):.2e}"
    )


if __name__ == "__main__":
    main()
