"""Steering a router's choice with a bias: one mechanism for graded steering, switching experts
off or on, and training's routing mask.

A forward hook on the router replaces its selection with a re-selection from the same logits
under a bias vector [num_experts]. It goes first among the router's hooks, so a recording hook
(routing.py) sees the experts the layer really used, whichever was registered first. How the
bias enters, in every family (families/):

- Selection: the architecture's own rule (softmax top-k, DeepSeek's grouped choice on corrected
  sigmoid scores, GPT-OSS's top-k of raw logits, SparseMixer's rounds, ...) run on the scores it
  ranks with, shifted by the bias. A finite bias only moves experts up or down the ranking.
- Weights: the architecture's own rule on the UNBIASED scores (softmax probabilities renormalised
  where the architecture does so, sigmoid scores times the routed scaling factor, ...). A finite
  bias never changes a weight except by changing which experts are selected.
- bias -inf: the expert is taken out of the router, as if its logit were -inf: never selected, and
  out of any softmax over the experts (switching off; training's routing mask is -inf outside the
  batch's experts). With fewer allowed experts than top-k, the spare slots repeat the token's first
  choice with weight 0, so no token ever reaches a removed expert.
- bias +inf: the expert is always selected (switching on), with its own unbiased weight.
- bias 0 everywhere runs exactly the router's own operations: bit-identical to no steering.

So as a finite bias goes to -inf the selection converges to switching off, but where a softmax
over all experts gives the weights (OLMoE, Qwen without norm_topk_prob, DeepSeek-V2) the weights do
not: a finite bias keeps the expert in the denominator, -inf takes it out (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .adapters import MoeAdapter
from .families import Bias


@dataclass(frozen=True)
class LayerControl:
    bias: torch.Tensor  # float32 [num_experts], ±inf allowed


def allowed_only(experts: list[int], num_experts: int, device: torch.device | str) -> LayerControl:
    """Training's routing mask: every expert outside `experts` at -inf."""
    bias = torch.full((num_experts,), float("-inf"), device=device)
    bias[experts] = 0.0
    return LayerControl(bias)


class RouterControl:
    """Context manager applying a LayerControl per MoE layer (keyed by decoder-layer index)."""

    def __init__(self, adapter: MoeAdapter, controls: dict[int, LayerControl]) -> None:
        self.adapter = adapter
        self.controls = controls
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook_for(self, control: LayerControl, device: torch.device) -> Any:
        family = self.adapter.family
        bias = Bias.of(control.bias, device)

        def hook(
            module: nn.Module, args: tuple[Any, ...], output: tuple[torch.Tensor, ...]
        ) -> tuple[torch.Tensor, ...]:
            logits = family.routing(module, output).logits
            weights, indices = family.select(module, logits, bias, args)
            return family.pack(output, weights, indices)

        return hook

    def __enter__(self) -> RouterControl:
        for layer in self.adapter.layers:
            control = self.controls.get(layer.index)
            if control is not None:
                device = next(layer.router.parameters()).device
                hook = self._hook_for(control, device)
                self._handles.append(layer.router.register_forward_hook(hook, prepend=True))
        return self

    def __exit__(self, *_exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
