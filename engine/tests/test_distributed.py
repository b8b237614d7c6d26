"""Expert-only training on two ranks (FSDP2, gloo) against one process: the same steps."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.distributed import TCPStore  # pyright: ignore[reportPrivateImportUsage]
from torch.multiprocessing.spawn import start_processes

from steermoe_engine.files import load_tensors, save_tensors
from steermoe_engine.models import load
from steermoe_engine.tiny import TinySize, build_tiny
from steermoe_engine.training import RouterLoss, Trainer, TrainSetup, full_state

from .conftest import CUDA_TIER, TIER_DEVICE
from .test_training import BATCH, LABELS, snapshot

TRAINED = {0: [1, 3, 6], 2: [5]}
# Steps: (batch order, routing mask); the second batch has an odd sample count for two ranks.
STEPS = [(slice(None), {0: [1, 3, 6]}), (slice(None, None, -1), {2: [5]}), (slice(1, None), {})]
SETUP = TrainSetup(
    trainable="experts", experts=TRAINED, weight_decay=0.1, router_loss=RouterLoss("symmetric", 0.5), micro_batch=1
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three layers: Qwen2-MoE gets a dense layer in the middle and a shared expert in the others."""
    root = tmp_path_factory.mktemp("tiny")
    return {
        arch: build_tiny(arch, str(root / arch), seed=0, size=TinySize(layers=3))["path"]
        for arch in ("olmoe", "qwen2_moe")
    }


@pytest.fixture(
    scope="module",
    params=[
        "cpu",
        pytest.param(
            TIER_DEVICE,
            marks=[
                *CUDA_TIER,
                pytest.mark.skipif(TIER_DEVICE == "cuda" and torch.cuda.device_count() < 2, reason="fewer than 2 GPUs"),
            ],
        ),
    ],
)
def device(request: pytest.FixtureRequest) -> str:
    """Where the ranks train: the CPU (gloo), and in the CUDA tier a GPU per rank (NCCL)."""
    return request.param


def train(model: str, steps: list, device: str, resume: str | None = None, checkpoint: str | None = None):
    """Losses of each step and the final weights, on the host (on rank 0 when distributed);
    `checkpoint`: where to save one after the second step."""
    torch.manual_seed(0)
    if dist.is_initialized():  # as the engine's ranks do: read on the host, sharded onto the device
        loaded = load(model, "fp32", "cpu", False)
        loaded.device = torch.device(device, dist.get_rank()) if device == "cuda" else torch.device(device)
    else:
        loaded = load(model, "fp32", device, False)
    trainer = Trainer(loaded, SETUP)
    if resume:
        trainer.load_state(load_tensors(resume)[0])
    losses = []
    for step, (order, allowed) in enumerate(steps, start=1):
        stats = trainer.step(trainer.batch(BATCH[order], LABELS[order], allowed), lr=1e-4)
        losses.append((stats["loss"], stats["router_loss"], stats["grad_norm"]))
        if checkpoint and step == 2:
            state = trainer.state()
            if not dist.is_initialized() or dist.get_rank() == 0:
                save_tensors(state, checkpoint)
    weights = full_state(loaded.model) if dist.is_initialized() else snapshot(loaded.model)
    return losses, {name: tensor.cpu() for name, tensor in weights.items()}


def _rank(rank: int, port: int, device: str, jobs: list[tuple[str, str, str]]) -> None:
    """One rank: STEPS for each (model, result file, checkpoint) in turn, in one process group."""
    torch.set_num_threads(1)
    if device == "cuda":
        torch.cuda.set_device(rank)
    store = TCPStore("127.0.0.1", port, 2, is_master=rank == 0)
    backend = "cpu:gloo,cuda:nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=2)
    for model, out, checkpoint in jobs:
        losses, weights = train(model, STEPS, device, checkpoint=checkpoint)
        if rank == 0:
            torch.save({"losses": losses, "weights": weights}, out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(models: dict[str, str], device: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Per model: the losses and final weights of STEPS on two ranks, and their step-2 checkpoint.
    Both models train in the same two rank processes (each start imports torch again)."""
    jobs = {}
    for arch, model in models.items():
        tmp = tmp_path_factory.mktemp(arch)
        jobs[arch] = (model, str(tmp / "ranks.pt"), str(tmp / "step-2.safetensors"))
    store = TCPStore("127.0.0.1", 0, 1, is_master=True)  # a free port, released for the ranks
    port = store.port
    del store
    start_processes(_rank, args=(port, device, list(jobs.values())), nprocs=2, start_method="spawn")
    runs = {}
    for arch, (_model, out, checkpoint) in jobs.items():
        result = torch.load(out)
        runs[arch] = (result["losses"], result["weights"], checkpoint)
    return runs


@pytest.mark.parametrize("arch", ["olmoe", "qwen2_moe"])
def test_two_ranks_train_exactly_what_one_process_trains(
    arch: str, models: dict[str, str], device: str, two_ranks: dict[str, tuple]
) -> None:
    model = models[arch]
    before = snapshot(load(model, "fp32", "cpu", False).model)
    one_losses, one = train(model, STEPS, device)
    two_losses, two, _ = two_ranks[arch]
    for mine, reference in zip(two_losses, one_losses, strict=True):
        assert mine == pytest.approx(reference, rel=1e-5, abs=1e-7)
    assert one.keys() == two.keys()
    for name, tensor in before.items():
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if ".mlp.experts." not in name or layer not in TRAINED:
            assert torch.equal(two[name], tensor), f"{name} moved"
            continue
        for e in range(tensor.shape[0]):
            if e in TRAINED[layer]:
                assert not torch.equal(two[name][e], tensor[e])
                # Norm-wise: Adam turns the last bits of a near-zero gradient element into a visible
                # share of its update, so element-wise closeness is not the measure.
                drift, update = (two[name][e] - one[name][e]).norm(), (one[name][e] - tensor[e]).norm()
                assert drift <= 1e-5 * one[name][e].norm() and drift <= 1e-2 * update, f"{name}[{e}]"
            else:
                assert torch.equal(two[name][e], tensor[e]), f"{name}[{e}] moved"


def test_a_checkpoint_of_two_ranks_resumes_in_one_process(
    models: dict[str, str], device: str, two_ranks: dict[str, tuple]
) -> None:
    model, checkpoint = models["olmoe"], two_ranks["olmoe"][2]
    straight_losses, straight = train(model, STEPS, device)
    resumed_losses, resumed = train(model, STEPS[2:], device, resume=checkpoint)
    assert resumed_losses[0] == pytest.approx(straight_losses[2], rel=1e-5)
    for name, tensor in straight.items():
        assert (resumed[name] - tensor).norm() <= 1e-5 * tensor.norm(), name
