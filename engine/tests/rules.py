"""Each architecture's routing rule, written out here from transformers 5.23's router code and
independent of steermoe_engine/families/, with steering's bias: finite entries shift the router
logits (in every architecture: where the choice ranks sigmoid or softmax scores, those of the
shifted logits), -inf removes an expert (never selected, out of any softmax over experts), +inf
forces it. Weights always come from the unbiased scores.

`reference(config, logits, bias, router tensors)` -> per token, {expert: weight} of the experts
that carry the token (slots padded with weight 0 are not part of the choice)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

INF = float("inf")
SIGMOID_GROUPED = (
    *("deepseek_v3", "glm4_moe", "dots1", "glm4_moe_lite", "solar_open", "exaone_moe"),
    *("axk1", "deepseek_v32", "glm_moe_dsa"),
)


def logits_of(model_type: str, hidden: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The router's logits from its input, as each router computes them."""
    if model_type in SIGMOID_GROUPED or model_type in ("deepseek_v2", "ernie4_5_moe"):
        return F.linear(hidden.float(), params["weight"].float())  # float32 routers
    if model_type == "hunyuan_v1_moe":
        return F.linear(hidden.float(), params["wg.weight"])
    if model_type in ("granitemoe", "granitemoeshared", "granitemoe_swa"):
        return F.linear(hidden, params["weight"]).float()
    return F.linear(hidden, params["weight"], params.get("bias"))


def _split(bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.where(torch.isinf(bias), 0.0, bias), torch.isneginf(bias), torch.isposinf(bias)


def _shifted(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The finite bias on the logits: its unit in every architecture."""
    return logits.float() + _split(bias)[0]


def _masked(scores: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    _, removed, forced = _split(bias)
    return scores.masked_fill(removed, -INF).masked_fill(forced, INF)


def _ranked(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _masked(_shifted(logits, bias), bias)


def _groups_chosen(config: Any, group_score: torch.Tensor, experts: int) -> torch.Tensor:
    per = experts // config.n_group
    chosen = torch.zeros_like(group_score, dtype=torch.bool)
    chosen.scatter_(-1, group_score.topk(config.topk_group, dim=-1).indices, True)
    return chosen.repeat_interleave(per, dim=-1)


def _as_dicts(indices: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor) -> list[dict[int, float]]:
    return [
        {int(e): float(w) for e, w, k in zip(i, ws, ks, strict=True) if k}
        for i, ws, ks in zip(indices.tolist(), weights.tolist(), keep.tolist(), strict=True)
    ]


def reference(
    config: Any, logits: torch.Tensor, bias: torch.Tensor, params: dict[str, torch.Tensor]
) -> list[dict[int, float]]:
    kind, k = config.model_type, config.num_experts_per_tok
    removed = torch.isneginf(bias)
    if kind in (
        "olmoe",
        "flex_olmo",
        "mixtral",
        "qwen2_moe",
        "qwen3_moe",
        "qwen3_next",
        "qwen3_5_moe_text",
        "hunyuan_v1_moe",
        "jamba",
        "mellum",
    ):
        # softmax over the experts; top-k of the probabilities (the biased ones for the choice).
        live = logits.float().masked_fill(removed, -INF)
        probs = live.softmax(-1)
        idx = _ranked(live, bias).topk(k, dim=-1).indices
        keep = ~removed[idx]
        w = probs.gather(-1, idx) * keep
        if kind in ("mixtral", "hunyuan_v1_moe", "qwen3_5_moe_text") or getattr(config, "norm_topk_prob", False):
            w = w / w.sum(-1, keepdim=True)
        return _as_dicts(idx, w, keep)
    if kind in ("gpt_oss", "granitemoe", "granitemoeshared", "granitemoe_swa"):
        # top-k of the raw logits (router bias included); softmax over the k chosen only.
        idx = _ranked(logits, bias).topk(k, dim=-1).indices
        keep = ~removed[idx]
        w = logits.gather(-1, idx).masked_fill(~keep, -INF).softmax(-1)
        return _as_dicts(idx, w, keep)
    if kind == "llama4_text":
        # top-k of the raw logits; weight sigmoid(logit).
        idx = _ranked(logits, bias).topk(k, dim=-1).indices
        return _as_dicts(idx, logits.gather(-1, idx).sigmoid(), ~removed[idx])
    if kind == "phimoe":
        # SparseMixer at inference, two rounds: pick the best remaining expert; its weight is its
        # softmax probability among the remaining experts within 2·jitter (relative) of its logit.
        eps = config.router_jitter_noise
        live = logits.masked_fill(removed, -INF)
        picks, weights = [], []
        for _ in range(k):
            ranked = _ranked(live, bias)
            for earlier in picks:
                ranked = ranked.scatter(-1, earlier, -INF)
            pick = ranked.argmax(-1, keepdim=True)
            top = logits.gather(-1, pick)
            near = (top - logits) / logits.abs().clamp(min=top) <= 2 * eps
            weights.append(live.masked_fill(~near, -INF).softmax(-1).gather(-1, pick))
            picks.append(pick)
            live = live.scatter(-1, pick, -INF)
        idx = torch.cat(picks, -1)
        return _as_dicts(idx, torch.cat(weights, -1), ~removed[idx])
    if kind in SIGMOID_GROUPED:
        # sigmoid scores; the choice ranks those of the biased logits plus e_score_correction_bias: groups by the sum of
        # their two best (a removed one counting 0), then top-k inside the chosen groups. Weights:
        # the plain sigmoid scores, renormalised (norm_topk_prob), times routed_scaling_factor.
        scores = logits.sigmoid()
        choice = _masked(_shifted(logits, bias).sigmoid() + params["e_score_correction_bias"], bias)
        per = logits.shape[-1] // config.n_group
        two = choice.view(len(choice), config.n_group, per).topk(2, dim=-1).values
        # A removed expert counts for nothing in its group's score (one kept expert: itself).
        two[..., 1] = torch.where(two[..., 1].isneginf() & ~two[..., 0].isneginf(), 0.0, two[..., 1])
        group_score = two.sum(-1)
        inside = _groups_chosen(config, group_score, logits.shape[-1])
        idx = choice.masked_fill(~inside, -INF).topk(k, dim=-1).indices
        keep = (inside & ~removed).gather(-1, idx)
        w = scores.gather(-1, idx) * keep
        if config.norm_topk_prob:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return _as_dicts(idx, w * config.routed_scaling_factor, keep)
    if kind == "minimax_m2":
        # sigmoid; the choice ranks the scores plus the block's correction bias (no groups);
        # weights: the plain scores of the chosen, renormalised over them.
        scores = logits.float().sigmoid()
        choice = _masked(_shifted(logits, bias).sigmoid() + params["e_score_correction_bias"], bias)
        idx = choice.topk(k, dim=-1).indices
        keep = ~removed[idx]
        w = scores.gather(-1, idx) * keep
        return _as_dicts(idx, w / w.sum(-1, keepdim=True), keep)
    if kind == "ernie4_5_moe":
        # softmax; the choice ranks the probabilities plus the correction (moe_statics); weights:
        # the plain probabilities, renormalised over the chosen (sum clamped at moe_norm_min).
        live = logits.float().masked_fill(removed, -INF)
        probs = live.softmax(-1)
        correction = params["moe_statics.e_score_correction_bias"].squeeze(0)
        idx = _masked(_shifted(live, bias).softmax(-1) + correction, bias).topk(k, dim=-1).indices
        keep = ~removed[idx]
        w = probs.gather(-1, idx) * keep
        return _as_dicts(idx, w / w.sum(-1, keepdim=True).clamp(min=config.moe_norm_min), keep)
    if kind == "deepseek_v2":
        # softmax; groups by their best expert (group_limited_greedy), top-k inside; weights: the
        # probabilities times routed_scaling_factor, never renormalised.
        live = logits.masked_fill(removed, -INF)
        probs = live.softmax(-1)
        choice = _ranked(live, bias)
        per = logits.shape[-1] // config.n_group
        inside = _groups_chosen(config, choice.view(len(choice), config.n_group, per).max(-1).values, logits.shape[-1])
        idx = choice.masked_fill(~inside, -INF).topk(k, dim=-1).indices
        keep = (inside & ~removed).gather(-1, idx)
        return _as_dicts(idx, probs.gather(-1, idx) * config.routed_scaling_factor, keep)
    raise AssertionError(f"no reference rule for {kind}")
