"""Where the time goes: the fast path (torch.profiler), ONNX Runtime (its session profiler) and OpenVINO (its
per-node performance counters) on the same model and input, grouped into comparable kinds of work.

    python benchmarks/deploy_profile.py                          # HRNet-W32 features, 256x192, batch 1, 1 thread
    python benchmarks/deploy_profile.py --batch 8 --threads 2 --rounds 5
    python benchmarks/deploy_profile.py --per-shape              # kernel time per convolution shape, torch vs OpenVINO

Kinds: convolutions (with whatever each engine fuses into them: bias, residual add, ReLU), separate element-wise
adds / ReLUs, upsampling (the fusion's nearest resize), layout reorders (NCHW <-> blocked / channels_last
conversions and copies) and the rest. Each engine's total is the median wall time of a call measured outside its
profiler; the per-kind split is from the profiler, as a share of the profiled time.

``--per-shape`` times each convolution's kernel alone in both engines, shape by shape: oneDNN's execution time
from its verbose log for the fast path, the performance counters for OpenVINO (both engines use oneDNN's
kernels), and sets the sum of the fast path's kernels against its whole forward: what is left is everything
else, the calls around the kernels, the adds and the upsampling. Every convolution takes the oneDNN op there
(``fast.SMALL_CONV_MACS`` set to 0), so that each one has a kernel time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402

import hrnet_backbones  # noqa: E402
from hrnet_backbones.deploy.export import _export_onnx  # noqa: E402

KINDS = ("conv", "add/relu", "upsample", "reorder", "other")


def _kind(name: str) -> str:
    n = name.lower()
    if "reorder" in n or "copy" in n or "contiguous" in n or "transpose" in n or n.startswith("aten::to"):
        return "reorder"
    if "conv" in n:
        return "conv"
    if any(k in n for k in ("resize", "upsample", "interpolate", "interp")):
        return "upsample"
    if any(k in n for k in ("add", "relu", "eltwise", "sum")):
        return "add/relu"
    return "other"


def _median_ms(fn, rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def profile_fast(model, x, rounds):
    fast = hrnet_backbones.optimize_for_inference(model)

    def run():
        with torch.inference_mode():
            fast(x)

    total = _median_ms(run, rounds)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(rounds):
            run()
    split, by_size = collections.Counter(), collections.Counter()
    for e in prof.key_averages(group_by_input_shape=True):
        # leaf ops only: self time, so nested aten calls are not counted twice
        split[_kind(e.key)] += e.self_cpu_time_total
        if _kind(e.key) == "conv" and e.input_shapes and len(e.input_shapes[0]) == 4:
            by_size[tuple(e.input_shapes[0][2:])] += e.self_cpu_time_total
    return total, split, by_size, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def profile_ort(path, x, threads, rounds):
    import onnxruntime as ort

    from hrnet_backbones.deploy.runtime import open_session

    run_plain = open_session(path, "onnxruntime", threads)
    total = _median_ms(lambda: run_plain(x), rounds)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(path).with_name("ort_profile"))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(rounds + 1):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    split, ops, by_size = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "")
            split[_kind(op)] += e["dur"]
            ops[op] += e["dur"]
            shapes = [next(iter(d.values())) for d in e["args"].get("input_type_shape", [])]
            if _kind(op) == "conv" and shapes and len(shapes[0]) >= 4:
                by_size[tuple(shapes[0][2:4])] += e["dur"]
    return total, split, ops, by_size


def _openvino_profiling_config(threads: int) -> dict:
    """OpenVINO's CPU plugin as ``deploy.load`` configures it (float32, latency), with per-node counters on."""
    return {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "PERF_COUNT": True,
    }


def profile_openvino(path, x, threads, rounds):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", _openvino_profiling_config(threads))
    request = compiled.create_infer_request()
    total = _median_ms(lambda: request.infer({0: x}), rounds)
    split, ops = collections.Counter(), collections.Counter()
    for info in request.profiling_info:
        us = info.real_time.total_seconds() * 1e6
        split[_kind(info.node_type)] += us
        ops[f"{info.node_type} ({info.exec_type})"] += us
    return total, split, ops


def conv_calls(model, x) -> int:
    """Fused convolution calls in one forward of the fast path."""
    from hrnet_backbones.fast import FusedConv2d

    fast = hrnet_backbones.optimize_for_inference(model)
    calls = []
    hooks = [
        m.register_forward_hook(lambda *a: calls.append(1))
        for m in fast.modules()
        if isinstance(m, FusedConv2d)
    ]
    with torch.inference_mode():
        fast(x)
    for h in hooks:
        h.remove()
    return len(calls)


def call_costs(rounds: int) -> dict[str, float]:
    """Microseconds per call on a trivial 3x3 convolution (8 channels, 4x3 pixels: no arithmetic to speak of), so
    what is left is each engine's fixed cost per convolution."""
    import torch.nn.functional as F

    ops = torch.ops.mkldnn
    x = torch.randn(1, 8, 4, 3).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, 8, 3, 3), torch.randn(8)
    pad, one = [1, 1], [1, 1]
    packed = ops._reorder_convolution_weight(w, pad, one, one, 1, list(x.shape))
    y = ops._convolution_pointwise(x, packed, b, pad, one, one, 1, "none", [], "")
    w_cl = w.contiguous(memory_format=torch.channels_last)

    def per_call(fn) -> float:
        n = 2000
        return _median_ms(lambda: [fn() for _ in range(n)], rounds) * 1e3 / n

    conv = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        from hrnet_backbones.deploy.runtime import open_session

        path = Path(tmp) / "conv.onnx"
        _export_onnx(conv, path, x.contiguous(), ["out"], False, "torchscript")
        run_onnx = open_session(path, "onnxruntime", torch.get_num_threads())
        xn = x.contiguous().numpy()
        ort_us = per_call(lambda: run_onnx(xn))
    with torch.inference_mode():
        return {
            "oneDNN fused conv + bias + ReLU (the fast path's op)": per_call(
                lambda: ops._convolution_pointwise(x, packed, b, pad, one, one, 1, "relu", [], "")
            ),
            "oneDNN fused conv + bias + add + ReLU, in place": per_call(
                lambda: ops._convolution_pointwise_.binary(
                    y, x, packed, b, pad, one, one, 1, "add", 1.0, "relu", [], ""
                )
            ),
            "F.conv2d + bias (channels_last)": per_call(lambda: F.conv2d(x, w_cl, b, 1, 1)),
            "torch.relu_ (any dispatched op)": per_call(lambda: torch.relu_(y)),
            "ONNX Runtime: a whole session.run of a one-convolution graph": ort_us,
        }


#: oneDNN's verbose description of a convolution, e.g. ``mb1_ic32oc32_ih64oh64kh3sh1dh0ph1_iw48ow48kw3sw1dw0pw1``
_ONEDNN_CONV = re.compile(
    r"mb(\d+)_(?:g\d+)?ic(\d+)oc(\d+)_ih(\d+)oh\d+kh(\d+)sh(\d+)\S*?_iw(\d+)ow\d+kw\d+sw\d+"
)


def _conv_key(ic: int, oc: int, k: int, s: int, h: int, w: int) -> tuple[int, ...]:
    """A convolution shape: input channels, output channels, kernel, stride, input height and width."""
    return (ic, oc, k, s, h, w)


class FastKernels:
    """The fast path's convolutions, per shape: oneDNN's kernel execution time (its verbose log), its
    implementation, the calls; one forward per :meth:`step`, timed without the log by :meth:`time`."""

    def __init__(self, fast, x):
        self.fast, self.x = fast, x
        self.kernel_us, self.impl, self.calls = collections.defaultdict(float), {}, collections.Counter()

    def time(self) -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            self.fast(self.x)
            return (time.perf_counter() - t0) * 1e3

    def step(self) -> None:
        with torch.inference_mode():
            sys.stdout.flush()
            saved = os.dup(1)
            with tempfile.TemporaryFile() as log:
                os.dup2(log.fileno(), 1)  # oneDNN writes its verbose lines to the C-level stdout
                try:
                    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                        self.fast(self.x)
                finally:
                    os.dup2(saved, 1)
                    os.close(saved)
                log.seek(0)
                lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            fields = line.split(",")
            m = _ONEDNN_CONV.search(line)
            if "exec" not in fields or "convolution" not in fields or not m:
                continue
            _, ic, oc, ih, kh, sh, iw = map(int, m.groups())
            key = _conv_key(ic, oc, kh, sh, ih, iw)
            self.kernel_us[key] += float(fields[-1]) * 1e3
            self.calls[key] += 1
            self.impl[key] = fields[fields.index("convolution") + 1]


class OpenVINOKernels:
    """OpenVINO's convolutions, per shape: its compiled convolution's time (performance counters) and kernel
    name; one inference per :meth:`step`, timed with the counters off by :meth:`time`."""

    def __init__(self, path, x, threads):
        import openvino as ov

        from hrnet_backbones.deploy.runtime import open_session

        self.x = x
        self.plain = open_session(path, "openvino", threads)
        core = ov.Core()
        model = core.read_model(str(path))
        model.reshape({0: list(x.shape)})  # static sizes, so that the runtime model reports every shape
        compiled = core.compile_model(model, "CPU", _openvino_profiling_config(threads))
        self.request = compiled.create_infer_request()
        self.shapes = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            if len(op.inputs()) >= 2:
                self.shapes[op.get_friendly_name()] = (
                    list(op.input(0).get_partial_shape().to_shape()),
                    list(op.input(1).get_partial_shape().to_shape()),
                    list(op.output(0).get_partial_shape().to_shape()),
                )
        self.kernel_us, self.impl, self.calls = collections.defaultdict(float), {}, collections.Counter()

    def time(self) -> float:
        t0 = time.perf_counter()
        self.plain(self.x)
        return (time.perf_counter() - t0) * 1e3

    def step(self) -> None:
        self.request.infer({0: self.x})
        for info in self.request.profiling_info:
            if info.node_type != "Convolution" or info.node_name not in self.shapes:
                continue
            (_, ic, h, w), wshape, (_, oc, oh, _) = self.shapes[info.node_name]
            key = _conv_key(ic, oc, wshape[-1], round(h / oh), h, w)
            self.kernel_us[key] += info.real_time.total_seconds() * 1e6
            self.calls[key] += 1
            self.impl[key] = info.exec_type


def per_shape_report(model, x, path, threads, rounds) -> None:
    """The fast path's convolutions beside OpenVINO's, shape by shape (see the module docstring)."""
    import hrnet_backbones.fast as fast_module

    fast_module.SMALL_CONV_MACS = 0  # every convolution through oneDNN, so each has a kernel time
    engines = (
        FastKernels(hrnet_backbones.optimize_for_inference(model), x),
        OpenVINOKernels(path, x.numpy(), threads),
    )
    for engine in engines:
        engine.time()  # the first call builds and packs
        engine.step()
    for engine in engines:
        engine.kernel_us.clear()
        engine.calls.clear()
    # interleaved, so that a drift in the machine's speed reaches both engines alike
    totals = ([], [])
    for _ in range(rounds):
        for engine, ms in zip(engines, totals):
            ms.append(engine.time())
            engine.step()
    torch_engine, ov_engine = engines
    calls = collections.Counter({k: n // rounds for k, n in torch_engine.calls.items()})
    kernel = {k: torch_engine.kernel_us[k] / torch_engine.calls[k] for k in calls}
    impl, ov_impl = torch_engine.impl, ov_engine.impl
    ov = {k: ov_engine.kernel_us[k] / ov_engine.calls[k] for k in ov_engine.calls}
    forward_ms, ov_ms = statistics.median(totals[0]), statistics.median(totals[1])
    print(
        "\nper convolution shape (us per call; N: calls per forward; torch: oneDNN's kernel execution alone):"
    )
    print(
        f"  {'in':>4s} {'out':>4s} k s {'H x W':>9s} {'N':>3s} {'torch':>8s} {'OpenVINO':>9s} {'ratio':>6s}"
        "  torch impl | OpenVINO impl"
    )
    matched = collections.Counter()
    for key in sorted(calls, key=lambda k: -calls[k] * kernel[k]):
        ic, oc, k, s, h, w = key
        n, t_kernel, t_ov = calls[key], kernel[key], ov.get(key, float("nan"))
        if key in ov:
            matched["calls"] += n
            matched["torch"] += n * t_kernel
            matched["openvino"] += n * t_ov
        print(
            f"  {ic:4d} {oc:4d} {k} {s} {h:4d}x{w:<4d} {n:3d} {t_kernel:8.1f} {t_ov:9.1f} {t_kernel / t_ov:6.2f}"
            f"  {impl[key]} | {ov_impl.get(key, 'not matched')}"
        )
    torch_kernels = sum(calls[k] * kernel[k] for k in calls) / 1e3
    print(
        f"\n  convolution kernels, the {int(matched['calls'])} calls of shapes both engines ran: torch "
        f"{matched['torch'] / 1e3:.1f} ms, OpenVINO {matched['openvino'] / 1e3:.1f} ms "
        f"({matched['torch'] / matched['openvino']:.2f}x)"
        if matched["openvino"]
        else "\n  no convolution shape matched between the engines"
    )
    print(
        f"  fast path forward {forward_ms:.1f} ms: {torch_kernels:.1f} ms in oneDNN's convolution kernels, "
        f"{forward_ms - torch_kernels:.1f} ms outside them ({sum(calls.values())} calls); OpenVINO inference "
        f"{ov_ms:.1f} ms (its convolutions' counters: {sum(calls[k] * ov[k] for k in calls if k in ov) / 1e3:.1f} ms)"
    )


def _shares(split: collections.Counter) -> str:
    total = sum(split.values()) or 1
    return "  ".join(f"{k} {split[k] / total:5.1%}" for k in KINDS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hrnet_w32")
    p.add_argument("--size", type=int, nargs=2, default=(256, 192))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-shape", action="store_true", help="only the per-shape comparison with OpenVINO")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = timm.create_model(args.model, features_only=True).eval()
    x = torch.randn(args.batch, 3, *args.size, generator=torch.Generator().manual_seed(0))
    xn = x.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        _export_onnx(model, path, x, [f"out{i}" for i in range(5)], False, "torchscript")
        if args.per_shape:
            print(
                f"{args.model} features {args.size[0]}x{args.size[1]} batch {args.batch}, {args.threads} thread(s)"
            )
            per_shape_report(model, x, path, args.threads, args.rounds)
            return
        fast_ms, fast_split, fast_sizes, fast_table = profile_fast(model, x, args.rounds)
        ort_ms, ort_split, ort_ops, ort_sizes = profile_ort(path, xn, args.threads, args.rounds)
        ov_ms, ov_split, ov_ops = profile_openvino(path, xn, args.threads, args.rounds)
    print(f"{args.model} features {args.size[0]}x{args.size[1]} batch {args.batch}, {args.threads} thread(s)")
    for name, ms, split in (
        ("fast path", fast_ms, fast_split),
        ("ONNX Runtime", ort_ms, ort_split),
        ("OpenVINO", ov_ms, ov_split),
    ):
        print(f"{name:13s} {ms:8.1f} ms   {_shares(split)}")
    print("\nconvolution time by input resolution (share of each engine's convolution time):")
    print(f"  {'H x W':>9s} {'fast path':>10s} {'ONNX Runtime':>13s}")
    fast_total, ort_total = sum(fast_sizes.values()) or 1, sum(ort_sizes.values()) or 1
    for hw in sorted(set(fast_sizes) | set(ort_sizes), key=lambda t: -t[0] * t[1]):
        print(
            f"  {hw[0]:>4d}x{hw[1]:<4d} {fast_sizes[hw] / fast_total:10.1%} {ort_sizes[hw] / ort_total:13.1%}"
        )
    calls = conv_calls(model, x)
    costs = call_costs(args.rounds)
    print(
        f"\nfixed cost per call, trivial convolution, {args.threads} thread(s) (the fast path makes {calls} calls):"
    )
    for name, us in costs.items():
        print(f"  {name:55s} {us:6.1f} us")
    fused = next(iter(costs.values()))
    print(
        f"  {calls} calls x {fused:.1f} us = {calls * fused / 1e3:.1f} ms of fixed cost per forward "
        f"({calls * fused / 1e3 / fast_ms:.0%} of the fast path's {fast_ms:.1f} ms; the gap to the faster runtime: "
        f"{fast_ms - min(ort_ms, ov_ms):.1f} ms)"
    )
    print("\nfast path, top ops by self time:\n" + fast_table)
    for name, ops in (("ONNX Runtime", ort_ops), ("OpenVINO", ov_ops)):
        total = sum(ops.values()) or 1
        print(f"\n{name}, top node kinds:")
        for op, us in ops.most_common(10):
            print(f"  {op:40s} {us / total:6.1%}")


if __name__ == "__main__":
    main()
