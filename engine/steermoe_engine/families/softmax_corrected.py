"""Softmax with a selection-only correction: ERNIE-4.5-MoE.

scores = softmax(logits) in float32; the choice ranks scores + e_score_correction_bias (the
router's `moe_statics`); the weights are the uncorrected probabilities of the chosen experts,
renormalised over them (the sum clamped below at moe_norm_min). The shared experts run beside the
router and are not routed. Steering adds its bias to the logits the choice's probabilities come from
(logit units: the choice ranks softmax(logits + bias) + correction); a removed expert also leaves
the softmax's denominator, as in softmax_topk.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, keep_valid, setting


class SoftmaxCorrected(Family):
    name = "softmax_corrected"

    def normalizes(self, router: nn.Module) -> bool:
        return True

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        live = b.without_removed(logits)
        probs = torch.softmax(live, dim=1, dtype=torch.float)
        choice = probs if b.finite is None else torch.softmax(b.shifted(live), dim=1, dtype=torch.float)
        _, indices = torch.topk(b.masked(setting(router, "moe_statics")(choice)), self.top_k(router), dim=-1)
        weights = torch.gather(probs, dim=-1, index=indices)
        valid = None if b.removed is None else ~b.removed[indices]
        if valid is not None:
            weights = torch.where(valid, weights, torch.zeros_like(weights))
        weights = weights / torch.clamp(weights.sum(dim=-1, keepdim=True), min=setting(router, "norm_min"))
        return keep_valid(indices, weights, valid)
