"""Llama 4 (text): sigmoid top-k (top-1 in the released models) plus a shared expert, with MoE and
dense layers interleaved (config.moe_layers). The router picks the top-k raw logits and returns a
dense [tokens, experts] score map: sigmoid of the picked logits, 0 elsewhere (sigmoid(-inf)); every
expert then runs on its score-scaled input, so an expert with score 0 adds nothing. The router
returns (scores, logits), not (logits, weights, indices): reading and writing that form is what
this family adds. The decoder layer keeps the block in `feed_forward`, the router in `router`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, RouterOutput, Routing


class Llama4(Family):
    name = "llama4"
    scores = "sigmoid"
    block_attrs = ("feed_forward",)
    router_attr = "router"

    def normalizes(self, router: nn.Module) -> bool:
        return False

    def routing(self, router: nn.Module, output: RouterOutput) -> Routing:
        scores, logits = output
        weights, indices = torch.topk(scores, self.top_k(router), dim=1)
        return Routing(logits, weights, indices)

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, indices = torch.topk(b.rank(logits), self.top_k(router), dim=1)
        top = logits.gather(1, indices)
        if b.removed is not None:  # a removed expert that had to fill a slot gets score 0
            top = top.masked_fill(b.removed[indices], float("-inf"))
        # The router's own operations on its own [tokens, experts] shape: a sigmoid of the picked
        # logits alone runs other vector lanes, and another CPU gives other last bits.
        scores = torch.full_like(logits, float("-inf")).scatter_(1, indices, top)
        scores = torch.nn.functional.sigmoid(scores.float()).to(scores.dtype)
        return scores.gather(1, indices), indices

    def pack(self, output: RouterOutput, weights: torch.Tensor, indices: torch.Tensor) -> RouterOutput:
        _, logits = output
        # Scores straight from the selection: the router's sigmoid of the picked logits, 0 elsewhere.
        scores = torch.zeros_like(logits).scatter_(1, indices, weights.to(logits.dtype))
        return scores, logits
