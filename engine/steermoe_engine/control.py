"""Steering a router's choice: restrict it to some experts, or force some experts in.

Both act on the router's logits before its top-k, through a forward hook that replaces the
router's (logits, scores, indices) with a re-selection from the same logits. It goes first among
the router's hooks, so a recording hook (routing.py) sees the experts the layer really used,
whichever was registered first.

- allowed: only these experts may be chosen (training's per-batch mask; steering's deactivation
  is allowed = all but the deactivated). The softmax runs over the allowed experts alone, as if
  the others' logits were -inf. With fewer allowed experts than top-k, the spare slots repeat the
  best allowed expert with weight 0, so no token ever reaches an expert outside the set.
- forced: these experts are always in the top-k (steering's activation); their weights are the
  router's own probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .adapters import MoeAdapter


@dataclass(frozen=True)
class LayerControl:
    allowed: torch.Tensor | None = None  # bool [num_experts]
    forced: torch.Tensor | None = None  # bool [num_experts]


def reselect(
    logits: torch.Tensor, control: LayerControl, top_k: int, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [tokens, k] in the logits' dtype, indices [tokens, k]) under `control`."""
    logits = logits.float()
    if control.allowed is not None:
        logits = logits.masked_fill(~control.allowed, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    ranking = probs if control.forced is None else probs.masked_fill(control.forced, 2.0)
    k = top_k if control.allowed is None else min(top_k, int(control.allowed.sum()))
    _, indices = torch.topk(ranking, k, dim=-1)
    scores = probs.gather(-1, indices)
    if normalize:
        scores = scores / scores.sum(dim=-1, keepdim=True)
    if k < top_k:
        pad = top_k - k
        indices = torch.cat([indices, indices[:, :1].expand(-1, pad)], dim=-1)
        scores = torch.cat([scores, torch.zeros_like(scores[:, :1]).expand(-1, pad)], dim=-1)
    return scores, indices


class RouterControl:
    """Context manager applying a LayerControl per MoE layer (keyed by decoder-layer index)."""

    def __init__(self, adapter: MoeAdapter, controls: dict[int, LayerControl]) -> None:
        self.adapter = adapter
        self.controls = controls
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook_for(self, control: LayerControl) -> Any:
        top_k, normalize = self.adapter.top_k, self.adapter.normalize_topk

        def hook(_module: nn.Module, _args: Any, output: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            logits = output[0]
            scores, indices = reselect(logits, control, top_k, normalize)
            return logits, scores.to(output[1].dtype), indices.to(output[2].dtype)

        return hook

    def __enter__(self) -> RouterControl:
        for layer in self.adapter.layers:
            control = self.controls.get(layer.index)
            if control is not None:
                hook = self._hook_for(control)
                self._handles.append(layer.router.register_forward_hook(hook, prepend=True))
        return self

    def __exit__(self, *_exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
