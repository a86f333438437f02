"""Would Winograd F(2x2, 3x3) make the fast path's 3x3 convolutions cheaper on this CPU? (It does not.)

The fast path's profile is 98% oneDNN convolutions running at 75-95% of the machine's convolution ceiling, so a
2x speed-up over timm's HRNet at 256x192 would need fewer multiply-adds. Winograd F(2x2, 3x3) needs 2.25x fewer.
This script times, for each HRNet-W32 branch shape at batch 8, the direct oneDNN convolution the fast path uses
against Winograd written with PyTorch ops (tile gather, input transform, 16 batched GEMMs, output transform), and
the batched GEMM alone (the lower bound if the transforms were free). Run:

    python benchmarks/winograd.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# F(2x2, 3x3) transform matrices (Lavin & Gray, 2016)
B_T = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float32)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float32)
A_T = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float32)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) -> (16, C, K): G w G^T for each of the 16 tile positions."""
    u = torch.einsum("ai,kcij,bj->abck", G, weight, G)
    return u.reshape(16, weight.shape[1], weight.shape[0]).contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A stride-1, padding-1 3x3 convolution of channels_last ``x`` by Winograd F(2x2, 3x3)."""
    n, c, h, w = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    xp = F.pad(x, (1, 1 + 2 * tw - w, 1, 1 + 2 * th - h)).contiguous(memory_format=torch.channels_last)
    s_n, s_c, s_h, s_w = xp.stride()
    tiles = xp.as_strided((n, th, tw, 4, 4, c), (s_n, 2 * s_h, 2 * s_w, s_h, s_w, s_c))
    # B^T d B as a 16x16 matrix on the flattened tile: one GEMM over every (tile, channel)
    b16 = torch.kron(B_T, B_T)
    v = b16 @ tiles.reshape(n * th * tw, 16, c).transpose(0, 1).reshape(16, -1)
    m = torch.bmm(v.view(16, -1, c), u)  # (16, tiles, K): the 16 element-wise products summed over C
    k = u.shape[2]
    y = torch.kron(A_T, A_T) @ m.view(16, -1)  # (4, tiles*K): A^T m A
    y = y.view(2, 2, n, th, tw, k).permute(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, k)[:, :h, :w]
    return (y + bias).permute(0, 3, 1, 2)


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


@torch.inference_mode()
def time_branch(channels: int, h: int, w: int, batch: int, repeats: int) -> tuple[float, float, float, float]:
    """Median ms of the direct conv, Winograd and Winograd's GEMM alone; Winograd's max relative error."""
    x = torch.randn(batch, channels, h, w).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3) * 0.05
    bias = torch.randn(channels)
    u = transform_weight(weight)
    reference = F.conv2d(x, weight, bias, padding=1)
    err = ((winograd_conv3x3(x, u, bias) - reference).abs().max() / reference.abs().max()).item()
    packed = torch.ops.mkldnn._reorder_convolution_weight(weight, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
    args = ([1, 1], [1, 1], [1, 1], 1, "none", [], "")
    direct = median_ms(lambda: torch.ops.mkldnn._convolution_pointwise(x, packed, bias, *args), repeats)
    wino = median_ms(lambda: winograd_conv3x3(x, u, bias), repeats)
    v = torch.randn(16, batch * ((h + 1) // 2) * ((w + 1) // 2), channels)
    gemm = median_ms(lambda: torch.bmm(v, u), repeats)
    return direct, wino, gemm, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"3x3 convolutions of HRNet-W32's branches at 256x192, batch {args.batch}, {args.threads} thread(s)"
    )
    print(f"{'branch':>14}  {'direct ms':>9}  {'winograd ms':>11}  {'its GEMM ms':>11}  {'max rel err':>11}")
    for channels, h, w in [(32, 64, 48), (64, 32, 24), (128, 16, 12), (256, 8, 6)]:
        direct, wino, gemm, err = time_branch(channels, h, w, args.batch, args.repeats)
        print(f"{f'{channels}ch {h}x{w}':>14}  {direct:9.2f}  {wino:11.2f}  {gemm:11.2f}  {err:11.1e}")


if __name__ == "__main__":
    main()
