"""MoE architecture adapters: where a model keeps its routers and experts.

In transformers 5, every supported MoE layer is a block holding a router module and an `experts`
module whose parameters are fused over experts ([num_experts, ...], e.g. gate_up_proj and
down_proj). How the router selects differs by family (families/); which layers are sparse differs
by architecture, so MoE layers are found by looking, not from the config. Shared experts (Qwen2-MoE,
Qwen3-Next, DeepSeek, GLM, Llama 4) run on every token beside the router: they are named as such
and never counted among the routed experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from transformers import PreTrainedModel

from .errors import EngineError
from .families import ARCHITECTURES, Architecture


@dataclass(frozen=True)
class MoeLayer:
    index: int
    block: nn.Module
    router: nn.Module
    experts: nn.Module
    shared: dict[str, nn.Module]  # the always-on experts (and their gate), by attribute name


def _names_experts(settings: dict[str, Any]) -> bool:
    """Whether any setting, nested ones included (DBRX keeps its MoE settings in ffn_config), is
    about experts."""
    return any("expert" in str(key) or (isinstance(v, dict) and _names_experts(v)) for key, v in settings.items())


def check_supported(config: Any) -> Architecture:
    """Refuse dense and unknown models from their config alone, before any weight is read."""
    model_type = getattr(config, "model_type", "?")
    arch = ARCHITECTURES.get(model_type)
    if arch is not None:
        return arch
    supported = ", ".join(sorted(ARCHITECTURES))
    if not _names_experts(config.to_dict()):
        raise EngineError(
            f"model type '{model_type}' is a dense model (its config has no experts): steermoe "
            f"analyses Mixture-of-Experts models; supported types: {supported}"
        )
    raise EngineError(
        f"MoE model type '{model_type}' has no steermoe routing adapter (steermoe_engine/families/); "
        f"supported types: {supported}"
    )


def decoder(model: PreTrainedModel) -> nn.Module:
    """The decoder stack (embeddings and layers, no LM head). Llama4ForCausalLM names its base
    model `language_model` for get_decoder() but keeps it in `model`, so that lookup falls short."""
    found = model.get_decoder()
    return found if hasattr(found, "layers") else cast(nn.Module, model.model)


# transformers types what its accessors return as nn.Module (or Tensor | Module): these name what
# every supported model holds there.
def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    return cast(nn.ModuleList, decoder(model).layers)


def input_embeddings(model: PreTrainedModel) -> nn.Embedding:
    return cast(nn.Embedding, model.get_input_embeddings())


def lm_head(model: PreTrainedModel) -> nn.Linear:
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise EngineError(f"model type '{model.config.model_type}' has no linear LM head to train through")
    return head


class MoeAdapter:
    """The routers and experts of one loaded model."""

    def __init__(self, model: PreTrainedModel) -> None:
        config = model.config
        self.model_type: str = config.model_type
        self.architecture = check_supported(config)
        self.family = self.architecture.family
        layers = decoder_layers(model)
        self.num_layers: int = len(layers)
        self.layers: list[MoeLayer] = []
        for i, layer in enumerate(layers):
            block = next((getattr(layer, a) for a in self.family.block_attrs if hasattr(layer, a)), None)
            router = getattr(block, self.family.router_attr, None)
            if block is None or router is None or not hasattr(block, "experts"):
                continue
            # Shared experts sit in the MoE block, or beside it in the decoder layer (Granite-MoE-Shared).
            shared = {
                a: getattr(owner, a)
                for owner in (block, layer)
                for a in self.family.shared_attrs
                if getattr(owner, a, None) is not None
            }
            self.layers.append(MoeLayer(i, block, router, block.experts, shared))
        if not self.layers:
            raise EngineError(f"model type '{self.model_type}' was built with no MoE layers (num_experts = 0?)")
        first = self.layers[0].router
        self.num_experts: int = self.family.num_experts(first)
        self.top_k: int = self.family.top_k(first)
        self.normalize_topk: bool = self.family.normalizes(first)
        self.expert_params: tuple[str, ...] = self.family.expert_params

    @property
    def moe_layer_indices(self) -> list[int]:
        return [layer.index for layer in self.layers]

    def expert_parameters(self, layer: MoeLayer, expert: int) -> dict[str, torch.Tensor]:
        """Views of one expert's slices of the fused tensors (writes go through to the model)."""
        return {name: getattr(layer.experts, name)[expert] for name in self.expert_params}

    def parameter_counts(self, model: nn.Module) -> dict[str, int]:
        """Routed experts, routers and shared experts by module, so naming differences between
        architectures do not matter; shared experts count as `other`, never as experts."""
        owner: dict[int, str] = {}
        for layer in self.layers:
            for kind, modules in (("routers", (layer.router,)), ("experts", (layer.experts,))):
                for module in modules:
                    for p in module.parameters():
                        owner[id(p)] = kind
        counts = {"total": 0, "attention": 0, "routers": 0, "experts": 0}
        for name, param in model.named_parameters():
            n = param.numel()
            counts["total"] += n
            kind = owner.get(id(param))
            if kind is not None:
                counts[kind] += n
            elif ".self_attn." in name or ".linear_attn." in name:
                counts["attention"] += n
        counts["one_expert"] = sum(p.numel() for p in self.expert_parameters(self.layers[0], 0).values())
        counts["other"] = counts["total"] - counts["attention"] - counts["routers"] - counts["experts"]
        return counts

    def shared_experts(self) -> dict[int, list[str]]:
        """Per MoE layer, the modules of its shared (always-on, unrouted) experts."""
        return {layer.index: list(layer.shared) for layer in self.layers if layer.shared}
