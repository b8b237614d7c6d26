"""GPT-OSS (and Granite-MoE, whose router follows the same rule): the router takes the top-k of
the raw logits and the weights are a softmax over the selected k logits only. GPT-OSS's router
linear layer has a bias, and each of its experts has bias vectors (gate_up_proj_bias,
down_proj_bias), trained with its matrices; gate and up are interleaved in gate_up_proj's last
dimension, which slicing by expert leaves untouched. Granite keeps its MoE block in
`block_sparse_moe` and has no expert biases."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Bias, Family, keep_valid


class GptOss(Family):
    name = "gpt_oss"
    router_attr = "router"

    def __init__(
        self,
        expert_params: tuple[str, ...] = ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias"),
        block_attrs: tuple[str, ...] = ("mlp",),
    ) -> None:
        self.expert_params, self.block_attrs = expert_params, block_attrs

    def normalizes(self, router: nn.Module) -> bool:
        return True

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, indices = torch.topk(b.rank(logits), self.top_k(router), dim=-1)
        valid = None if b.removed is None else ~b.removed[indices]
        top = logits.gather(-1, indices)
        if valid is not None:
            top = top.masked_fill(~valid, float("-inf"))  # a padded slot takes no share
        weights = torch.softmax(top, dim=1, dtype=top.dtype)
        return keep_valid(indices, weights, valid)
