"""Recording which experts each token was routed to.

A forward hook on every MoE layer's router keeps the (indices, weights) the router returned, so
what is recorded is exactly what the layer used: nothing is re-derived. Hooks only keep tensors
on the device; copying to the host happens once, after the whole forward or generation.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import torch
from torch import nn

from .adapters import MoeAdapter


class RoutingRecorder:
    """Context manager; `calls[i]` is the list of per-forward-call results, stacked over layers.

    Each forward call of the model yields one entry of shape [tokens, moe_layers, top_k] for
    expert ids (uint8, or int16 past 256 experts) and router weights (float32).
    """

    def __init__(self, adapter: MoeAdapter, enabled: bool = True) -> None:
        self.adapter = adapter
        self.enabled = enabled
        self.id_dtype = torch.uint8 if adapter.num_experts <= 256 else torch.int16
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.ids: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, _module: nn.Module, _args: Any, output: tuple[torch.Tensor, ...]) -> None:
        _logits, scores, indices = output
        self._pending.append((indices.to(self.id_dtype), scores.float()))
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
