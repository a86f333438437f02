"""Training: the loop learns, resumes exactly, runs under DDP, writes a model folder; bad input is refused early.

The data are the in-memory squares of ``tests/train_data.py`` on the micro trunk at 32x32, so a run takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from hrnet_backbones.distributed import DistInfo
from hrnet_backbones.keypoints import KeypointMSELoss
from hrnet_backbones.train import (
    TrainConfig,
    _autocast_dtype,
    codec_config,
    fit,
    make_codec,
    make_scheduler,
    milestones,
)
from tests.helpers import free_port
from tests.train_data import MICRO_ARCH, SIZE, Interrupted, Squares


def config(out: Path, **changes) -> TrainConfig:
    base = dict(
        model="hrnet_w32",
        arch=MICRO_ARCH,
        train_ann="squares",
        train_images="squares",
        out=str(out),
        input_size=SIZE,
        epochs=2,
        batch_size=4,
        workers=0,
        log_every=1,
        progress=False,
    )
    return TrainConfig(**{**base, **changes})


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------- recipe
def test_milestones_scale_the_official_170_and_200_of_210():
    assert milestones(210) == [170, 200]
    assert milestones(21) == [17, 20]
    assert milestones(3) == [2]  # 2.43 and 2.86 both round to 3 = the end: one step left, at 2
    assert milestones(1) == []


def _lrs(schedule: str, epochs: int) -> list[float]:
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(opt, schedule, epochs)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_the_step_schedule_drops_tenfold_at_the_milestones():
    lrs = _lrs("step", 21)
    assert lrs[:17] == [1.0] * 17
    assert lrs[17:20] == pytest.approx([0.1] * 3)
    assert lrs[20] == pytest.approx(0.01)


def test_the_cosine_schedule_anneals_every_epoch_towards_zero():
    epochs = 10
    lrs = _lrs("cosine", epochs)
    assert lrs == pytest.approx([(1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)])
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_an_unknown_schedule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--schedule must be one of step, cosine"):
        config(tmp_path / "run", schedule="linear")


@pytest.mark.parametrize("name", ["msra", "dark", "udp"])
def test_codec_config_names_the_codec_the_pose_command_decodes_with(name):
    cfg = codec_config(name, (256, 192))
    codec = make_codec(name, (256, 192))
    assert cfg["input_size"] == [192, 256] and cfg["heatmap_size"] == [48, 64]
    assert ("udp" in cfg["type"].lower()) == (name == "udp")
    assert cfg.get("unbiased", False) == (name == "dark")
    assert cfg["refine"] == codec.default_refine


def test_config_refuses_an_input_size_the_heatmap_stride_does_not_divide(tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        config(tmp_path / "run", input_size=(30, 32))


# --------------------------------------------------------------------------------------------- learning
def test_a_few_epochs_lower_the_loss(tmp_path):
    out = fit(config(tmp_path / "run", epochs=4, lr=3e-3), Squares(16))
    epochs = [r for r in log_records(out) if "time_s" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"]


def test_the_run_writes_log_checkpoint_curves_and_a_model_folder(tmp_path):
    out = fit(config(tmp_path / "run"), Squares(8))
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "README.md",
        "curves.png",
        "log.jsonl",
        "checkpoints",
    } <= names
    assert not [n for n in names if n.startswith(".")]  # no staging folder left behind
    records = log_records(out)
    assert [r["step"] for r in records if "time_s" not in r] == [1, 2, 3, 4]  # log_every=1, 2 steps per epoch
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "history", "config"} <= set(ckpt)


def test_the_model_folder_loads_with_timm_and_keeps_the_keypoint_metadata(tmp_path):
    out = fit(config(tmp_path / "run", codec="udp"), Squares(8))
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    cfg = model.pretrained_cfg
    assert cfg["keypoint_names"] == ["p0", "p1", "p2"]
    assert cfg["flip_pairs"] == [[0, 1]]
    assert cfg["skeleton"] == [[0, 1], [1, 2]]
    assert cfg["codec"]["type"] == "UDPHeatmap"
    assert cfg["input_size"] == [3, 32, 32]
    trained = load_file(str(out / "model.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert model(torch.zeros(1, 3, *SIZE)).shape == (1, 3, 8, 8)


def test_the_model_folder_files_have_the_umask_permissions(tmp_path):
    out = fit(config(tmp_path / "run", epochs=1), Squares(4))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly_as_the_uninterrupted_run(tmp_path, workers):
    straight = fit(config(tmp_path / "straight", workers=workers), Squares(8))
    cut = config(tmp_path / "cut", workers=workers)
    with pytest.raises(Interrupted):
        fit(cut, Squares(8, fail_at_epoch=1))
    assert not (tmp_path / "cut" / "config.json").exists()  # no model folder from the interrupted run
    resumed = fit(config(tmp_path / "cut", workers=workers, resume="last"), Squares(8))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in log_records(out)] for out in (straight, resumed)]
    assert losses[0] == losses[1]


def test_resume_refuses_other_training_settings(tmp_path):
    with pytest.raises(Interrupted):
        fit(config(tmp_path / "run"), Squares(8, fail_at_epoch=1))
    with pytest.raises(ValueError, match="lr=0.001 .* 0.01"):
        fit(config(tmp_path / "run", lr=1e-2, resume="last"), Squares(8))
    with pytest.raises(ValueError, match="schedule='step' .* 'cosine'"):
        fit(config(tmp_path / "run", schedule="cosine", resume="last"), Squares(8))


def test_resume_continues_a_cosine_run_exactly(tmp_path):
    straight = fit(config(tmp_path / "straight", schedule="cosine"), Squares(8))
    with pytest.raises(Interrupted):
        fit(config(tmp_path / "cut", schedule="cosine"), Squares(8, fail_at_epoch=1))
    resumed = fit(config(tmp_path / "cut", schedule="cosine", resume="last"), Squares(8))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    lrs = [[r["lr"] for r in log_records(out) if "time_s" in r] for out in (straight, resumed)]
    assert lrs[0] == lrs[1] and lrs[0][0] > lrs[0][-1]


def test_resume_of_a_missing_checkpoint_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nowhere"):
        fit(config(tmp_path / "run", resume=str(tmp_path / "nowhere")), Squares(8))


# --------------------------------------------------------------------------------------------- bad input
def test_an_existing_out_is_refused_without_force_and_left_alone(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        fit(config(out), Squares(8))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_force_starts_over_and_keeps_unrelated_files(tmp_path):
    out = fit(config(tmp_path / "run", epochs=1), Squares(8))
    (out / "notes.txt").write_text("mine")
    fit(config(out, epochs=1, force=True), Squares(8))
    assert (out / "notes.txt").read_text() == "mine"
    assert len([r for r in log_records(out) if "time_s" in r]) == 1  # the old log is gone


def test_force_never_starts_over_in_a_folder_no_run_wrote(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my project")
    with pytest.raises(ValueError, match="only in a folder a `train` run wrote"):
        fit(config(out, epochs=1, force=True), Squares(8))
    assert [p.name for p in out.iterdir()] == ["README.md"]
    assert (out / "README.md").read_text() == "my project"


def test_an_empty_training_set_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="no instances"):
        fit(config(tmp_path / "run"), Squares(0))
    assert not (tmp_path / "run").exists()


def test_a_training_set_smaller_than_a_batch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(config(tmp_path / "run", batch_size=8), Squares(5))


def test_a_pretrained_pose_model_with_another_keypoint_count_is_refused(tmp_path):
    source = fit(config(tmp_path / "source", epochs=1), Squares(8, k=3))
    with pytest.raises(ValueError, match="3 keypoints but the training data has 4"):
        fit(config(tmp_path / "run", pretrained=f"local-dir:{source}"), Squares(8, k=4))
    assert not (tmp_path / "run").exists()


def test_a_pretrained_pose_model_with_the_same_keypoints_starts_from_its_weights(tmp_path):
    source = fit(config(tmp_path / "source", epochs=1), Squares(8))
    out = fit(config(tmp_path / "run", epochs=1, lr=1e-12, pretrained=f"local-dir:{source}"), Squares(8))
    a, b = load_file(str(source / "model.safetensors")), load_file(str(out / "model.safetensors"))
    head = "head.final_layer.weight"
    torch.testing.assert_close(a[head], b[head], rtol=0, atol=1e-9)  # lr 1e-12: the head barely moves


# ------------------------------------------------------------------------------------------------- DDP
def _grad_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Half of a batch of 4 per process through DDP; rank 0 saves the averaged gradients."""
    from hrnet_backbones.train import _wrap

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, images, heatmaps, weights = _grad_problem()
        ddp = _wrap(model, DistInfo(rank=rank, world_size=world), sync_bn=False)
        assert isinstance(ddp, DistributedDataParallel)
        half = slice(2 * rank, 2 * rank + 2)
        KeypointMSELoss()(ddp(images[half]), heatmaps[half], weights[half]).backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.named_parameters()}, Path(out_dir) / "grads.pt")
    finally:
        dist.destroy_process_group()


def _grad_problem():
    """A micro pose model (BatchNorm in eval mode: per-sample, so a split batch sees the same statistics) and a
    batch of 4 squares."""
    torch.manual_seed(0)
    model = timm.create_model("hrnet_w32", arch=json.loads(MICRO_ARCH), head="pose", num_classes=3)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    data = Squares(4)
    items = [data[i] for i in range(4)]
    return model, *(torch.stack([it[k] for it in items]) for k in ("image", "heatmaps", "weights"))


def test_two_process_ddp_gradients_equal_one_process_with_the_doubled_batch(tmp_path):
    mp.spawn(_grad_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp_grads = torch.load(tmp_path / "grads.pt")
    model, images, heatmaps, weights = _grad_problem()
    KeypointMSELoss()(model(images), heatmaps, weights).backward()
    for name, p in model.named_parameters():
        # summation order differs (two halves, thread counts): compare at the scale of the gradient
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=0, atol=1e-5 * scale, msg=name)


# ------------------------------------------------------------------------------------------ start and options
def test_an_imagenet_trunk_starts_a_pose_model_without_its_classifier(tmp_path):
    """The usual start: a classification folder (here the tiny official ImageNet fixture, converted) gives the
    trunk; the classifier is dropped and the heatmap layer starts new."""
    from hrnet_backbones.convert import convert_checkpoint
    from tests.fixture_data import tiny_dir

    _, trunk = convert_checkpoint(tiny_dir("cls") / "checkpoint.pth", tmp_path / "in1k", complexity=False)
    run = config(tmp_path / "run", arch=None, epochs=1, lr=1e-12, pretrained=f"local-dir:{trunk}")
    out = fit(run, Squares(8))
    source, trained = load_file(str(trunk / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert not any(k.startswith(("classifier.", "incre_modules.")) for k in trained)
    torch.testing.assert_close(trained["conv1.weight"], source["conv1.weight"], rtol=0, atol=1e-9)
    assert float(trained["head.final_layer.weight"].std()) < 0.01  # the official N(0, 0.001) start


def test_gradient_checkpointing_trains_the_same_parameters(tmp_path):
    plain = fit(config(tmp_path / "plain", epochs=1), Squares(8))
    saved = fit(config(tmp_path / "saved", epochs=1, grad_checkpointing=True), Squares(8))
    a, b = load_file(str(plain / "model.safetensors")), load_file(str(saved / "model.safetensors"))
    params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for k in params:  # buffers differ: the recomputed forward updates BatchNorm statistics once more
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7, msg=k)


def test_channels_last_trains_the_same_run_and_writes_an_ordinary_folder(tmp_path):
    plain = fit(config(tmp_path / "plain"), Squares(8))
    nhwc = fit(config(tmp_path / "nhwc", channels_last=True), Squares(8))
    # only the order of the convolutions' sums differs (Adam's first steps turn a rounding difference in a
    # near-zero gradient into a step of lr, so the weights are compared through what they compute)
    losses = [[r["loss"] for r in log_records(out) if "time_s" not in r] for out in (plain, nhwc)]
    assert len(losses[0]) == 4 and losses[0] != [losses[0][0]] * 4
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=0)
    a, b = (timm.create_model(f"local-dir:{out}", pretrained=True).eval() for out in (plain, nhwc))
    x = torch.rand(2, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-2, atol=1e-3)
    weights = load_file(str(nhwc / "model.safetensors"))
    assert all(t.is_contiguous() for t in weights.values())


def test_resume_keeps_the_memory_format_of_the_run(tmp_path):
    with pytest.raises(Interrupted):
        fit(config(tmp_path / "run", channels_last=True), Squares(8, fail_at_epoch=1))
    with pytest.raises(ValueError, match="channels_last"):
        fit(config(tmp_path / "run", resume="last"), Squares(8))


def test_cpu_amp_trains_in_bfloat16_autocast_and_writes_float32_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", "auto")
    assert _autocast_dtype(config(tmp_path, cpu_amp=True), torch.device("cpu")) == torch.bfloat16
    assert _autocast_dtype(config(tmp_path, cpu_amp=True, amp=False), torch.device("cpu")) is None
    assert _autocast_dtype(config(tmp_path), torch.device("cpu")) is None
    plain = fit(config(tmp_path / "plain"), Squares(8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-native-bfloat16 warning on CPUs without AVX512-BF16
        amp = fit(config(tmp_path / "amp", cpu_amp=True), Squares(8))
    losses = [[r["loss"] for r in log_records(out) if "time_s" not in r] for out in (plain, amp)]
    assert losses[1] != losses[0]  # bfloat16 rounding shows ...
    torch.testing.assert_close(losses[1], losses[0], rtol=5e-2, atol=0)  # ... and nothing more
    weights = load_file(str(amp / "model.safetensors"))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_cpu_amp_warns_on_a_cpu_without_native_bfloat16(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", "0")
    with pytest.warns(UserWarning, match="without native bfloat16"):
        fit(config(tmp_path / "run", epochs=1, cpu_amp=True), Squares(8))


def test_resume_keeps_the_autocast_of_the_run(tmp_path):
    with pytest.raises(Interrupted), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(config(tmp_path / "run", cpu_amp=True), Squares(8, fail_at_epoch=1))
    with pytest.raises(ValueError, match="cpu_amp"):
        fit(config(tmp_path / "run", resume="last"), Squares(8))
