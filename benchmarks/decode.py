"""Batched keypoint decoding and target generation vs per-keypoint loops written like the official code.

Times, in one process and interleaved (reference, ours, reference, ...), after warm-up:

  (a) quarter-offset decoding to image coordinates: a loop like HRNet ``get_final_preds(POST_PROCESS=True)``
      (``get_max_preds``, the per-keypoint quarter offset, a per-instance ``transform_preds``) vs
      ``MSRAHeatmap.decode`` + ``transform_preds``;
  (b) DARK decoding to image coordinates: a loop like DarkPose ``get_final_preds(BLUR_KERNEL=11)`` (per-map
      ``gaussian_blur``, log, per-keypoint ``taylor``, ``transform_preds``) vs ``MSRAHeatmap(unbiased=True)
      .decode`` + ``transform_preds``;
  (c) target generation: a per-instance, per-keypoint loop like HRNet ``generate_target`` vs the batched
      ``MSRAHeatmap.encode``.

The reference blur is ``cv2.GaussianBlur`` when OpenCV is importable, otherwise a per-map NumPy separable blur
in float64 (the output says which); the reference affine solves the official three-point system with NumPy
(``cv2.getAffineTransform`` when OpenCV is there). Results are checked to agree (quarter and targets exactly,
DARK within 1e-5 heatmap px, image coordinates within 1e-3 px) before any ratio is printed.

    python benchmarks/decode.py [--batch 64] [--repeat 30] [--json benchmarks/results/decode_cpu.json --force]

An existing ``--json`` file (the committed results) is refused before anything runs; ``--force`` reproduces it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrnet_backbones.cliutil import report_errors  # noqa: E402
from hrnet_backbones.fileio import atomic_write_text, refuse_existing  # noqa: E402
from hrnet_backbones.keypoints import MSRAHeatmap, transform_preds  # noqa: E402

PROG = "benchmarks/decode.py"

try:  # optional: the official code's own blur and affine solver
    import cv2
except ImportError:  # pragma: no cover - depends on the environment
    cv2 = None

INPUT_SIZE = (192, 256)  # (w, h)
HEATMAP_SIZE = (48, 64)
K = 17
SIGMA = 2.0
BLUR_KERNEL = 11


# ---------------------------------------------------------------------------------------------------------
# Reference implementations, written the way the official repositories write them (NumPy, per keypoint)
# ---------------------------------------------------------------------------------------------------------


def ref_get_max_preds(batch_heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, k, _, w = batch_heatmaps.shape
    flat = batch_heatmaps.reshape((n, k, -1))
    idx = np.argmax(flat, 2).reshape((n, k, 1))
    maxvals = np.amax(flat, 2).reshape((n, k, 1))
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % w
    preds[:, :, 1] = np.floor(preds[:, :, 1] / w)
    preds *= np.tile(np.greater(maxvals, 0.0), (1, 1, 2)).astype(np.float32)
    return preds, maxvals


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def _solve_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if cv2 is not None:
        return cv2.getAffineTransform(np.float32(src), np.float32(dst))
    a = np.zeros((6, 6))
    a[0::2, 0:2], a[0::2, 2] = src, 1
    a[1::2, 3:5], a[1::2, 5] = src, 1
    return np.linalg.solve(a, dst.astype(np.float64).reshape(6)).reshape(2, 3)


def ref_get_affine_transform(center, scale, rot, output_size, inv=False) -> np.ndarray:
    scale_tmp = scale * 200.0
    src_w, dst_w, dst_h = scale_tmp[0], output_size[0], output_size[1]
    rot_rad = np.pi * rot / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_dir = [0 * cs - src_w * -0.5 * sn, 0 * sn + src_w * -0.5 * cs]
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2:, :] = _third_point(src[0, :], src[1, :])
    dst[2:, :] = _third_point(dst[0, :], dst[1, :])
    return _solve_affine(dst, src) if inv else _solve_affine(src, dst)


def ref_transform_preds(coords, center, scale, output_size) -> np.ndarray:
    target = np.zeros(coords.shape)
    trans = ref_get_affine_transform(center, scale, 0, output_size, inv=True)
    for p in range(coords.shape[0]):
        target[p, 0:2] = np.dot(trans, np.array([coords[p, 0], coords[p, 1], 1.0]).T)[:2]
    return target


def ref_quarter_final_preds(batch_heatmaps, center, scale):
    coords, maxvals = ref_get_max_preds(batch_heatmaps)
    hm_h, hm_w = batch_heatmaps.shape[2:]
    for n in range(coords.shape[0]):
        for p in range(coords.shape[1]):
            hm = batch_heatmaps[n][p]
            px = int(math.floor(coords[n][p][0] + 0.5))
            py = int(math.floor(coords[n][p][1] + 0.5))
            if 1 < px < hm_w - 1 and 1 < py < hm_h - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                coords[n][p] += np.sign(diff) * 0.25
    preds = coords.copy()
    for i in range(coords.shape[0]):
        preds[i] = ref_transform_preds(coords[i], center[i], scale[i], [hm_w, hm_h])
    return preds, maxvals, coords


def _numpy_gaussian_blur(dr: np.ndarray, g: np.ndarray, h: int, w: int) -> np.ndarray:
    """The centre (h, w) of a separable correlation of the zero-padded map ``dr`` (what cv2 returns there)."""
    rows = sum(g[t] * dr[:, t : t + w] for t in range(len(g)))
    return sum(g[t] * rows[t : t + h, :] for t in range(len(g)))


def ref_gaussian_blur(hm: np.ndarray, kernel: int) -> np.ndarray:
    border = (kernel - 1) // 2
    n, k, h, w = hm.shape
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    x = np.arange(kernel) - border
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    for i in range(n):
        for j in range(k):
            origin_max = np.max(hm[i, j])
            dr = np.zeros((h + 2 * border, w + 2 * border))
            dr[border:-border, border:-border] = hm[i, j].copy()
            if cv2 is not None:
                hm[i, j] = cv2.GaussianBlur(dr, (kernel, kernel), 0)[border:-border, border:-border]
            else:
                hm[i, j] = _numpy_gaussian_blur(dr, g, h, w)
            hm[i, j] *= origin_max / np.max(hm[i, j])
    return hm


def ref_taylor(hm: np.ndarray, coord: np.ndarray) -> np.ndarray:
    hm_h, hm_w = hm.shape
    px, py = int(coord[0]), int(coord[1])
    if 1 < px < hm_w - 2 and 1 < py < hm_h - 2:
        dx = 0.5 * (hm[py][px + 1] - hm[py][px - 1])
        dy = 0.5 * (hm[py + 1][px] - hm[py - 1][px])
        dxx = 0.25 * (hm[py][px + 2] - 2 * hm[py][px] + hm[py][px - 2])
        dxy = 0.25 * (hm[py + 1][px + 1] - hm[py - 1][px + 1] - hm[py + 1][px - 1] + hm[py - 1][px - 1])
        dyy = 0.25 * (hm[py + 2][px] - 2 * hm[py][px] + hm[py - 2][px])
        if dxx * dyy - dxy**2 != 0:
            hessian = np.array([[dxx, dxy], [dxy, dyy]])
            offset = -np.linalg.inv(hessian) @ np.array([dx, dy])
            coord += offset
    return coord


def ref_dark_final_preds(hm, center, scale):
    coords, maxvals = ref_get_max_preds(hm)
    hm_h, hm_w = hm.shape[2:]
    hm = ref_gaussian_blur(hm.copy(), BLUR_KERNEL)  # the official blur works in place: give it a copy
    hm = np.log(np.maximum(hm, 1e-10))
    for n in range(coords.shape[0]):
        for p in range(coords.shape[1]):
            coords[n, p] = ref_taylor(hm[n][p], coords[n][p])
    preds = coords.copy()
    for i in range(coords.shape[0]):
        preds[i] = ref_transform_preds(coords[i], center[i], scale[i], [hm_w, hm_h])
    return preds, maxvals, coords


def ref_generate_targets(joints: np.ndarray, joints_vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HRNet ``generate_target`` called once per instance."""
    image_size, heatmap_size = np.array(INPUT_SIZE), np.array(HEATMAP_SIZE)
    targets, weights = [], []
    for inst in range(joints.shape[0]):
        target_weight = np.ones((K, 1), dtype=np.float32)
        target_weight[:, 0] = joints_vis[inst, :, 0]
        target = np.zeros((K, heatmap_size[1], heatmap_size[0]), dtype=np.float32)
        tmp_size = SIGMA * 3
        for joint_id in range(K):
            feat_stride = image_size / heatmap_size
            mu_x = int(joints[inst, joint_id][0] / feat_stride[0] + 0.5)
            mu_y = int(joints[inst, joint_id][1] / feat_stride[1] + 0.5)
            ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
            br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
            if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] or br[0] < 0 or br[1] < 0:
                target_weight[joint_id] = 0
                continue
            size = 2 * tmp_size + 1
            x = np.arange(0, size, 1, np.float32)
            y = x[:, np.newaxis]
            x0 = y0 = size // 2
            g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * SIGMA**2))
            g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
            g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
            img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
            img_y = max(0, ul[1]), min(br[1], heatmap_size[1])
            if target_weight[joint_id] > 0.5:
                target[joint_id][img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[
                    g_y[0] : g_y[1], g_x[0] : g_x[1]
                ]
        targets.append(target)
        weights.append(target_weight)
    return np.stack(targets), np.stack(weights)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def realistic_heatmaps(batch: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blobs (sigma 2) at sub-pixel centres, amplitude U(0.4, 1), some distractors, N(0, 0.02) noise."""
    w, h = HEATMAP_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    centres = rng.uniform([3, 3], [w - 4, h - 4], size=(batch, K, 2))
    amp = rng.uniform(0.4, 1.0, size=(batch, K))
    d2 = (xx - centres[..., 0, None, None]) ** 2 + (yy - centres[..., 1, None, None]) ** 2
    maps = amp[..., None, None] * np.exp(-d2 / (2 * SIGMA**2))
    distract = rng.random((batch, K)) < 0.2
    dc = rng.uniform([3, 3], [w - 4, h - 4], size=(batch, K, 2))
    d2 = (xx - dc[..., 0, None, None]) ** 2 + (yy - dc[..., 1, None, None]) ** 2
    maps += (0.35 * amp * distract)[..., None, None] * np.exp(-d2 / (2 * SIGMA**2))
    maps += rng.normal(0, 0.02, size=maps.shape)
    return maps.astype(np.float32)


def boxes(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    box_h = rng.uniform(100, 400, size=batch)
    center = rng.uniform([200, 150], [500, 350], size=(batch, 2)).astype(np.float32)
    scale = (np.stack([0.75 * box_h, box_h], axis=1) / 200 * 1.25).astype(np.float32)
    return center, scale


def keypoints(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    w, h = INPUT_SIZE
    kp = rng.uniform([-20, -20], [w + 20, h + 20], size=(batch, K, 2)).astype(np.float32)
    vis = (rng.random((batch, K)) > 0.15).astype(np.float32)
    return kp, vis


# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU milliseconds of one call."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3


def time_pair(
    ref: Callable[[], object],
    ours: Callable[[], object],
    repeat: int,
    warmup: int,
    device: torch.device,
    pause: float,
) -> dict[str, list[float]]:
    """Interleaved timings: reference, ours, reference, ours, ... after ``warmup`` rounds of each. Each timed
    call follows a ``pause`` (seconds) of sleep, so that on a shared machine neither side starts right after
    the other has used up its scheduler time slice."""
    for _ in range(warmup):
        ref()
        ours()
    out: dict[str, list[float]] = {"ref_wall": [], "ref_cpu": [], "ours_wall": [], "ours_cpu": []}
    for _ in range(repeat):
        for name, fn in (("ref", ref), ("ours", ours)):
            time.sleep(pause)
            wall, cpu = _timed(fn, device)
            out[f"{name}_wall"].append(wall)
            out[f"{name}_cpu"].append(cpu)
    return out


def summary(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {"median": statistics.median(times), "p10": q[0], "p90": q[-1], "min": min(times)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="instances (default 64)")
    parser.add_argument("--repeat", type=int, default=30, help="timed repetitions per case (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first (default 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the NumPy references are single-threaded too, so the ratio "
        "measures the algorithm, not the core count; 0 keeps torch's default)",
    )
    parser.add_argument(
        "--device", default="cpu", help="where our code runs (the references are NumPy) (default cpu)"
    )
    parser.add_argument(
        "--pause", type=float, default=0.02, help="seconds of sleep before each timed call (default 0.02)"
    )
    parser.add_argument("--seed", type=int, default=0, help="(default 0)")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results here (default: print only)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, lambda: run(args, argv))


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    if args.json:
        refuse_existing([args.json], args.force)  # before the timing, not after it
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)

    hm_np = realistic_heatmaps(args.batch, rng)
    center, scale = boxes(args.batch, rng)
    kp, vis = keypoints(args.batch, rng)
    hm = torch.from_numpy(hm_np).to(device)
    center_t, scale_t = torch.from_numpy(center).to(device), torch.from_numpy(scale).to(device)
    kp_t, vis_t = torch.from_numpy(kp).to(device), torch.from_numpy(vis).to(device)
    joints_vis = np.repeat(vis[..., None], 3, axis=-1)

    msra = MSRAHeatmap(INPUT_SIZE, HEATMAP_SIZE, SIGMA)
    dark = MSRAHeatmap(INPUT_SIZE, HEATMAP_SIZE, SIGMA, unbiased=True, blur_kernel_size=BLUR_KERNEL)

    def ours_quarter():
        keypoints_in, scores = msra.decode(hm)
        return transform_preds(keypoints_in, center_t, scale_t, INPUT_SIZE), scores

    def ours_dark():
        keypoints_in, scores = dark.decode(hm)
        return transform_preds(keypoints_in, center_t, scale_t, INPUT_SIZE), scores

    cases = {
        "quarter": (lambda: ref_quarter_final_preds(hm_np, center, scale), ours_quarter),
        "dark": (lambda: ref_dark_final_preds(hm_np, center, scale), ours_dark),
        "targets": (lambda: ref_generate_targets(kp, joints_vis), lambda: msra.encode(kp_t, vis_t)),
    }

    # Agreement first: no ratio is worth printing for code that computes something else.
    checks = {}
    for name in ("quarter", "dark"):
        ref_img, ref_max, ref_hm = cases[name][0]()
        ours_img, ours_scores = cases[name][1]()
        codec = msra if name == "quarter" else dark
        ours_hm = codec.decode(hm)[0].cpu().numpy() / np.float32(4.0)
        hm_err = float(np.abs(ours_hm - ref_hm).max())
        img_err = float(np.abs(ours_img.cpu().numpy() - ref_img).max())
        assert np.array_equal(ours_scores.cpu().numpy(), ref_max[..., 0]), f"{name}: scores differ"
        hm_tol = 0.0 if name == "quarter" else 1e-5
        assert hm_err <= hm_tol, f"{name}: heatmap coordinates differ by {hm_err}"
        assert img_err <= 1e-3, f"{name}: image coordinates differ by {img_err}"
        checks[name] = {"max_abs_diff_heatmap_px": hm_err, "max_abs_diff_image_px": img_err}
    ref_t, ref_w = cases["targets"][0]()
    ours_t, ours_w = cases["targets"][1]()
    assert np.array_equal(ours_t.cpu().numpy(), ref_t), "targets differ"
    assert np.array_equal(ours_w.cpu().numpy(), ref_w[..., 0]), "target weights differ"
    checks["targets"] = {"identical": True}

    blur = (
        "cv2.GaussianBlur"
        if cv2 is not None
        else "per-map NumPy separable blur, float64 (OpenCV not installed)"
    )
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(
        f"heatmaps {tuple(hm.shape)}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}, device {device}, {os.cpu_count()} CPUs{load}"
    )
    print(f"reference blur: {blur}; reference affine: {'cv2.getAffineTransform' if cv2 else 'NumPy solve'}")
    print(
        "results agree: quarter exact; DARK "
        f"{checks['dark']['max_abs_diff_heatmap_px']:.1e} hm px; targets identical\n"
    )
    header = (
        f"{'case':<8} {'reference ms':>12} {'(p10-p90)':>15} {'ours ms':>8} {'(p10-p90)':>13} "
        f"{'speed-up':>8} {'cpu speed-up':>12}"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for name, (ref, ours) in cases.items():
        t = time_pair(ref, ours, args.repeat, args.warmup, device, args.pause)
        s_ref, s_ours = summary(t["ref_wall"]), summary(t["ours_wall"])
        c_ref, c_ours = summary(t["ref_cpu"]), summary(t["ours_cpu"])
        ratio = s_ref["median"] / s_ours["median"]
        cpu_ratio = c_ref["median"] / c_ours["median"]
        results[name] = {
            "reference_wall_ms": s_ref,
            "ours_wall_ms": s_ours,
            "reference_cpu_ms": c_ref,
            "ours_cpu_ms": c_ours,
            "speedup_median_wall": ratio,
            "speedup_median_cpu": cpu_ratio,
            **checks[name],
        }
        spread_ref = "({:.1f}-{:.1f})".format(s_ref["p10"], s_ref["p90"])
        spread_ours = "({:.2f}-{:.2f})".format(s_ours["p10"], s_ours["p90"])
        print(
            f"{name:<8} {s_ref['median']:>12.2f} {spread_ref:>15} {s_ours['median']:>8.2f} {spread_ours:>13}"
            f" {ratio:>7.1f}x {cpu_ratio:>11.1f}x"
        )
    print(
        "\nspeed-up = median wall time of the reference / ours; cpu speed-up = the same with process CPU time,"
        " which ignores time spent descheduled on a shared machine."
    )
    if args.json:
        meta = {
            "command": "python benchmarks/decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "heatmaps": list(hm.shape),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "device": str(device),
            "reference_blur": blur,
            "repeat": args.repeat,
            "pause_s": args.pause,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        }
        atomic_write_text(args.json, json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
