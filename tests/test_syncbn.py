"""CPUSyncBatchNorm: two gloo processes, each with half of a batch, compute what one process computes with plain
BatchNorm2d on the whole batch (outputs, gradients, running statistics), in both memory formats.

One pair of processes runs every case (starting processes is the slow part); the tests compare what it saved
with a single-process run of the same model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hrnet_backbones.distributed import DistInfo
from hrnet_backbones.syncbn import CPUSyncBatchNorm, convert_sync_batchnorm
from tests.helpers import fixture_input, fixture_model, free_port

WORLD = 2
HALF = 3  # images per process
STEPS = 2  # running statistics accumulate over two batches
LAYOUTS = ("contiguous", "channels_last")
BATCH_NORMS = 3


def toy_model() -> nn.Module:
    """conv + BN three times (no conv bias: BN removes it, so its gradient is zero up to rounding): a cumulative-average BN (momentum None), a default one, and one without affine
    parameters or running statistics (batch statistics in eval too)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8, momentum=None),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1, bias=False),
        nn.BatchNorm2d(4, affine=False, track_running_stats=False),
    )


def batch(step: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Input (2 * HALF, 3, 12, 10) far from zero mean (as activations are) and loss weights for the output."""
    gen = torch.Generator().manual_seed(step)
    x = 3.0 + 2.0 * torch.randn(WORLD * HALF, 3, 12, 10, generator=gen)
    weights = torch.rand(WORLD * HALF, 4, 6, 5, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, weights


def far_from_zero() -> torch.Tensor:
    """(2 * HALF, 4, 8, 8) values 1000 + N(0, 1): E[x^2] - E[x]^2 in float32 loses the variance here."""
    return 1000.0 + torch.randn(WORLD * HALF, 4, 8, 8, generator=torch.Generator().manual_seed(7))


def loss_fn(out: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (out.square() * weights).mean() + out.mean()


def _channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last)


def run(model: nn.Module, layout: str, part: slice, bf16: bool = False) -> dict:
    """STEPS forward/backward passes on ``part`` of each batch: outputs, input gradients, parameter gradients
    (of the last step), the final running statistics, and whether the output of the last batch norm and the
    gradient the first one returns for its input are channels_last."""
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    formats = []  # the gradient reaching x is re-laid out like x by autograd: look at the BN's own output

    def record_input_grad(module: nn.Module, args: tuple[torch.Tensor]) -> None:
        args[0].register_hook(lambda g: formats.append(_channels_last(g)))

    inner[1].register_forward_pre_hook(record_input_grad)
    inner[-1].register_forward_hook(lambda m, args, out: formats.append(_channels_last(out)))
    outs, grads = [], []
    for step in range(STEPS):
        x, weights = batch(step, layout)
        x = x[part].detach().requires_grad_()
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as `train --cpu-amp`
            out = model(x)
        loss_fn(out.float(), weights[part]).backward()
        outs.append(out.detach())
        grads.append(x.grad)
    return dict(
        outs=outs,
        grads=grads,
        formats=formats,
        params={n: p.grad.clone() for n, p in inner.named_parameters()},
        buffers={n: b.clone() for n, b in inner.named_buffers()},
        types=[type(m).__name__ for m in inner.modules()],
    )


def _worker(rank: int, port: int, out_dir: str) -> None:
    from hrnet_backbones.train import _wrap

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    calls = []
    all_reduce = dist.all_reduce

    def counting_all_reduce(*args, **kwargs):
        calls.append(1)
        return all_reduce(*args, **kwargs)

    try:
        results = {}
        for layout in LAYOUTS:
            model = toy_model().train()
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
            ddp = _wrap(
                model, DistInfo(rank=rank, world_size=WORLD), sync_bn=True
            )  # what `train --sync-bn` does
            calls.clear()
            dist.all_reduce = counting_all_reduce
            try:
                results[layout] = run(ddp, layout, slice(rank * HALF, (rank + 1) * HALF))
            finally:
                dist.all_reduce = all_reduce
            results[layout]["all_reduce_calls"] = len(calls)
        ddp = _wrap(toy_model().train(), DistInfo(rank=rank, world_size=WORLD), sync_bn=True)
        results["bf16"] = run(ddp, "contiguous", slice(rank * HALF, (rank + 1) * HALF), bf16=True)
        bn = CPUSyncBatchNorm(4).train()
        results["far_from_zero"] = dict(
            out=bn(far_from_zero()[rank * HALF : (rank + 1) * HALF]), var=bn.running_var
        )
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("syncbn")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    results = {layout: run(toy_model().train(), layout, slice(None)) for layout in LAYOUTS}
    results["bf16"] = run(toy_model().train(), "contiguous", slice(None), bf16=True)
    return results


# ------------------------------------------------------------------------------------ two processes = one batch
def test_the_trainer_converts_every_batch_norm_on_the_cpu(two_processes):
    for layout in LAYOUTS:
        assert two_processes[0][layout]["types"].count("CPUSyncBatchNorm") == BATCH_NORMS
        assert "BatchNorm2d" not in two_processes[0][layout]["types"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_outputs_equal_one_process_on_the_whole_batch(two_processes, one_process, layout):
    for step in range(STEPS):
        synced = torch.cat([two_processes[r][layout]["outs"][step] for r in range(WORLD)])
        torch.testing.assert_close(synced, one_process[layout]["outs"][step], rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_input_gradients_equal_one_process_on_the_whole_batch(two_processes, one_process, layout):
    """Each process's input gradient is that of the sum of both processes' (mean) losses, as with torch's
    SyncBatchNorm: WORLD times the gradient of the one-process loss, the mean over the whole batch."""
    for step in range(STEPS):
        synced = torch.cat([two_processes[r][layout]["grads"][step] for r in range(WORLD)])
        expected = WORLD * one_process[layout]["grads"][step]
        torch.testing.assert_close(synced, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_parameter_gradients_after_ddp_equal_one_process_on_the_whole_batch(
    two_processes, one_process, layout
):
    expected = one_process[layout]["params"]
    for r in range(WORLD):
        got = two_processes[r][layout]["params"]
        assert list(got) == list(expected)
        for name, g in expected.items():
            torch.testing.assert_close(got[name], g, rtol=0, atol=1e-5 * float(g.abs().max()), msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_running_statistics_equal_one_process_on_the_whole_batch(two_processes, one_process, layout):
    expected = one_process[layout]["buffers"]
    assert expected["1.num_batches_tracked"] == STEPS
    for r in range(WORLD):
        got = two_processes[r][layout]["buffers"]
        assert list(got) == list(expected)
        for name, b in expected.items():
            torch.testing.assert_close(got[name], b, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_outputs_and_input_gradients_keep_the_memory_format(two_processes, layout):
    formats = [f for r in range(WORLD) for f in two_processes[r][layout]["formats"]]
    assert len(formats) == WORLD * STEPS * 2
    assert set(formats) == {layout == "channels_last"}


def test_each_synchronised_layer_makes_one_all_reduce_forward_and_one_backward(two_processes):
    assert all(
        two_processes[r][layout]["all_reduce_calls"] == 2 * BATCH_NORMS * STEPS
        for r in range(WORLD)
        for layout in LAYOUTS
    )


def test_statistics_of_values_far_from_zero_are_not_lost_to_cancellation(two_processes):
    x = far_from_zero().double()
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    expected = (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + 1e-5).sqrt()
    synced = torch.cat([two_processes[r]["far_from_zero"]["out"] for r in range(WORLD)]).double()
    # float32 holds 1000 + x to 6e-5: the output can be no closer than that
    torch.testing.assert_close(synced, expected, rtol=0, atol=1e-3)
    unbiased = torch.var(x, dim=(0, 2, 3))
    torch.testing.assert_close(
        two_processes[0]["far_from_zero"]["var"].double(), 0.9 + 0.1 * unbiased, rtol=1e-4, atol=0
    )


# ------------------------------------------------------------------------------------ plain batch norm otherwise
def _compare_with_plain(train: bool) -> None:
    plain = toy_model().train(train)
    synced = convert_sync_batchnorm(toy_model()).train(train)
    for step in range(STEPS):
        x, weights = batch(step, "contiguous")
        for model in (plain, synced):
            model.zero_grad()
            loss_fn(model(x), weights).backward()
        torch.testing.assert_close(synced(x), plain(x), rtol=0, atol=0)
        for (name, a), b in zip(plain.named_parameters(), synced.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0, msg=name)
    for (name, a), b in zip(plain.named_buffers(), synced.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


def test_outside_a_process_group_training_is_plain_batch_norm_exactly():
    _compare_with_plain(train=True)


def test_evaluation_is_plain_batch_norm_exactly():
    _compare_with_plain(train=False)


def test_in_a_process_group_of_one_training_is_plain_batch_norm_exactly(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        _compare_with_plain(train=True)
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ conversion
def test_conversion_keeps_state_dict_keys_parameters_and_outputs():
    model = fixture_model("pose")
    params = dict(model.named_parameters())
    keys = list(model.state_dict())
    x = fixture_input("pose")
    with torch.no_grad():
        expected = model(x)
    synced = convert_sync_batchnorm(model)
    assert not any(type(m) is nn.BatchNorm2d for m in synced.modules())
    assert any(isinstance(m, CPUSyncBatchNorm) for m in synced.modules())
    assert list(synced.state_dict()) == keys
    assert all(p is params[n] for n, p in synced.named_parameters())  # an optimizer built before still works
    with torch.no_grad():
        torch.testing.assert_close(synced(x), expected, rtol=0, atol=0)
    plain = fixture_model("pose")
    plain.load_state_dict(synced.state_dict())  # strict: a saved synced model loads as the ordinary one


def test_a_batch_norm_module_itself_is_converted():
    bn = nn.BatchNorm2d(4, eps=1e-3, momentum=0.3).eval()
    synced = convert_sync_batchnorm(bn)
    assert isinstance(synced, CPUSyncBatchNorm) and not synced.training
    assert (synced.eps, synced.momentum, synced.num_features) == (1e-3, 0.3, 4)
    assert synced.weight is bn.weight and synced.running_var is bn.running_var


def test_a_one_dimensional_input_is_refused_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(N, C, \*\)"):
        CPUSyncBatchNorm(4)(torch.randn(4))


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference.double()).norm() / reference.double().norm()).item()


def test_under_bfloat16_autocast_two_processes_lose_no_more_than_bfloat16_itself(two_processes, one_process):
    """`train --cpu-amp --sync-bn`: the batch norms see bfloat16 activations. bfloat16 alone moves this small
    model's outputs and gradients by up to ~7 % from float32 (one process, plain BatchNorm2d); two synchronised
    processes must stay as close to float32 as that. (Statistics and scale / shift rounded to bfloat16 put some
    gradients 3x further away.)"""
    exact, plain = one_process["contiguous"], one_process["bf16"]
    for rank, res in enumerate(two_processes):
        part = slice(rank * HALF, (rank + 1) * HALF)
        pairs = [
            (f"output {i}", o, r32[part], r16[part])
            for i, (o, r32, r16) in enumerate(zip(res["bf16"]["outs"], exact["outs"], plain["outs"]))
        ]
        pairs += [
            (name, g, exact["params"][name], plain["params"][name])
            for name, g in res["bf16"]["params"].items()
        ]
        pairs += [
            (name, b, exact["buffers"][name], plain["buffers"][name])
            for name, b in res["bf16"]["buffers"].items()
            if b.is_floating_point()
        ]
        for name, value, ref32, ref16 in pairs:
            synced, alone = _relative_error(value, ref32), _relative_error(ref16, ref32)
            assert synced <= 1.25 * alone + 1e-3, (
                f"{name}: {synced:.4f} from float32, bfloat16 alone {alone:.4f}"
            )
        assert all(o.dtype == torch.bfloat16 for o in res["bf16"]["outs"])
