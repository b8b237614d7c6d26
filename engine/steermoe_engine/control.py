"""Steering a router's choice with a bias on its logits: one mechanism for graded steering,
switching experts off or on, and training's routing mask.

A forward hook on the router replaces its (logits, scores, indices) with a re-selection from the
same logits under a bias vector [num_experts]. It goes first among the router's hooks, so a
recording hook (routing.py) sees the experts the layer really used, whichever was registered
first. How the bias enters:

- Selection: the architecture's own top-k (top-k of softmax(logits), in float32) run on
  logits + bias. A finite bias only moves experts up or down the ranking.
- Weights: the architecture's own rule on the UNBIASED logits: the selected experts' softmax
  probabilities, renormalised over the selected experts where the architecture does so (Mixtral
  always, the others when config.norm_topk_prob). A finite bias never changes a weight except by
  changing which experts are selected.
- bias -inf: the expert is taken out of the router, as if its logit were -inf: never selected, and
  out of the softmax's denominator too (switching off; training's routing mask is -inf outside
  the batch's experts). With fewer remaining experts than top-k, the spare slots repeat the best
  remaining expert with weight 0, so no token ever reaches a removed expert.
- bias +inf: the expert is always selected (switching on), with its own probability as weight.
- bias 0 everywhere runs exactly the router's own operations: bit-identical to no steering.

So as a finite bias goes to -inf the selection converges to switching off, but on architectures
that do not renormalise (OLMoE, Qwen without norm_topk_prob) the weights do not: a finite bias
keeps the expert in the softmax's denominator, -inf takes it out (docs/results.md measures it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .adapters import MoeAdapter


@dataclass(frozen=True)
class LayerControl:
    bias: torch.Tensor  # float32 [num_experts], ±inf allowed


def reselect(
    logits: torch.Tensor, control: LayerControl | None, top_k: int, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [tokens, k] in float32, indices [tokens, k]) under `control`'s bias."""
    logits = logits.float()
    bias = None if control is None else control.bias.to(logits.device)
    removed = None if bias is None or not torch.isneginf(bias).any() else torch.isneginf(bias)
    if removed is not None:
        logits = logits.masked_fill(removed, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    ranking = probs
    if bias is not None:
        finite = torch.where(torch.isinf(bias), 0.0, bias)
        if finite.any():
            ranking = torch.softmax(logits + finite, dim=-1)
        forced = torch.isposinf(bias)
        if forced.any():
            ranking = ranking.masked_fill(forced, 2.0)
    k = top_k if removed is None else min(top_k, int((~removed).sum()))
    _, indices = torch.topk(ranking, k, dim=-1)
    scores = probs.gather(-1, indices)
    if normalize:
        scores = scores / scores.sum(dim=-1, keepdim=True)
    if k < top_k:
        pad = top_k - k
        indices = torch.cat([indices, indices[:, :1].expand(-1, pad)], dim=-1)
        scores = torch.cat([scores, torch.zeros_like(scores[:, :1]).expand(-1, pad)], dim=-1)
    return scores, indices


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
