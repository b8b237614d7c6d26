"""Recording which experts each token was routed to, and writing it to routing shards.

A forward hook on every MoE layer's router keeps the (indices, weights) the router returned (read
in its family's output form, families/), so
what is recorded is exactly what the layer used: nothing is re-derived. Hooks only keep tensors
on the device; copying to the host happens once, after the whole forward or generation.

A shard (safetensors, opened with `safetensors.numpy.load_file`) holds many samples: for each part
(prompt, generation) the samples' [tokens, moe_layers, top_k] expert ids (uint8, uint16 past 256
experts) and float32 router weights are concatenated along tokens, and `<part>.offsets`
[samples + 1] (int64) says where each sample starts. Routing that an inference server recorded has
expert ids only: its shards have no `<part>.router_weights` and say `router_weights: no`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

from .adapters import MoeAdapter
from .errors import EngineError
from .files import sort_metadata

# The shard format is defined once, in TypeScript (src/components/io/routing.ts), and written
# here by `npm run schemas`; the reader in TypeScript and this writer cannot drift apart.
SHARD_FORMAT: dict[str, Any] = json.loads((Path(__file__).parent / "routing_format.json").read_text("utf-8"))
ROUTING_FORMAT: str = SHARD_FORMAT["format"]
PARTS: tuple[str, ...] = tuple(SHARD_FORMAT["parts"])


@dataclass(frozen=True)
class Shard:
    """Where the routing of consecutive samples of a request goes, and their ids."""

    path: str
    sample_ids: list[str]


# One sample's routing: part -> (expert ids, router weights), each [tokens, moe_layers, top_k].
# Inference servers return expert ids only: their shards have no router weights (None).
RoutedParts = dict[str, tuple[torch.Tensor, torch.Tensor | None]]


class RoutingRecorder:
    """Context manager; `calls[i]` is the list of per-forward-call results, stacked over layers.

    Each forward call of the model yields one entry of shape [tokens, moe_layers, top_k] for
    expert ids (uint8, or int16 past 256 experts) and router weights (float32).
    """

    def __init__(self, adapter: MoeAdapter, enabled: bool = True) -> None:
        self.adapter = adapter
        self.enabled = enabled
        self.id_dtype = torch.uint8 if adapter.num_experts <= SHARD_FORMAT["uint8_max_experts"] else torch.int16
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.ids: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, module: nn.Module, _args: Any, output: tuple[torch.Tensor, ...]) -> None:
        routing = self.adapter.family.routing(module, output)
        # With a device map, layers sit on several devices; their routing is gathered on the first's.
        device = self._pending[0][0].device if self._pending else routing.indices.device
        self._pending.append((routing.indices.to(device, self.id_dtype), routing.weights.to(device, torch.float32)))
        if len(self._pending) == len(self.adapter.layers):
            self.ids.append(torch.stack([ids for ids, _ in self._pending], dim=1))
            self.weights.append(torch.stack([w for _, w in self._pending], dim=1))
            self._pending.clear()

    def __enter__(self) -> RoutingRecorder:
        if self.enabled:
            self._handles = [layer.router.register_forward_hook(self._hook) for layer in self.adapter.layers]
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _expert_ids(ids: torch.Tensor) -> np.ndarray:
    # Recorded as int16 past 256 experts (torch's widest small int), stored as uint16.
    array = ids.numpy()
    return array.view(np.uint16) if array.dtype == np.int16 else array


def write_shards(adapter: MoeAdapter, shards: list[Shard], samples: list[RoutedParts]) -> None:
    """Each shard takes the next len(sample_ids) samples, in order; written whole or not at all."""
    if sum(len(s.sample_ids) for s in shards) != len(samples):
        raise EngineError(
            f"the routing shards name {sum(len(s.sample_ids) for s in shards)} samples, not {len(samples)}"
        )
    weighted = all(sample[part][1] is not None for sample in samples for part in PARTS)
    metadata = {
        "format": ROUTING_FORMAT,
        "router_weights": "yes" if weighted else "no",
        "moe_layers": json.dumps(adapter.moe_layer_indices, separators=(",", ":")),
        "num_experts": str(adapter.num_experts),
        "top_k": str(adapter.top_k),
    }
    start = 0
    for shard in shards:
        chunk = samples[start : start + len(shard.sample_ids)]
        start += len(shard.sample_ids)
        tensors: dict[str, np.ndarray] = {}
        for part in PARTS:
            ids = [sample[part][0] for sample in chunk]
            offsets = np.zeros(len(chunk) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(x) for x in ids])
            tensors[f"{part}.expert_ids"] = np.ascontiguousarray(_expert_ids(torch.cat(ids)))
            if weighted:
                weights = torch.cat([s[part][1] for s in chunk])  # type: ignore[misc]
                tensors[f"{part}.router_weights"] = np.ascontiguousarray(weights.numpy())
            tensors[f"{part}.offsets"] = offsets
        path = Path(shard.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        ids_json = json.dumps(shard.sample_ids, separators=(",", ":"), ensure_ascii=False)
        save_file(tensors, tmp, metadata={**metadata, "sample_ids": ids_json})
        sort_metadata(tmp)
        os.replace(tmp, path)
