"""Expert-only training without the fused experts' gradient.

transformers computes fused experts [num_experts, ...] with one grouped matmul per projection, and
its backward makes the weight gradient of every expert and keeps every (token, expert) pair's
input for it. When only a few experts learn, that is most of the step's memory for nothing: here
a transformers experts implementation runs the same forward (the same kernels in the same order,
so the same numbers), keeps only what the backward needs (the pairs' gate/up projections, from
which it recomputes the gated activation, and the layer's input, one row per token), and returns
gradients for the trained experts' fp32 master rows alone. Where no gradient flows below a layer
(the lowest trained one), it keeps the trained experts' pairs only. The backward runs a slice of
pairs at a time, so its temporaries stay small beside what the forward kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any, Protocol

import torch
from torch import nn
from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS, _grouped_mm

from .models import experts_implementation

IMPLEMENTATION = "steermoe_trained_rows"
ROWS = "steermoe_rows"  # the experts module's attribute holding its TrainedRows
PAIRS_PER_SLICE = 8192  # (token, expert) pairs per slice of the weighted sum and of the backward


@dataclass(frozen=True)
class TrainedRows:
    """One experts module's trained rows (sorted) and their fp32 masters, one per fused tensor."""

    rows: list[int]
    gate_up: nn.Parameter | None
    down: nn.Parameter | None


class FusedExperts(Protocol):
    """What this implementation reads of a transformers experts module that `supported` accepts."""

    num_experts: int
    gate_up_proj: torch.Tensor
    down_proj: torch.Tensor

    def _apply_gate(self, gate_up: torch.Tensor) -> torch.Tensor: ...


def attach(experts: nn.Module, trained: TrainedRows) -> None:
    """Gives an experts module the rows `trained_rows_forward` will train in it."""
    setattr(experts, ROWS, trained)


def supported(experts: nn.Module) -> bool:
    """Experts this implementation computes exactly as transformers' grouped_mm does: decorated
    with `use_experts_implementation`, [gate; up] concatenated, untransposed, without biases or a
    post-expert norm, not expert-parallel (GPT-OSS and its kin keep the fused gradient)."""
    flags = ("has_gate", "is_concatenated", "is_transposed", "has_bias", "has_post_expert_norm", "_is_expert_parallel")
    if not all(hasattr(experts, f) for f in flags) or not hasattr(experts, "config"):
        return False
    return bool(
        experts.has_gate
        and experts.is_concatenated
        and not (experts.is_transposed or experts.has_bias or experts.has_post_expert_norm)
        and not experts._is_expert_parallel
        and isinstance(getattr(experts, "gate_up_proj", None), torch.Tensor)
        and isinstance(getattr(experts, "down_proj", None), torch.Tensor)
    )


def _offsets(expert_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    # As grouped_mm_experts_forward counts: histc, since bincount breaks CUDA graphs.
    counted = expert_ids.float() if expert_ids.device.type in ("cpu", "mps") else expert_ids.int()
    return torch.cumsum(torch.histc(counted, bins=num_experts, min=0, max=num_experts - 1), dim=0, dtype=torch.int32)


class _TrainedRowsMlp(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        top_k_index: torch.Tensor,
        top_k_weights: torch.Tensor,
        experts: FusedExperts,
        trained: TrainedRows,
        gate_up_master: torch.Tensor | None,
        down_master: torch.Tensor | None,
    ) -> torch.Tensor:
        # The forward of grouped_mm_experts_forward, op for op.
        num_tokens, num_top_k = top_k_index.shape
        expert_ids, perm = torch.sort(top_k_index.reshape(-1))
        token = perm // num_top_k
        x = hidden[token]
        weights = top_k_weights.reshape(-1)[perm]
        offsets = _offsets(expert_ids, experts.num_experts)
        gate_up = _grouped_mm(x, experts.gate_up_proj.transpose(-2, -1), offsets)
        del x  # the temporaries go as soon as they are used: the forward's peak is every layer's
        # The trained experts' pairs, expert after expert.
        ends = [0, *offsets.tolist()]
        picked = torch.cat(
            [perm.new_empty(0)] + [torch.arange(ends[r], ends[r + 1], device=perm.device) for r in trained.rows]
        )
        gated = experts._apply_gate(gate_up)
        ctx.whole = ctx.needs_input_grad[0] or ctx.needs_input_grad[2]
        if not ctx.whole:
            gate_up = gate_up[picked]
        pair_out = _grouped_mm(gated, experts.down_proj.transpose(-2, -1), offsets)
        del gated
        # Weighted and summed as grouped_mm does: each pair times its routing weight in the promoted
        # dtype (fp32 where a router keeps its weights in fp32 in a bf16 model: Mixtral, DeepSeek,
        # GLM, MiniMax-M2, Hunyuan), each token's k pairs in one reduction in that dtype (no rounding
        # between the adds, and the reduction's own order), cast to the model's dtype once. A slice
        # of tokens at a time, where grouped_mm makes weighted and reordered copies of all pairs: a
        # token's reduction does not depend on how many tokens are reduced beside it.
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.size(0), device=perm.device)
        inverse = inverse.view(num_tokens, num_top_k)
        summed = torch.result_type(pair_out, weights)
        out = torch.empty(num_tokens, pair_out.shape[-1], dtype=summed, device=pair_out.device)
        step = max(1, PAIRS_PER_SLICE // num_top_k)
        for start in range(0, num_tokens, step):
            pairs = inverse[start : start + step]
            torch.sum(pair_out[pairs] * weights[pairs].unsqueeze(-1), dim=1, out=out[start : start + step])
        del pair_out
        out = out.to(hidden.dtype)

        sizes = [ends[r + 1] - ends[r] for r in trained.rows]
        if ctx.whole:
            # Every pair's gate/up output (the gated activation and its derivative come from it)
            # and the tokens' inputs (one row per token, not per pair), where grouped_mm keeps
            # every pair's input and output.
            ctx.spans = [(ends[r], ends[r + 1]) for r in trained.rows]
            ctx.save_for_backward(gate_up, weights, token, perm, offsets, hidden)
        else:
            # Nothing below needs a gradient: the trained pairs are all the backward sees.
            ctx.spans = list(pairwise([0, *accumulate(sizes)]))
            counts = torch.zeros(experts.num_experts, dtype=torch.int32, device=gate_up.device)
            counts[trained.rows] = torch.tensor(sizes, dtype=torch.int32, device=gate_up.device)
            picked_offsets = counts.cumsum(0, dtype=torch.int32)
            ctx.save_for_backward(gate_up, weights[picked], token[picked], None, picked_offsets, hidden)
        ctx.experts, ctx.trained, ctx.weights_shape = experts, trained, top_k_weights.shape
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        gate_up, weights, token, perm, offsets, hidden = ctx.saved_tensors
        experts, trained, pairs = ctx.experts, ctx.trained, gate_up.shape[0]
        grad_hidden = torch.zeros_like(grad_out) if ctx.whole else None
        grad_pair = torch.empty_like(weights) if ctx.whole else None
        masters = (trained.gate_up, trained.down) if trained.rows else ()
        grad_masters = [torch.zeros_like(master) for master in masters]
        # A slice of pairs at a time, each slice's experts with their own offsets: the backward's
        # [pairs, ...] temporaries would otherwise outweigh everything the forward kept.
        for start in range(0, pairs, PAIRS_PER_SLICE):
            end = min(start + PAIRS_PER_SLICE, pairs)
            offs = offsets.clamp(start, end) - start
            grad_y = grad_out[token[start:end]]
            w = weights[start:end].unsqueeze(-1)
            # out = w · down(gated): d/d(gated) = w · (grad_y · down), and
            # d/d(w) = <grad_y, down(gated)> = <grad_y · down, gated>, one grouped matmul for both.
            # Products with w, and w's gradient, are taken in the promoted dtype, as autograd takes
            # them through grouped_mm's weighting; what goes on into the experts' gradients is
            # rounded to the experts' dtype first, as there.
            grad_y_down = _grouped_mm(grad_y, experts.down_proj, offs)
            with torch.enable_grad():
                pre = gate_up[start:end].detach().requires_grad_()
                gated = experts._apply_gate(pre)
                (grad_gate_up,) = torch.autograd.grad(gated, pre, (grad_y_down * w).to(gated.dtype))
            gated = gated.detach()
            if grad_hidden is not None and grad_pair is not None:
                grad_x = _grouped_mm(grad_gate_up, experts.gate_up_proj, offs).to(grad_out.dtype)
                grad_hidden.index_add_(0, token[start:end], grad_x)
                grad_pair[start:end] = (grad_y_down.to(weights.dtype) * gated).sum(-1)
            # The trained experts' share of this slice, added into their gradients as it goes.
            for i, (first, last) in enumerate(ctx.spans):
                a, b = max(first, start) - start, min(last, end) - start
                if a < b:
                    grad_pair_out = (grad_y[a:b] * w[a:b]).to(gated.dtype)
                    grad_masters[0][i] += (grad_gate_up[a:b].T @ hidden[token[start + a : start + b]]).float()
                    grad_masters[1][i] += (grad_pair_out.T @ gated[a:b]).float()
        grad_weights = None
        if grad_pair is not None:
            grad_weights = torch.empty_like(grad_pair)
            grad_weights[perm] = grad_pair
            grad_weights = grad_weights.view(ctx.weights_shape)
        return (grad_hidden, None, grad_weights, None, None, *(grad_masters or (None, None)))


def trained_rows_forward(
    experts: nn.Module, hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    trained: TrainedRows = getattr(experts, ROWS)
    return _TrainedRowsMlp.apply(hidden, top_k_index, top_k_weights, experts, trained, trained.gate_up, trained.down)


ALL_EXPERTS_FUNCTIONS.register(IMPLEMENTATION, trained_rows_forward)


@contextmanager
def trained_rows(model: Any) -> Iterator[None]:
    """The model's experts compute with this implementation inside the block, with whatever they
    used before outside it."""
    with experts_implementation(model) as use:
        use(IMPLEMENTATION)
        yield
