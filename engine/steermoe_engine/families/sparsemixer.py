"""SparseMixer (Phi-3.5-MoE), as transformers runs it at inference.

Top-2 in two rounds: each round picks the best remaining expert, keeps in its softmax only the
experts whose logit is within a relative 2·jitter_eps of the picked one, and weights the pick with
its probability there; the second round runs with the first pick removed. In train mode
transformers samples the picks (Gumbel) instead; steermoe's training runs the MoE blocks in eval
mode (training.py), so it trains the routing that generation records, with or without a mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, keep_valid, setting


class SparseMixer(Family):
    name = "sparsemixer"
    router_attr = "router"

    def normalizes(self, router: nn.Module) -> bool:
        return False

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps = float(setting(router, "router_jitter_noise"))
        remaining = b.without_removed(logits)
        picks, weights, valid = [], [], []
        taken = torch.zeros_like(logits, dtype=torch.bool)
        for _ in range(self.top_k(router)):
            # A forced expert is picked once: in later rounds it is taken, like any pick.
            ranking = b.rank(remaining) if b.forced is None else b.rank(remaining).masked_fill(taken, float("-inf"))
            pick = ranking.max(dim=-1, keepdim=True)[1]
            threshold = logits.gather(-1, pick)
            factor = logits.abs().clamp(min=threshold)
            far = ((threshold - logits) / factor) > (2 * eps)
            gates = torch.softmax(remaining.masked_fill(far, float("-inf")), dim=-1)
            picks.append(pick)
            weights.append(gates.gather(-1, pick))
            valid.append(remaining.gather(-1, pick) > float("-inf"))
            remaining = torch.scatter(remaining, -1, pick, float("-inf"))
            taken = taken.scatter(-1, pick, True)
        checked = None if b.removed is None else torch.cat(valid, dim=-1)
        return keep_valid(torch.cat(picks, dim=-1), torch.cat(weights, dim=-1), checked)
