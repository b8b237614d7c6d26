"""MoE architecture adapters: where a model keeps its routers and experts.

In transformers 5, OLMoE, Mixtral, Qwen2-MoE and Qwen3-MoE share one layout: a decoder layer's
`mlp` is a sparse block whose `gate` is a top-k router returning (logits, scores, indices) and
whose `experts` hold every expert fused in 3D parameters:
  gate_up_proj [num_experts, 2 * ffn, hidden], down_proj [num_experts, hidden, ffn].
They differ in which layers are sparse and whether the top-k weights are renormalised, which is
what an adapter records. Qwen2-MoE's shared expert is not routed, so it is not an expert here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import EngineError

EXPERT_PARAMS = ("gate_up_proj", "down_proj")


@dataclass(frozen=True)
class MoeLayer:
    index: int
    router: nn.Module
    experts: nn.Module


@dataclass(frozen=True)
class Architecture:
    name: str
    # Mixtral always renormalises its top-k weights; the others follow config.norm_topk_prob.
    always_normalize: bool


ARCHITECTURES = {
    "olmoe": Architecture("OLMoE", always_normalize=False),
    "mixtral": Architecture("Mixtral", always_normalize=True),
    "qwen2_moe": Architecture("Qwen2-MoE", always_normalize=False),
    "qwen3_moe": Architecture("Qwen3-MoE", always_normalize=False),
}


def check_supported(config: Any) -> Architecture:
    """Refuse dense and unknown models from their config alone, before any weight is read."""
    model_type = getattr(config, "model_type", "?")
    arch = ARCHITECTURES.get(model_type)
    if arch is not None:
        return arch
    supported = ", ".join(sorted(ARCHITECTURES))
    if not any("expert" in key for key in config.to_dict()):
        raise EngineError(
            f"model type '{model_type}' is a dense model (its config has no experts): steermoe "
            f"analyses Mixture-of-Experts models; supported types: {supported}"
        )
    raise EngineError(f"MoE model type '{model_type}' has no steermoe adapter; supported types: {supported}")


class MoeAdapter:
    """The routers and experts of one loaded model."""

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        self.model_type: str = config.model_type
        self.architecture = check_supported(config)
        decoder_layers = model.get_decoder().layers
        self.num_layers: int = len(decoder_layers)
        self.layers: list[MoeLayer] = [
            MoeLayer(i, layer.mlp.gate, layer.mlp.experts)
            for i, layer in enumerate(decoder_layers)
            if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")
        ]
        if not self.layers:
            raise EngineError(f"model type '{self.model_type}' was built with no MoE layers (num_experts = 0?)")
        first = self.layers[0].router
        self.num_experts: int = int(first.num_experts)
        self.top_k: int = int(first.top_k)
        self.normalize_topk: bool = self.architecture.always_normalize or bool(getattr(first, "norm_topk_prob", False))

    @property
    def moe_layer_indices(self) -> list[int]:
        return [layer.index for layer in self.layers]

    def expert_parameters(self, layer: MoeLayer, expert: int) -> dict[str, torch.Tensor]:
        """Views of one expert's slices of the fused tensors (writes go through to the model)."""
        return {name: getattr(layer.experts, name)[expert] for name in EXPERT_PARAMS}

    def parameter_counts(self, model: nn.Module) -> dict[str, int]:
        counts = {"total": 0, "attention": 0, "routers": 0, "experts": 0}
        for name, param in model.named_parameters():
            n = param.numel()
            counts["total"] += n
            if ".self_attn." in name:
                counts["attention"] += n
            elif ".mlp.gate." in name:
                counts["routers"] += n
            elif ".mlp.experts." in name:
                counts["experts"] += n
        layer = self.layers[0]
        counts["one_expert"] = sum(p.numel() for p in self.expert_parameters(layer, 0).values())
        counts["other"] = counts["total"] - counts["attention"] - counts["routers"] - counts["experts"]
        return counts
