"""Writing model folders, checkpoints and expert deltas: whole or not at all (staging + rename)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .adapters import EXPERT_PARAMS
from .errors import EngineError
from .models import Loaded

DELTA_FORMAT = "steermoe.expert_delta.v1"


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str) -> None:
    """A folder that transformers' from_pretrained loads: config, safetensors, tokenizer, template.
    Built beside the target and renamed, so an interrupted save leaves no half-written model."""
    path = Path(out)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)


def save_tensors(tensors: dict[str, torch.Tensor], out: str, metadata: dict[str, str] | None = None) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, out)


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise EngineError(f"{path} does not exist")
    return load_file(path)


def delta_key(layer: int, expert: int, name: str) -> str:
    return f"layers.{layer}.experts.{expert}.{name}"


def expert_delta(loaded: Loaded, experts: dict[int, list[int]]) -> dict[str, torch.Tensor]:
    """The trained experts' weights, one tensor per expert and projection."""
    by_index = {layer.index: layer for layer in loaded.adapter.layers}
    return {
        delta_key(index, e, name): getattr(by_index[index].experts, name)[e]
        for index, chosen in sorted(experts.items())
        for e in chosen
        for name in EXPERT_PARAMS
    }


@torch.no_grad()
def apply_delta(loaded: Loaded, tensors: dict[str, torch.Tensor]) -> dict[int, list[int]]:
    """Write a delta's expert weights into the loaded model; returns the experts it touched."""
    by_index = {layer.index: layer for layer in loaded.adapter.layers}
    touched: dict[int, list[int]] = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if len(parts) != 5 or parts[0] != "layers" or parts[2] != "experts" or parts[4] not in EXPERT_PARAMS:
            raise EngineError(f"the delta holds an unexpected tensor '{key}'")
        index, expert, name = int(parts[1]), int(parts[3]), parts[4]
        layer = by_index.get(index)
        if layer is None or not 0 <= expert < loaded.adapter.num_experts:
            raise EngineError(f"the delta names layer {index} expert {expert}, which this model does not have")
        target = getattr(layer.experts, name)
        if target[expert].shape != value.shape:
            raise EngineError(
                f"the delta's {key} has shape {list(value.shape)}, the model's is {list(target[expert].shape)}"
            )
        target[expert].copy_(value.to(target.dtype))
        touched.setdefault(index, []).append(expert)
    return {k: sorted(set(v)) for k, v in touched.items()}
