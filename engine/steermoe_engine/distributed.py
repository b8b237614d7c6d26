"""Several engine ranks behind one protocol channel (`--ranks N`, for `steermoe train --nproc N`).

Rank 0 is the process the TypeScript side talks to. It starts ranks 1..N-1 with
torch.multiprocessing, hands every request to all ranks (broadcast_object_list, over gloo),
and only rank 0 replies. Every rank runs the same handler on the same request, so the collectives
inside a handler (FSDP2's, and the training code's) line up. A rank that dies takes the whole
engine down with a line naming it: the TypeScript side then sees an engine that died, as with one
process, and a rerun resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# Public store classes that torch.distributed leaves out of its __all__.
from torch.distributed import Store, TCPStore  # pyright: ignore[reportPrivateImportUsage]

from .errors import EngineError

Request = dict[str, Any] | None  # None: the channel closed, every rank stops


def rank_and_world() -> tuple[int, int]:
    """(rank, number of ranks) of this process: (0, 1) when the engine runs alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_device(device: torch.device) -> torch.device:
    """Each rank has a GPU of its own; on the CPU they share the machine."""
    rank, world = rank_and_world()
    if device.type != "cuda":
        return device
    if world > torch.cuda.device_count():
        raise EngineError(f"{world} ranks need {world} GPUs; this machine has {torch.cuda.device_count()}")
    return torch.device("cuda", rank)


class Ranks:
    """The request channel among the ranks, seen from one of them."""

    def __init__(self, rank: int, world: int, store: Store, followers: Sequence[BaseProcess]) -> None:
        self.followers, self.stopping = followers, threading.Event()
        if followers:
            threading.Thread(target=self.watch, daemon=True).start()
        cuda = torch.cuda.is_available()
        if rank < torch.cuda.device_count():
            torch.cuda.set_device(rank)
        # The cores this process may run on (torch's default follows the CPU affinity, which
        # os.cpu_count() ignores) are split between the ranks unless the user said otherwise.
        threads = os.environ.get("OMP_NUM_THREADS")
        torch.set_num_threads(int(threads) if threads else max(1, torch.get_num_threads() // world))
        # Object collectives (requests, checkpoints) go over gloo, tensors on GPUs over NCCL.
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", store=store, rank=rank, world_size=world)

    def watch(self) -> None:
        """On rank 0, for as long as the ranks work: end the engine when another rank is gone."""
        while not self.stopping.wait(0.2):
            self.exit_if_one_died()

    def exit_if_one_died(self, wait: float = 0.0) -> None:
        """The engine dies with the line naming the rank that died, not with the error the loss
        of its connection raised somewhere on this one (`wait`: time it may take to be seen)."""
        time.sleep(wait)
        for rank, process in enumerate(self.followers, start=1):
            if process.exitcode is not None:
                how = f"was killed (signal {-process.exitcode})" if process.exitcode < 0 else "exited"
                # The client takes a line with this prefix as the reason the engine ended.
                print(f"steermoe-engine: engine rank {rank} (pid {process.pid}) {how}", file=sys.stderr, flush=True)
                os._exit(1)

    def share(self, request: Request) -> Request:
        """Rank 0's request, on every rank. A rank that died between requests breaks the
        broadcast before the watcher sees it go: it is named, not the broken connection."""
        box = [request]
        try:
            dist.broadcast_object_list(box, src=0)
        except RuntimeError:
            self.exit_if_one_died(wait=1.0)
            raise
        return box[0]

    def close(self) -> None:
        """Every rank stops (rank 0 sends the end of the channel first)."""
        self.stopping.set()
        if dist.get_rank() == 0:
            self.share(None)
        dist.destroy_process_group()


def lead(world: int) -> Ranks:
    """On rank 0: start the other ranks and join them in one process group."""
    store = TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False)
    context = mp.get_context("spawn")
    followers = [context.Process(target=_follow, args=(r, world, store.port), daemon=True) for r in range(1, world)]
    for process in followers:
        process.start()
    return Ranks(0, world, store, followers)


def _follow(rank: int, world: int, port: int) -> None:
    from .__main__ import operations_table, quiet, serve

    quiet()
    operations = operations_table()
    store = TCPStore("127.0.0.1", port, world, is_master=False)
    ranks = Ranks(rank, world, store, [])
    server = operations()
    while (request := ranks.share(None)) is not None:
        reply = serve(server, request)
        if not reply["ok"]:
            print(f"engine rank {rank}: {reply['error']['message']}", file=sys.stderr, flush=True)
    ranks.close()
