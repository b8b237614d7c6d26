"""Softmax with group-limited greedy top-k: DeepSeek-V2 (topk_method "greedy" or
"group_limited_greedy"). scores = softmax(logits); groups rank by their best expert; the chosen
experts' softmax probabilities, times routed_scaling_factor, are the weights (never renormalised).
Shared experts run beside the router and are not routed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, keep_valid, setting
from .grouped import expert_groups, group_mask, grouped


class SoftmaxGrouped(Family):
    name = "softmax_grouped"

    def normalizes(self, router: nn.Module) -> bool:
        return False

    def expert_groups(self, router: nn.Module) -> list[int] | None:
        # DeepSeek-V2-Lite's "greedy" top-k ignores its groups.
        return expert_groups(router) if setting(router, "topk_method") == "group_limited_greedy" else None

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Removed experts leave the softmax's denominator too, as in softmax_topk.
        logits = b.without_removed(logits)
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        # Biased, by the biased logits: softmax(logits + bias)'s order without its underflow.
        ranking = scores if b.finite is None and b.forced is None else b.rank(logits.float())
        allowed = None
        if setting(router, "topk_method") == "group_limited_greedy":
            allowed = group_mask(router, grouped(router, ranking).max(dim=-1).values)
            ranking = ranking.masked_fill(~allowed, float("-inf"))
        indices = torch.topk(ranking, k=self.top_k(router), dim=-1, sorted=False)[1]
        weights = scores.gather(-1, indices) * setting(router, "routed_scaling_factor")
        valid = None
        if b.removed is not None or allowed is not None:
            # [tokens, experts] whichever is set: DeepSeek-V2-Lite's greedy top-k has no group mask.
            ok = torch.ones_like(logits, dtype=torch.bool) if b.removed is None else ~b.removed.expand_as(logits)
            valid = (ok if allowed is None else ok & allowed).gather(-1, indices)
        return keep_valid(indices, weights, valid)
