"""Sigmoid top-k with a selection-only correction bias, no groups: MiniMax-M2.

scores = sigmoid(logits) in float32; the choice ranks scores + e_score_correction_bias, which the
MoE block owns and hands to its router as a forward argument (so the steering hook reads it from
the router's inputs); the weights are the uncorrected scores of the chosen experts, renormalised
over them. Steering adds its bias to the logits the choice's scores come from (logit units).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, keep_valid


class SigmoidTopK(Family):
    name = "sigmoid_topk"
    scores = "sigmoid"

    def normalizes(self, router: nn.Module) -> bool:
        return True

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = nn.functional.sigmoid(logits.float())
        choice = b.masked(nn.functional.sigmoid(b.shifted(logits.float())) + args[1])
        _, indices = torch.topk(choice, self.top_k(router), dim=-1, sorted=False)
        weights = scores.gather(1, indices)
        valid = None if b.removed is None else ~b.removed[indices]
        if valid is not None:
            weights = torch.where(valid, weights, torch.zeros_like(weights))
        weights /= weights.sum(dim=-1, keepdim=True)
        return keep_valid(indices, weights, valid)
