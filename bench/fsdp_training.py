"""Expert-only training on 1 and on 2 CPU ranks (FSDP2, gloo): step time and peak memory per rank.

    PYTHONPATH=engine engine/.venv/bin/python bench/fsdp_training.py [--quick]

One rank is the single-process trainer; two ranks are what `steermoe train --nproc 2` runs. Each
rank's peak resident memory is taken over the training steps only (the kernel's high-water mark
is reset once the model is sharded and the trainer set up), since every rank reads the whole
model into host memory before FSDP2 keeps its shard of it. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import TCPStore  # pyright: ignore[reportPrivateImportUsage]
from torch.multiprocessing.spawn import start_processes

from steermoe_engine.models import load
from steermoe_engine.tiny import TinySize, build_tiny
from steermoe_engine.training import Trainer, TrainSetup

# Experts dominate the weights, as in the MoE models steermoe trains.
SIZE = TinySize(hidden=512, layers=4, heads=8, experts=32, top_k=4, expert_ffn=512, vocab=8192)
QUICK_SIZE = TinySize(hidden=128, layers=2, heads=4, experts=16, top_k=2, expert_ffn=128, vocab=2048)
TRAINED = {layer: list(range(0, 32, 4)) for layer in range(SIZE.layers)}  # 8 experts per layer


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rank(rank: int, world: int, port: int, model: str, steps: int, samples: int, out: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        store = TCPStore("127.0.0.1", port, world, is_master=rank == 0)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    loaded = load(model, "fp32", "cpu", False)
    experts = {layer: [e for e in chosen if e < loaded.adapter.num_experts] for layer, chosen in TRAINED.items()}
    experts = {layer: chosen for layer, chosen in experts.items() if layer < loaded.adapter.num_layers}
    trainer = Trainer(loaded, TrainSetup(trainable="experts", experts=experts))
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "it",
        "rains",
        "on",
        "the",
        "quiet",
        "town",
    ]
    conversations = [
        [
            {
                "role": "user",
                "content": " ".join(words[(i + j) % len(words)] for j in range(60)),
            },
            {
                "role": "assistant",
                "content": " ".join(words[(i * 3 + j) % len(words)] for j in range(60)),
            },
        ]
        for i in range(samples)
    ]
    batch = trainer.batch(conversations, ["safe", "unsafe"] * (samples // 2), {})
    trainer.step(batch, lr=1e-4)  # warm-up: optimizer state, allocator pools
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    seconds = [trainer.step(batch, lr=1e-4)["seconds"] for _ in range(steps)]
    result = {
        "rank": rank,
        "step_seconds": statistics.median(s for s in seconds if s is not None),
        "peak_mib": _peak_kib() / 1024,
    }
    Path(f"{out}.{rank}").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


def measure(model: str, world: int, steps: int, samples: int, tmp: str) -> list[dict[str, Any]]:
    store = TCPStore("127.0.0.1", 0, 1, is_master=True)  # a free port, released for the ranks
    port = store.port
    del store
    out = os.path.join(tmp, f"world{world}")
    start_processes(
        _rank,
        args=(world, port, model, steps, samples, out),
        nprocs=world,
        start_method="spawn",
    )
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(world)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tiny model and two steps")
    quick = parser.parse_args().quick
    with tempfile.TemporaryDirectory() as tmp:
        size = QUICK_SIZE if quick else SIZE
        model = build_tiny("olmoe", os.path.join(tmp, "model"), seed=0, size=size)["path"]
        steps, samples = (2, 4) if quick else (5, 8)
        ranks = {world: measure(model, world, steps, samples, tmp) for world in (1, 2)}
    one, two = ranks[1][0], ranks[2]
    json.dump(
        {
            "model": size.__dict__,
            "samples_per_batch": samples,
            "steps": steps,
            "ranks": ranks,
            "peak_ratio": max(r["peak_mib"] for r in two) / one["peak_mib"],
            "step_time_ratio": max(r["step_seconds"] for r in two) / one["step_seconds"],
            "load_average": os.getloadavg(),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
