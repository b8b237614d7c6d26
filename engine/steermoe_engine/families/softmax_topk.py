"""Softmax top-k: OLMoE, FlexOlmo, Mixtral, Qwen2-MoE, Qwen3-MoE, Qwen3-Next, Qwen3.5-MoE,
Mellum, Hunyuan-MoE-V1, Jamba (whose MoE block is the decoder layer's `feed_forward`, its router `router`).

The router takes the top-k of softmax(logits) in float32; the weights are those probabilities,
renormalised over the selected experts where the architecture does so (Mixtral, Qwen3.5 and Hunyuan always,
the others when config.norm_topk_prob). Qwen2-MoE's and Qwen3-Next's shared expert (with its sigmoid gate) and
Hunyuan's shared_mlp sit beside the router and are never routed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family


class SoftmaxTopK(Family):
    name = "softmax_topk"

    def __init__(
        self, always_normalize: bool = False, block_attrs: tuple[str, ...] = ("mlp",), router_attr: str = "gate"
    ) -> None:
        self.always_normalize = always_normalize
        self.block_attrs, self.router_attr = block_attrs, router_attr

    def normalizes(self, router: nn.Module) -> bool:
        return self.always_normalize or super().normalizes(router)

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        top_k = self.top_k(router)
        # Removed experts leave the softmax's denominator too: as if their logit were -inf.
        logits = b.without_removed(logits.float())
        probs = torch.softmax(logits, dim=-1)
        # Biased, the experts rank by their biased logits: the same order as softmax(logits + bias)
        # without its underflow, which turns a wide bias's losers into tied zeros.
        ranking = probs if b.finite is None and b.forced is None else b.rank(logits)
        k = top_k if b.removed is None else min(top_k, b.kept)
        _, indices = torch.topk(ranking, k, dim=-1)
        weights = probs.gather(-1, indices)
        if self.normalizes(router):
            weights = weights / weights.sum(dim=-1, keepdim=True)
        if k < top_k:
            pad = top_k - k
            indices = torch.cat([indices, indices[:, :1].expand(-1, pad)], dim=-1)
            weights = torch.cat([weights, torch.zeros_like(weights[:, :1]).expand(-1, pad)], dim=-1)
        return weights, indices
