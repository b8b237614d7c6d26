"""Group-limited routing shared by the DeepSeek families: the experts fall into n_group equal
groups, a token first picks topk_group groups by a per-group score, then its top-k experts within
them. The bias acts on the scores used for both choices, so a forced expert's group is always
chosen and a removed expert never lifts its group."""

from __future__ import annotations

import torch
from torch import nn

from .base import setting


def expert_groups(router: nn.Module) -> list[int] | None:
    """[groups, groups chosen per token], where there is more than one group."""
    groups = int(setting(router, "num_group"))
    return [groups, int(setting(router, "topk_group"))] if groups > 1 else None


def group_mask(router: nn.Module, group_scores: torch.Tensor) -> torch.Tensor:
    """bool [tokens, experts]: the experts of each token's chosen groups."""
    n, chosen = int(setting(router, "num_group")), int(setting(router, "topk_group"))
    per_group = int(setting(router, "num_experts")) // n
    group_idx = torch.topk(group_scores, k=chosen, dim=-1, sorted=False)[1]
    mask = torch.zeros_like(group_scores)
    mask.scatter_(1, group_idx, 1)
    return mask.unsqueeze(-1).expand(-1, n, per_group).reshape(-1, n * per_group).bool()


def grouped(router: nn.Module, scores: torch.Tensor) -> torch.Tensor:
    """[tokens, n_group, experts per group]."""
    n = int(setting(router, "num_group"))
    return scores.view(-1, n, int(setting(router, "num_experts")) // n)
