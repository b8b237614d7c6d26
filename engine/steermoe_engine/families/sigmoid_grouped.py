"""Sigmoid scores with a selection-only correction bias: DeepSeek-V3, GLM-4-MoE (and -Lite), dots1,
Solar Open, EXAONE-MoE, A.X K1, DeepSeek-V3.2, GLM-MoE-DSA (the same router code in each).

scores = sigmoid(logits); the choice ranks scores + e_score_correction_bias: groups by the sum of
their two best, then the top-k experts inside the chosen groups. The weights are the UNcorrected
sigmoid scores of the chosen experts, renormalised when norm_topk_prob, times
routed_scaling_factor. Shared experts run on every token beside the router and are not routed.
Steering adds its bias to the logits the choice's sigmoid scores come from (the same logit units as
every family), so it moves both the group and the expert choice; a removed expert counts for
nothing in its group's score.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, keep_valid, setting
from .grouped import expert_groups, group_mask, grouped


class SigmoidGrouped(Family):
    name = "sigmoid_grouped"
    scores = "sigmoid"

    def expert_groups(self, router: nn.Module) -> list[int] | None:
        return expert_groups(router)

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = logits.sigmoid()
        choice = b.masked(b.shifted(logits).sigmoid() + setting(router, "e_score_correction_bias"))
        best, second = grouped(router, choice).topk(2, dim=-1)[0].unbind(-1)
        if b.removed is not None:
            # A removed expert adds nothing to its group's score, rather than -inf: a group that
            # keeps one expert (a routing mask of one expert there) can still be chosen.
            second = torch.where(torch.isneginf(second) & ~torch.isneginf(best), 0.0, second)
        allowed = group_mask(router, best + second)
        choice = choice.masked_fill(~allowed, float("-inf"))
        indices = torch.topk(choice, k=self.top_k(router), dim=-1, sorted=False)[1]
        weights = scores.gather(1, indices)
        valid = None
        if b.removed is not None:
            valid = (allowed & ~b.removed).gather(1, indices)
            weights = torch.where(valid, weights, torch.zeros_like(weights))
        if setting(router, "norm_topk_prob"):
            denominator = weights.sum(dim=-1, keepdim=True) + 1e-20
            weights /= denominator
        weights = weights * setting(router, "routed_scaling_factor")
        return keep_valid(indices, weights, valid)
