"""What every routing family provides, and the bias rules they share.

A family knows one way of routing: how to read a router's output (the ids and weights the layer
uses), how to select under a steering bias, and how to hand a selection back in the router's own
output form. Every router in transformers 5.23 that we support is a module of its own, so one
forward hook on it can read or replace the selection without touching the MoE block.

The bias (control.py) changes SELECTION only: it is added to the scores the architecture ranks
with; -inf takes an expert out (never selected, and out of any softmax over the experts), +inf
forces it in. The weights come from the architecture's own rule on the unbiased scores. A bias of
zero everywhere runs the router's own operations: bit-identical to no steering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

RouterOutput = tuple[torch.Tensor, ...]


def setting(router: nn.Module, name: str) -> Any:
    """A router's own attribute: a setting (top_k, num_group, routed_scaling_factor, ...), or a buffer
    or submodule its architecture adds, which nn.Module's type stubs can only type as Tensor | Module."""
    return getattr(router, name)


@dataclass(frozen=True)
class Routing:
    logits: torch.Tensor  # [tokens, experts], what the router computed before selecting
    weights: torch.Tensor  # [tokens, k]
    indices: torch.Tensor  # [tokens, k]


@dataclass(frozen=True)
class Bias:
    """A steering bias split into its three effects, on the device of the router."""

    finite: torch.Tensor | None  # None where every finite entry is 0
    removed: torch.Tensor | None  # bool [experts], None where nothing is removed
    forced: torch.Tensor | None  # bool [experts], None where nothing is forced
    kept: int  # experts not removed; read only where `removed` is set

    @staticmethod
    def of(bias: torch.Tensor | None, device: torch.device) -> Bias:
        """Split once per steering context, not per forward: each split reads the bias back from
        the device, which would stall every router call of a generation."""
        if bias is None:
            return Bias(None, None, None, -1)
        bias = bias.to(device)
        finite = torch.where(torch.isinf(bias), 0.0, bias)
        removed, forced = torch.isneginf(bias), torch.isposinf(bias)
        return Bias(
            finite if bool(finite.any()) else None,
            removed if bool(removed.any()) else None,
            forced if bool(forced.any()) else None,
            int((~removed).sum()),
        )

    def shifted(self, logits: torch.Tensor) -> torch.Tensor:
        """The router logits plus the finite bias: the bias is in logit units in every family."""
        if self.finite is None:
            return logits
        # In float32: a bias rounded to bf16 and added in bf16 would reorder experts whose biased
        # logits differ by less than bf16 resolves.
        return logits.float() + self.finite.float()

    def rank(self, logits: torch.Tensor) -> torch.Tensor:
        """For routers that rank experts by their logits: shifted, removed at -inf, forced at +inf."""
        return self.masked(self.shifted(logits))

    def masked(self, scores: torch.Tensor) -> torch.Tensor:
        """Ranking scores with the removed experts at -inf and the forced ones at +inf."""
        if self.removed is not None:
            scores = scores.masked_fill(self.removed, float("-inf"))
        if self.forced is not None:
            scores = scores.masked_fill(self.forced, float("inf"))
        return scores

    def without_removed(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.removed is None else logits.masked_fill(self.removed, float("-inf"))


def keep_valid(
    indices: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, indices) where slots whose expert was not allowed (removed, or outside the chosen groups) repeat the
    token's first choice with weight 0: with fewer allowed experts than top-k, no token ever
    reaches a removed expert. `valid` None: every slot is allowed (the unsteered path)."""
    if valid is None:
        return weights, indices
    return torch.where(valid, weights, torch.zeros_like(weights)), torch.where(valid, indices, indices[:, :1])


class Family:
    """One routing family; subclasses override what differs."""

    name: str = ""
    expert_params: tuple[str, ...] = ("gate_up_proj", "down_proj")
    # Where a decoder layer keeps its MoE block, and the block its router.
    block_attrs: tuple[str, ...] = ("mlp",)
    router_attr: str = "gate"
    shared_attrs: tuple[str, ...] = ("shared_expert", "shared_experts", "shared_expert_gate", "shared_mlp")
    # How the router turns logits into expert scores: softmax over experts, or one sigmoid each.
    scores: str = "softmax"

    def routing(self, router: nn.Module, output: RouterOutput) -> Routing:
        logits, weights, indices = output
        return Routing(logits, weights, indices)

    def select(
        self, router: nn.Module, logits: torch.Tensor, b: Bias, args: tuple[Any, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, indices) under the bias by the architecture's own rule; `args` are the router's
        positional inputs (MiniMax-M2's block hands its router the correction bias)."""
        raise NotImplementedError

    def pack(self, output: RouterOutput, weights: torch.Tensor, indices: torch.Tensor) -> RouterOutput:
        return output[0], weights.to(output[1].dtype), indices.to(output[2].dtype)

    def distribution(self, router: nn.Module, logits: torch.Tensor) -> torch.Tensor:
        """The router's distribution over experts, for the safe/unsafe router loss (sigmoid scores
        normalised to sum to 1)."""
        if self.scores == "sigmoid":
            scores = logits.float().sigmoid()
            return scores / scores.sum(dim=-1, keepdim=True)
        return torch.softmax(logits.float(), dim=-1)

    def normalizes(self, router: nn.Module) -> bool:
        """Whether the weights of one token sum to 1 (before any routed scaling factor)."""
        return bool(getattr(router, "norm_topk_prob", False))

    def top_k(self, router: nn.Module) -> int:
        return int(setting(router, "top_k"))

    def num_experts(self, router: nn.Module) -> int:
        return int(setting(router, "num_experts"))

    def expert_groups(self, router: nn.Module) -> list[int] | None:
        """[groups, groups chosen per token] where the router chooses groups before experts."""
        return None
