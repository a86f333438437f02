"""Training top-down keypoint models: ``hrnet-backbones train`` and its Python API, :func:`train`.

One run reads COCO-format keypoint data (or the HRNet-Facial landmark CSV), trains with the official recipe
(Adam, lr 1e-3, x0.1 at 170/210 and 200/210 of the epochs, heatmap MSE with the target weights), evaluates on
the validation set after every epoch and writes, into ``--out``:

* ``log.jsonl``: one JSON record per epoch (and one every ``log_every`` steps);
* ``checkpoints/last.pt``: everything a resumed run needs (model, optimizer, scheduler, grad scaler, epoch,
  history, RNG states), replaced atomically after every epoch;
* at the end ``config.json``, ``model.safetensors`` and ``README.md``: a model folder in the converter's format
  (``timm.create_model("local-dir:OUT", pretrained=True)``, ``hrnet-backbones pose`` / ``evaluate`` / ``push``),
  and ``curves.png`` (loss and validation metric per epoch).

Reproducibility: the weights are initialised from ``seed``; the sampler's order is a function of
``(seed, epoch)`` and the data set's augmentation of ``(seed, epoch, index)``, so neither depends on the number
of DataLoader workers or on where a run was interrupted: ``resume`` continues exactly as the uninterrupted run
would have (bit-identical weights on the CPU).

Several processes (``torchrun --nproc_per_node N -m hrnet_backbones train ...``): DDP, a
``DistributedSampler``, optional SyncBatchNorm (``sync_bn``: torch's on CUDA, :mod:`hrnet_backbones.syncbn` on the
CPU with gloo), ``batch_size`` per process; rank 0 alone logs, shows the progress bar and writes files;
validation predictions are gathered from every rank before the metric.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .cliutil import input_size_arg
from .distributed import DistInfo, all_gather_object, all_reduce_sum, barrier, init_distributed_mode
from .fileio import atomic_path, atomic_write_bytes, atomic_write_text
from .keypoints import KeypointMSELoss, MSRAHeatmap, UDPHeatmap
from .syncbn import convert_sync_batchnorm

__all__ = [
    "CODECS",
    "HEADS",
    "TrainConfig",
    "TrainState",
    "add_arguments",
    "build_dataset",
    "build_model",
    "codec_config",
    "fit",
    "make_codec",
    "make_scheduler",
    "milestones",
    "normalization",
    "run_cli",
    "train",
]

CODECS = ("msra", "dark", "udp")
HEADS = ("pose", "landmark")
#: ``step``: the official x0.1 steps; ``cosine``: cosine annealing to 0 over the run, per epoch
SCHEDULES = ("step", "cosine")
LOG_FILE = "log.jsonl"
CURVES_FILE = "curves.png"
CHECKPOINT = Path("checkpoints") / "last.pt"
#: what a run writes into ``out`` (removed first when a run starts over with ``force``)
RUN_FILES = (LOG_FILE, CURVES_FILE, str(CHECKPOINT), "config.json", "model.safetensors", "README.md")
CHECKPOINT_FORMAT = "hrnet-backbones-train/1"
#: the official schedule: lr x0.1 at epochs 170 and 200 of 210
OFFICIAL_MILESTONES = (170 / 210, 200 / 210)
#: fields a resumed run must share with the run it continues (the others may change: workers, logging, ...)
_RESUME_FIXED = (
    "model",
    "arch",
    "pretrained",
    "head",
    "codec",
    "sigma",
    "input_size",
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "seed",
    "grad_checkpointing",
    "channels_last",
    "sync_bn",
    "amp",
    "cpu_amp",
)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths are strings; ``input_size`` is ``(H, W)``; ``batch_size`` is per process.

    ``train_ann`` / ``val_ann``: a COCO keypoint JSON (``head="pose"``, or landmarks in COCO format) or an
    HRNet-Facial landmark CSV (``.csv``, ``head="landmark"``). ``pretrained``: a timm tag of ``model``
    (``ms_in1k`` or ``hrnet_w32.ms_in1k``), ``local-dir:DIR`` or ``hf-hub:ORG/NAME``. ``resume``: a checkpoint
    path, or ``"last"`` for ``out``'s. ``amp`` applies on CUDA (bf16 where supported, else fp16 with a
    gradient scaler); on the CPU only with ``cpu_amp`` (bfloat16 autocast: 1.3x the training img/s of the small
    benchmark trunk on an AVX512-BF16 CPU, slower than float32 on a CPU without native bfloat16).
    ``channels_last``: NHWC weights and activations (here 1.2x the training img/s of the
    small benchmark trunk on the CPU); the written folder is the same either way.
    """

    model: str
    train_ann: str
    train_images: str
    out: str
    val_ann: str | None = None
    val_images: str | None = None
    arch: str | None = None
    pretrained: str | None = None
    head: str = "pose"
    codec: str = "msra"
    sigma: float = 2.0
    input_size: tuple[int, int] = (256, 192)
    epochs: int = 210
    batch_size: int = 32
    lr: float = 1e-3
    schedule: str = "step"
    workers: int = 4
    seed: int = 0
    resume: str | None = None
    grad_checkpointing: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    amp: bool = True
    cpu_amp: bool = False
    flip_test: bool = True
    val_every: int = 1
    layout: str | None = None
    device: str | None = None
    force: bool = False
    log_every: int = 50
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.codec not in CODECS:
            raise ValueError(f"--codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        h, w = self.input_size
        if h < 8 or w < 8 or h % 4 or w % 4:
            raise ValueError(
                f"--input-size must be two multiples of 4 (the heatmaps have stride 4), at least 8; got {h} {w}"
            )
        for name in ("epochs", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {self.workers}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not self.sigma > 0:
            raise ValueError(f"the heatmap sigma must be positive, got {self.sigma}")
        if (self.val_ann is None) != (self.val_images is None):
            raise ValueError("--val takes two paths: the annotation file and the image folder")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ------------------------------------------------------------------------------------------------- recipe
def milestones(epochs: int) -> list[int]:
    """The official lr steps (epochs 170 and 200 of 210) scaled to ``epochs``: ``[round(e * 170/210), ...]``,
    each at least 1 and distinct where the run is long enough."""
    out: list[int] = []
    for f in OFFICIAL_MILESTONES:
        m = max(1, round(epochs * f))
        if out and m <= out[-1]:
            m = out[-1] + 1
        if m < epochs:
            out.append(m)
    return out


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The lr schedule, stepped once per epoch: ``step`` (the official x0.1 at :func:`milestones`) or
    ``cosine`` (``lr * (1 + cos(pi * epoch / epochs)) / 2``: no step to place, which suits runs of a few dozen
    epochs, where the official steps leave the last fifth to the lower rates)."""
    if schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones(epochs), gamma=0.1)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ValueError(f"unknown lr schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")


def make_codec(name: str, input_size: Sequence[int], sigma: float = 2.0) -> MSRAHeatmap | UDPHeatmap:
    """The heatmap codec ``msra`` (official Gaussian, quarter-offset decoding), ``dark`` (DARK's unbiased
    Gaussian and decoding) or ``udp`` (unbiased data processing) for an ``(H, W)`` input and stride-4 heatmaps."""
    h, w = input_size
    heatmap = (w // 4, h // 4)
    if name == "udp":
        return UDPHeatmap((w, h), heatmap, sigma=sigma)
    if name in ("msra", "dark"):
        return MSRAHeatmap((w, h), heatmap, sigma=sigma, unbiased=name == "dark")
    raise ValueError(f"unknown codec {name!r}; expected one of {', '.join(CODECS)}")


def codec_config(name: str, input_size: Sequence[int], sigma: float = 2.0) -> dict[str, Any]:
    """The codec as ``pretrained_cfg["codec"]`` records it (mmpose's names: DARK is ``MSRAHeatmap`` with
    ``unbiased=True``); sizes are ``[w, h]``."""
    h, w = input_size
    cfg: dict[str, Any] = {"type": "UDPHeatmap" if name == "udp" else "MSRAHeatmap", "sigma": float(sigma)}
    if name == "dark":
        cfg["unbiased"] = True
    cfg.update(input_size=[w, h], heatmap_size=[w // 4, h // 4], refine=_REFINE[name])
    return cfg


_REFINE = {"msra": "quarter", "dark": "dark", "udp": "udp"}


# -------------------------------------------------------------------------------------------------- model
def build_model(config: TrainConfig, num_keypoints: int) -> nn.Module:
    """The model to train: ``config.model`` with a ``head`` of ``num_keypoints`` outputs, initialised from
    ``config.seed`` and, with ``pretrained``, loaded through timm (an ImageNet trunk leaves the head new)."""
    import timm

    from .convert.converter import parse_arch

    kwargs: dict[str, Any] = dict(head=config.head, num_classes=num_keypoints)
    if config.arch:
        kwargs["arch"] = parse_arch(config.arch)[0]
    torch.manual_seed(config.seed)
    spec = config.pretrained
    if spec is None:
        if not timm.is_model(config.model):
            raise ValueError(f"unknown model {config.model!r}; `hrnet-backbones list` shows the names")
        return _fresh_output_layer(timm.create_model(config.model, **kwargs))
    if spec.startswith(("local-dir:", "hf-hub:")):
        model = timm.create_model(spec, pretrained=True, **kwargs)
    else:
        name = spec if "." in spec else f"{config.model}.{spec}"
        if not timm.is_model(name.split(".", 1)[0]):
            raise ValueError(f"--pretrained {spec!r}: unknown model {name.split('.', 1)[0]!r}")
        model = timm.create_model(name, pretrained=True, **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    had = cfg.get("num_keypoints")
    if cfg.get("task") in HEADS and had is not None and int(had) != num_keypoints:
        raise ValueError(
            f"--pretrained {spec} is a {cfg['task']} model with {had} keypoints but the training data has "
            f"{num_keypoints}; start from a model with {num_keypoints} keypoints or from an ImageNet trunk"
        )
    return model if cfg.get("task") == config.head else _fresh_output_layer(model)


def _fresh_output_layer(model: nn.Module) -> nn.Module:
    """The official start of a new heatmap layer: weights N(0, 0.001), bias 0 (the trunk's Kaiming init would
    start the heatmaps at magnitudes of ~10 where the targets peak at 1)."""
    layer = model.get_classifier()
    nn.init.normal_(layer.weight, std=0.001)
    nn.init.zeros_(layer.bias)
    return model


def _wrap(model: nn.Module, info: DistInfo, sync_bn: bool) -> nn.Module:
    """``model`` on its device; under several processes SyncBatchNorm (if asked) and DDP around it."""
    model = model.to(info.device)
    if not info.distributed:
        return model
    if sync_bn:  # torch's SyncBatchNorm on CUDA, ours (gloo) on the CPU
        model = convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ------------------------------------------------------------------------------------------------- state
@dataclass
class TrainState:
    """What changes while a run trains; all of it goes into the checkpoint."""

    model: nn.Module  # possibly DDP-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict[str, Any]] | None = None

    def checkpoint(self, config: TrainConfig, meta: dict[str, Any]) -> dict[str, Any]:
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "meta": meta,
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history or [],
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        _unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.history = list(ckpt["history"])
        rng = ckpt["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}; give a checkpoint file or the run's --out")
    try:
        # our own file: tensors, dicts and the RNG states (numpy's state is a tuple holding an ndarray)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which
        raise ValueError(f"cannot read the checkpoint {path}: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by `hrnet-backbones train`")
    return ckpt


def _resume_path(config: TrainConfig) -> Path | None:
    if config.resume is None:
        return None
    if config.resume == "last":
        return Path(config.out) / CHECKPOINT
    path = Path(config.resume)
    return path / CHECKPOINT if path.is_dir() else path


def _check_resumable(config: TrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    saved = TrainConfig.from_dict(ckpt["config"])
    for name in _RESUME_FIXED:
        a, b = getattr(saved, name), getattr(config, name)
        if a != b:
            raise ValueError(
                f"--resume {path}: the run was started with {name}={a!r} but this command gives {b!r}; "
                "resume with the same settings (or start a new run with another --out)"
            )
    if int(ckpt["epoch"]) >= config.epochs:
        raise ValueError(
            f"--resume {path}: the run already completed its {config.epochs} epochs; its model folder is "
            f"{Path(saved.out)}"
        )


# -------------------------------------------------------------------------------------------------- data
def _loader(
    dataset: Dataset, config: TrainConfig, info: DistInfo, *, train: bool, batch_size: int | None = None
) -> DataLoader:
    sampler = DistributedSampler(
        dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=train,
        seed=config.seed,
        drop_last=train,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size or config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=train,
        pin_memory=info.device.type == "cuda",
        # the sampler orders the data and the data set draws its own augmentation from (seed, epoch, index);
        # this generator only seeds the workers' base seed, kept off the global RNG
        generator=torch.Generator().manual_seed(config.seed),
        persistent_workers=False,  # fresh workers each epoch see the data set's set_epoch
    )


def _check_train_set(dataset: Dataset, config: TrainConfig, info: DistInfo, name: str) -> None:
    n = len(dataset)
    if n == 0:
        raise ValueError(f"the training set {name} has no instances (after filtering); check the annotations")
    per_step = config.batch_size * info.world_size
    if n < per_step:
        raise ValueError(
            f"the training set {name} has {n} instance(s), fewer than one batch ({config.batch_size} x "
            f"{info.world_size} process(es)); lower --batch-size"
        )


# -------------------------------------------------------------------------------------------- the loop
def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training forward, or None for float32."""
    if not config.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and config.cpu_amp:
        return torch.bfloat16  # no gradient scaler: bfloat16 has float32's exponent range
    return None


def _warn_slow_cpu_bf16(dtype: torch.dtype | None, info: DistInfo) -> None:
    from .fast import native_bf16_cpu

    if dtype == torch.bfloat16 and info.device.type == "cpu" and info.is_main and not native_bf16_cpu():
        warnings.warn(
            "--cpu-amp on a CPU without native bfloat16 (no AVX512-BF16 or AMX): autocast emulates it and trains "
            "slower than float32; drop --cpu-amp here",
            stacklevel=3,
        )


class _JsonLog:
    """``log.jsonl`` on rank 0: one JSON object per line, flushed as written."""

    def __init__(self, path: Path | None):
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def _keep_log_until(path: Path, epoch: int) -> None:
    """Drop the records of epochs after ``epoch`` (written by an interrupted run after its last checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the interruption
            continue
        if int(rec.get("epoch", 0)) <= epoch:
            kept.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _train_epoch(
    state: TrainState,
    loader: DataLoader,
    criterion: nn.Module,
    config: TrainConfig,
    info: DistInfo,
    log: _JsonLog,
    run_eta: Callable[[int], float],
) -> dict[str, float]:
    """One pass over the training data; returns the epoch's mean loss (over all ranks), img/s and lr."""
    from tqdm import tqdm

    model, device = state.model, info.device
    model.train()
    dtype = _autocast_dtype(config, device)
    lr = state.optimizer.param_groups[0]["lr"]
    epoch = state.epoch + 1
    bar = tqdm(
        total=len(loader),
        desc=f"epoch {epoch}/{config.epochs}",
        unit="step",
        disable=not (info.is_main and config.progress),
        dynamic_ncols=True,
        leave=False,
        file=sys.stderr,
    )
    loss_sum, seen, start = 0.0, 0, time.perf_counter()
    window_loss, window_n, window_start = 0.0, 0, start
    for i, batch in enumerate(loader):
        images = batch["image"].to(device, non_blocking=True)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        heatmaps = batch["heatmaps"].to(device, non_blocking=True)
        weights = batch["weights"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(images)
        loss = criterion(out.float(), heatmaps.float(), weights.float())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} at epoch {epoch}, step {i + 1}; lower --lr or check the data"
            )
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.step += 1
        n = images.shape[0]
        value = float(loss.detach())
        loss_sum += value * n
        seen += n
        window_loss += value * n
        window_n += n
        elapsed = time.perf_counter() - start
        img_s = seen * info.world_size / max(elapsed, 1e-9)
        bar.set_postfix(
            loss=f"{loss_sum / seen:.3g}",
            lr=f"{lr:.2g}",
            img_s=f"{img_s:.1f}",
            eta=_format_eta(run_eta(len(loader) - i - 1)),
            refresh=False,
        )
        bar.update()
        if config.log_every and state.step % config.log_every == 0:
            now = time.perf_counter()
            log.write(
                {
                    "epoch": epoch,
                    "step": state.step,
                    "loss": window_loss / window_n,
                    "lr": lr,
                    "img_s": window_n * info.world_size / max(now - window_start, 1e-9),
                }
            )
            window_loss, window_n, window_start = 0.0, 0, now
    bar.close()
    total_loss, total_n = all_reduce_sum([loss_sum, float(seen)], device)
    elapsed = time.perf_counter() - start
    return {"loss": total_loss / max(total_n, 1), "img_s": total_n / max(elapsed, 1e-9), "lr": lr}


# ---------------------------------------------------------------------------------------------- metadata
def _layout_meta(dataset: Dataset) -> dict[str, Any]:
    """Keypoint names, flip pairs, skeleton and OKS sigmas of a data set (its ``layout``), as JSON values."""
    layout = getattr(dataset, "layout", None)
    k = int(getattr(dataset, "num_keypoints", 0) or (layout.num_keypoints if layout else 0))
    if not k:
        raise ValueError("the training set says nothing about its keypoints (no num_keypoints / layout)")
    if layout is None:
        return {"num_keypoints": k, "keypoint_names": [str(i) for i in range(k)], "flip_pairs": []}
    meta: dict[str, Any] = {
        "num_keypoints": k,
        "dataset": getattr(layout, "name", None),
        "keypoint_names": list(layout.keypoint_names),
        "flip_pairs": [list(p) for p in layout.flip_pairs],
    }
    if layout.skeleton:
        meta["skeleton"] = [list(p) for p in layout.skeleton]
    if layout.sigmas is not None:
        meta["sigmas"] = [float(s) for s in layout.sigmas]
    return meta


def _mean_std(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])


# ---------------------------------------------------------------------------------------------- the run
def _prepare_out(config: TrainConfig, resuming: bool) -> None:
    """Refuse an existing ``out`` unless resuming or ``force``; with ``force`` remove the previous run's files
    (only those a run writes). Called before any work."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out")
    if resuming or not out.exists():
        return
    if not config.force:
        raise FileExistsError(
            f"{out} already exists; pass --force to start over there, --resume to continue its run, "
            "or choose another --out"
        )
    if any(out.iterdir()) and not ((out / LOG_FILE).is_file() or (out / CHECKPOINT).is_file()):
        # --force removes the files a run writes (README.md, config.json ...): only where a run wrote them
        raise ValueError(
            f"--force starts over only in a folder a `train` run wrote (with {LOG_FILE} or {CHECKPOINT}), and "
            f"{out} is not one; choose another --out (nothing was changed)"
        )


def _clear_previous_run(out: Path) -> None:
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def fit(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None = None,
    *,
    evaluate: Callable[[nn.Module, Dataset, DistInfo], dict[str, float]] | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    info: DistInfo | None = None,
) -> Path:
    """Train on ``train_set`` (a map-style data set of dicts) as ``config`` says; return the model folder.

    Items: ``image`` ``(3, H, W)`` normalised, ``heatmaps`` ``(K, H/4, W/4)``, ``weights`` ``(K,)``; the data set
    has ``num_keypoints`` and ``layout`` (a :class:`~hrnet_backbones.keypoints.KeypointLayout`) and optionally
    ``set_epoch(epoch)``. ``evaluate(model, val_set, info)`` returns the validation metrics on rank 0 (called
    on every rank; the model is in eval mode and unwrapped); the first metric named ``AP`` or ``NME`` is the one
    plotted. ``normalization``: the ``(mean, std)`` the data set normalised with, recorded in the folder (default:
    the model's). ``info`` defaults to :func:`~hrnet_backbones.distributed.init_distributed_mode`.
    """
    info = info or init_distributed_mode(config.device)
    out = Path(config.out)
    resume = _resume_path(config)
    _prepare_out(config, resuming=resume is not None)
    _check_train_set(train_set, config, info, config.train_ann)
    meta = _layout_meta(train_set)
    ckpt = None
    if resume is not None:
        ckpt = _read_checkpoint(resume)
        _check_resumable(config, ckpt, resume)

    model = build_model(config, meta["num_keypoints"])
    if config.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean, std = normalization or _mean_std(model)
    meta.update(
        mean=list(mean), std=list(std), codec=codec_config(config.codec, config.input_size, config.sigma)
    )
    model = _wrap(model, info, config.sync_bn)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config.schedule, config.epochs)
    dtype = _autocast_dtype(config, info.device)
    _warn_slow_cpu_bf16(dtype, info)
    scaler = torch.amp.GradScaler(info.device.type, enabled=dtype == torch.float16)
    state = TrainState(model, optimizer, scheduler, scaler, history=[])
    criterion = KeypointMSELoss(use_target_weight=True)

    barrier()  # every rank has checked `out` (above) before rank 0 creates it
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume is None:
            _clear_previous_run(out)
        else:
            _keep_log_until(out / LOG_FILE, int(ckpt["epoch"]))
    barrier()
    if ckpt is not None:
        state.restore(ckpt)
        del ckpt
    log = _JsonLog(out / LOG_FILE if info.is_main else None)
    loader = _loader(train_set, config, info, train=True)
    say = _printer(info, config)
    say(
        f"training {config.model} ({config.head}, {meta['num_keypoints']} keypoints, codec {config.codec}) on "
        f"{len(train_set)} instances, {config.epochs} epochs, batch {config.batch_size} x {info.world_size} "
        f"process(es) on {info.device}" + (f"; resumed after epoch {state.epoch}" if state.epoch else "")
    )

    run_start = time.perf_counter()
    steps_per_epoch = len(loader)

    def run_eta(left_in_epoch: int) -> float:
        done = state.step - start_step
        if done == 0:
            return 0.0
        per_step = (time.perf_counter() - run_start) / done
        return per_step * (left_in_epoch + steps_per_epoch * (config.epochs - state.epoch - 1))

    start_step = state.step
    for epoch in range(state.epoch, config.epochs):
        loader.sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        t0 = time.perf_counter()
        stats = _train_epoch(state, loader, criterion, config, info, log, run_eta)
        scheduler.step()
        state.epoch = epoch + 1
        record: dict[str, Any] = {"epoch": state.epoch, "step": state.step, **stats}
        if val_set is not None and evaluate is not None and _validates(config, state.epoch):
            model.eval()
            record["val"] = evaluate(_unwrap(model), val_set, info)
        record["time_s"] = time.perf_counter() - t0
        state.history.append(record)
        if info.is_main:
            log.write(record)
            say(_epoch_line(record, config, run_eta(steps_per_epoch)))
            with atomic_path(out / CHECKPOINT) as tmp:
                torch.save(state.checkpoint(config, meta), tmp)
        barrier()

    if info.is_main:
        _write_model_folder(_unwrap(model), config, meta, state.history, out)
        atomic_write_bytes(out / CURVES_FILE, _curves_png(state.history, config))
        say(f"wrote {out}: config.json, model.safetensors, README.md, {CURVES_FILE}, {LOG_FILE}")
    barrier()
    return out


def _validates(config: TrainConfig, epoch: int) -> bool:
    """Whether the run scores the validation set after ``epoch`` (1-based): every ``val_every`` and the last."""
    return epoch % config.val_every == 0 or epoch == config.epochs


def _printer(info: DistInfo, config: TrainConfig) -> Callable[[str], None]:
    from tqdm import tqdm

    def say(line: str) -> None:
        if info.is_main and config.progress:
            tqdm.write(line, file=sys.stderr)

    return say


def _headline(val: dict[str, float] | None) -> tuple[str, float] | None:
    """The metric a curve shows: AP for poses, NME for landmarks."""
    if not val:
        return None
    for key in ("AP", "NME", "nme"):
        if key in val:
            return key, float(val[key])
    return None


def _epoch_line(record: dict[str, Any], config: TrainConfig, eta: float) -> str:
    line = (
        f"epoch {record['epoch']}/{config.epochs}  loss {record['loss']:.6f}  lr {record['lr']:.2g}  "
        f"{record['img_s']:.1f} img/s"
    )
    head = _headline(record.get("val"))
    if head:
        line += f"  val {head[0]} {head[1]:.4f}"
    return line + f"  ({record['time_s']:.0f} s; eta {_format_eta(eta)})"


def _curves_png(history: list[dict[str, Any]], config: TrainConfig) -> bytes:
    from .plot import plot_training

    loss = [(float(r["epoch"]), float(r["loss"])) for r in history]
    metric = [(float(r["epoch"]), h[1]) for r in history if (h := _headline(r.get("val")))]
    name = next((h[0] for r in history if (h := _headline(r.get("val")))), "metric")
    return plot_training(
        loss, metric, metric_name=name, title=f"{config.model} {config.head} ({config.codec})"
    )


# ----------------------------------------------------------------------------------------- model folder
def _pretrained_cfg(
    config: TrainConfig, meta: dict[str, Any], val: dict[str, float] | None
) -> dict[str, Any]:
    from .convert.converter import CONVERTER_VERSION

    h, w = config.input_size
    k = meta["num_keypoints"]
    dataset = meta.get("dataset")
    tag = f"{dataset}_{config.head}_{h}x{w}" if dataset else f"{config.head}_{h}x{w}"
    cfg: dict[str, Any] = {
        "tag": tag,
        "custom_load": False,
        "input_size": [3, h, w],
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": meta["mean"],
        "std": meta["std"],
        "num_classes": k,
        "first_conv": "conv1",
        "classifier": "head.final_layer" if config.head == "pose" else "head.3",
        "license": "other",
        "description": f"{config.model} {config.head} model trained with hrnet-backbones",
        "task": config.head,
        "dataset": dataset,
        "output_stride": 4,
        "num_keypoints": k,
    }
    for key in ("keypoint_names", "flip_pairs", "skeleton", "sigmas", "codec"):
        if key in meta:
            cfg[key] = meta[key]
    if val:
        cfg["metrics"] = {f"val {k_}": round(float(v), 4) for k_, v in val.items()}
    cfg["training"] = {
        "train": config.train_ann,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "schedule": config.schedule,
        "seed": config.seed,
        "pretrained": config.pretrained,
    }
    cfg["converter_version"] = CONVERTER_VERSION
    return {key: v for key, v in cfg.items() if v is not None}


def _write_model_folder(
    model: nn.Module, config: TrainConfig, meta: dict[str, Any], history: list[dict[str, Any]], out: Path
) -> None:
    """``config.json``, ``model.safetensors`` and ``README.md`` in ``out``, through the converter's writer.

    The writer builds a complete folder in a temporary sibling; its files are moved into ``out`` one by one,
    ``config.json`` last, so ``out`` holds a loadable model only once all of it is there.
    """
    from .convert.converter import Conversion
    from .convert.layouts import Layout
    from .convert.writer import FOLDER_FILES, write_folder

    model = model.cpu() if next(model.parameters()).device.type != "cpu" else model
    architecture = _architecture_name(model, config)
    model_args = {"arch": model.arch.to_dict(), "head": config.head, "num_classes": meta["num_keypoints"]}
    model_args.update(_head_args(model))
    if model.representation != _registered_representation(architecture):
        model_args["representation"] = model.representation
    val = history[-1].get("val") if history else None
    conv = Conversion(
        layout=Layout(
            family="trained",
            task=config.head,
            description="a model trained with `hrnet-backbones train`",
            trunk_prefix="",
            signature=None,
        ),
        architecture=architecture,
        arch=model.arch,
        model_args=model_args,
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        pretrained_cfg=_pretrained_cfg(config, meta, val),
        origin=_origin_sentence(config, history),
    )
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    try:
        write_folder(conv, staging / "model", model_id=None)
        for name in sorted(FOLDER_FILES, key=lambda n: n == "config.json"):
            os.replace(staging / "model" / name, out / name)  # write_folder gave them the umask's permissions
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _origin_sentence(config: TrainConfig, history: list[dict[str, Any]]) -> str:
    start = f"from `{config.pretrained}`" if config.pretrained else "from scratch"
    data = Path(config.train_ann).name
    text = f"Trained {start} with `hrnet-backbones train` on `{data}` for {config.epochs} epochs"
    head = _headline(history[-1].get("val")) if history else None
    if head:
        text += f" (validation {head[0]} {head[1]:.4f}, flip test {'on' if config.flip_test else 'off'})"
    return text + f"; heatmap codec `{config.codec}`."


def _architecture_name(model: nn.Module, config: TrainConfig) -> str:
    """The registered entry point whose name ``config.json`` records (its width, or the nearest)."""
    from .config import WIDTHS
    from .registry import VARIANTS

    prefix = next(p for p, r in VARIANTS.items() if r == model.representation)
    width = model.arch.width
    near = width if width in WIDTHS else min(WIDTHS, key=lambda w: (abs(w - width), w))
    return f"{prefix}_w{near}"


def _registered_representation(architecture: str) -> str:
    from .registry import VARIANTS

    return VARIANTS[architecture.rsplit("_w", 1)[0]]


def _head_args(model: nn.Module) -> dict[str, Any]:
    """Head settings that differ from the constructor defaults (the kernel size, a landmark head's width)."""
    from .convert.infer import infer_head

    args = infer_head(model.state_dict(), model.head_type, model.arch)
    if args.get("head_kernel_size") == 1:
        del args["head_kernel_size"]
    return {k: v for k, v in args.items() if k not in ("head", "num_classes")}


# --------------------------------------------------------------------------------------------- data sets
def normalization(config: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The ``(mean, std)`` the data are normalised with: a ``local-dir:`` start's own, else ImageNet's (every
    HRNet checkpoint of this package and the official repos uses it)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    spec = config.pretrained or ""
    if spec.startswith("local-dir:"):
        from .folder import read_model_config

        try:
            cfg = read_model_config(spec.removeprefix("local-dir:")).get("pretrained_cfg") or {}
        except (OSError, ValueError) as e:
            raise ValueError(f"--pretrained {spec}: {e}") from None
        if cfg.get("mean") is not None and cfg.get("std") is not None:
            return tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"]))
    return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def build_dataset(
    config: TrainConfig,
    ann_file: str,
    image_dir: str,
    *,
    train: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> Dataset:
    """A COCO keypoint JSON or (``.csv``) an HRNet-Facial landmark file with the top-down transform of
    ``config``: the official augmentation for training (HRNet-Facial's for landmarks), the plain crop otherwise.
    """
    from .keypoints.data import CocoKeypointDataset, LandmarkCsvDataset, TopDownTransform, landmark_transform

    codec = make_codec(config.codec, config.input_size, config.sigma)
    landmarks = config.head == "landmark"
    if str(ann_file).lower().endswith(".csv"):
        dataset = LandmarkCsvDataset(ann_file, image_dir, None, layout=config.layout, seed=config.seed)
    else:
        dataset = CocoKeypointDataset(ann_file, image_dir, None, seed=config.seed)
    # the flip pairs come from the file's keypoints, which the data set has just read
    make = landmark_transform if landmarks else TopDownTransform
    dataset.transform = make(
        config.input_size, codec, mean=mean, std=std, flip_pairs=dataset.layout.flip_pairs, train=train
    )
    return dataset


def _evaluator(config: TrainConfig) -> Callable[[nn.Module, Dataset, DistInfo], dict[str, float]]:
    """Validation: each rank predicts its share of the data set, rank 0 gathers the predictions and scores
    them (COCO AP / AR for keypoint files, NME / FR / AUC for landmark CSVs); the other ranks get ``{}``."""

    def evaluate(model: nn.Module, dataset: Dataset, info: DistInfo) -> dict[str, float]:
        from .evaluate import evaluate_coco, evaluate_landmarks, merge_predictions, predict_dataset
        from .keypoints.data import LandmarkCsvDataset

        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=False)
        predictions = predict_dataset(
            model,
            dataset,
            flip=config.flip_test,
            batch_size=config.batch_size,
            device=info.device,
            num_workers=config.workers,
            sampler=sampler,
        )
        parts = all_gather_object(predictions)
        if not info.is_main:
            return {}
        merged = merge_predictions(*parts)
        if isinstance(dataset, LandmarkCsvDataset):
            return evaluate_landmarks(merged, dataset)
        stats, _ = evaluate_coco(merged, dataset)
        return stats

    return evaluate


def train(config: TrainConfig) -> Path:
    """Run ``config`` end to end: data, model, training with validation after every epoch, the model folder.
    Returns the folder (``config.out``). See :func:`fit` for what it holds and how several processes share it.
    """
    info = init_distributed_mode(config.device)
    _prepare_out(config, resuming=config.resume is not None)  # before reading any data
    mean, std = normalization(config)
    train_set = build_dataset(config, config.train_ann, config.train_images, train=True, mean=mean, std=std)
    val_set = None
    if config.val_ann is not None:
        val_set = build_dataset(config, config.val_ann, config.val_images, train=False, mean=mean, std=std)
        if val_set.num_keypoints != train_set.num_keypoints:
            raise ValueError(
                f"the validation set {config.val_ann} has {val_set.num_keypoints} keypoints but the training set "
                f"{config.train_ann} has {train_set.num_keypoints}"
            )
    evaluate = _evaluator(config)
    return fit(config, train_set, val_set, evaluate=evaluate, normalization=(mean, std), info=info)


# -------------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` command's arguments."""
    p.add_argument("--model", required=True, help="a registered model (hrnet_w32, hrnetv2_w18, ...)")
    p.add_argument(
        "--train",
        nargs=2,
        required=True,
        metavar=("ANN_FILE", "IMAGE_DIR"),
        help="training data: COCO "
        "keypoint JSON (or HRNet-Facial landmark .csv) and the folder its image names are relative to",
    )
    p.add_argument(
        "--val", nargs=2, metavar=("ANN_FILE", "IMAGE_DIR"), help="validation data, scored every epoch"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run folder: log, checkpoints and, at the end, the model folder",
    )
    p.add_argument(
        "--arch",
        metavar="NAME|JSON|FILE",
        help="the trunk (tiny, w18, hrnet_w48, HRNetConfig JSON or a JSON file), as `convert --arch`",
    )
    p.add_argument(
        "--pretrained",
        metavar="TAG|local-dir:DIR|hf-hub:ID",
        help="start from these weights: a timm tag of --model (ms_in1k: the ImageNet trunk; the head starts new), "
        "a model folder or a Hub model; default: from scratch",
    )
    p.add_argument(
        "--head", choices=HEADS, default="pose", help="pose (HRNetV1 head) or landmark (default: pose)"
    )
    p.add_argument(
        "--codec", choices=CODECS, default="msra", help="heatmap targets and decoding (default: msra)"
    )
    p.add_argument(
        "--sigma", type=float, default=2.0, help="target Gaussian sigma in heatmap pixels (default: 2)"
    )
    input_size_arg(p)
    p.add_argument(
        "--epochs", type=int, default=210, help="default: 210 (lr x0.1 at 170/210 and 200/210 of them)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="per process (default: 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="step",
        help="lr schedule: step (the official x0.1 steps) or cosine (annealed to 0 over the run) (default: step)",
    )
    p.add_argument("--workers", type=int, default=4, help="DataLoader worker processes (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="initialisation, order and augmentation (default: 0)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="CHECKPOINT",
        help="continue an interrupted run: its checkpoint file or run folder (default: --out's last checkpoint)",
    )
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations: less memory")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC activations and weights (faster convolutions on most CPUs and on CUDA with AMP)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="batch norm statistics over every process's batch (SyncBatchNorm; CUDA or CPU)",
    )
    p.add_argument(
        "--no-amp", action="store_true", help="train in float32 on CUDA too (default: bf16/fp16 autocast)"
    )
    p.add_argument(
        "--cpu-amp",
        action="store_true",
        help="bfloat16 autocast on the CPU (faster only on CPUs with native bfloat16: AVX512-BF16 or AMX)",
    )
    p.add_argument("--no-flip-test", action="store_true", help="validate without the flip test")
    p.add_argument(
        "--val-every", type=int, default=1, help="validate every N epochs and after the last (default: 1)"
    )
    p.add_argument("--layout", help="landmark layout of a CSV (wflw, 300w, cofw, aflw; default: by count)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda:LOCAL_RANK if available)")
    p.add_argument("--log-every", type=int, default=50, help="a log record every N steps (0: per epoch only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--force", action="store_true", help="start over in an existing --out")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        train_ann=args.train[0],
        train_images=args.train[1],
        val_ann=args.val[0] if args.val else None,
        val_images=args.val[1] if args.val else None,
        out=args.out,
        arch=args.arch,
        pretrained=args.pretrained,
        head=args.head,
        codec=args.codec,
        sigma=args.sigma,
        input_size=tuple(args.input_size),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        workers=args.workers,
        seed=args.seed,
        resume=args.resume,
        grad_checkpointing=args.grad_checkpointing,
        channels_last=args.channels_last,
        sync_bn=args.sync_bn,
        amp=not args.no_amp,
        cpu_amp=args.cpu_amp,
        flip_test=not args.no_flip_test,
        val_every=args.val_every,
        layout=args.layout,
        device=args.device,
        log_every=args.log_every,
        progress=not args.no_progress,
        force=args.force,
    )


def run_cli(args: argparse.Namespace) -> int:
    from .distributed import cleanup_distributed

    try:
        out = train(config_from_args(args))
    finally:
        cleanup_distributed()
    if _rank() == 0:
        print(f"wrote {out}")
        print(f'load it with: timm.create_model("local-dir:{out}", pretrained=True)')
    return 0


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))
