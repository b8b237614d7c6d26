"""Writing model folders, checkpoints and expert deltas: whole or not at all (staging + rename)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import EngineError
from .models import Loaded, check_safetensors


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: str,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """A folder that transformers' from_pretrained loads: config, safetensors, tokenizer, template.
    `state` gives the weights when the model holds only a shard of them. Built beside the target
    and renamed, so an interrupted save leaves no half-written model."""
    path = Path(out)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, state_dict=state)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)


def sort_metadata(path: str | Path) -> None:
    """safetensors writes its metadata in a per-process random order (a Rust HashMap); sorted in
    place, the same tensors give the same bytes whichever process wrote them. The header is compact
    JSON either way, so it keeps its length and the tensors stay where they are."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:
            raise EngineError(f"{path}: the sorted safetensors header is longer than the written one")
        f.seek(8)
        f.write(text + b" " * (size - len(text)))


def save_tensors(tensors: dict[str, torch.Tensor], out: str, metadata: dict[str, str] | None = None) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    sort_metadata(tmp)
    os.replace(tmp, out)


def load_tensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a safetensors file and its metadata."""
    check_safetensors(path)
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    return load_file(path), metadata


def delta_key(layer: int, expert: int, name: str) -> str:
    return f"layers.{layer}.experts.{expert}.{name}"


def expert_delta(loaded: Loaded, experts: dict[int, list[int]]) -> dict[str, torch.Tensor]:
    """The trained experts' weights, one tensor per expert and projection. A fused tensor sharded
    over ranks is gathered whole first (on every rank: it is a collective)."""
    by_index = {layer.index: layer for layer in loaded.adapter.layers}
    tensors = {}
    for index, chosen in sorted(experts.items()):
        for name in loaded.adapter.expert_params:
            fused = getattr(by_index[index].experts, name)
            whole = fused.full_tensor() if isinstance(fused, DTensor) else fused
            tensors.update({delta_key(index, e, name): whole[e] for e in chosen})
    return tensors


@torch.no_grad()
def apply_delta(loaded: Loaded, tensors: dict[str, torch.Tensor]) -> dict[int, list[int]]:
    """Write a delta's expert weights into the loaded model; returns the experts it touched. Its
    names are checked against the model on the TypeScript side; shapes only the engine knows."""
    by_index = {layer.index: layer for layer in loaded.adapter.layers}
    writes = []
    # Every tensor is checked before the first is written: a refused delta leaves the model as it was.
    for key, value in tensors.items():
        _, layer, _, expert, name = key.split(".")
        index, e = int(layer), int(expert)
        target = getattr(by_index[index].experts, name)
        if target[e].shape != value.shape:
            raise EngineError(
                f"the delta's {key} has shape {list(value.shape)}, the model's is {list(target[e].shape)}"
            )
        if not bool(torch.isfinite(value).all()):
            raise EngineError(f"the delta's {key} holds NaN or infinite values: not weights to apply")
        writes.append((index, e, target, value))
    touched: dict[int, list[int]] = {}
    for index, e, target, value in writes:
        target[e].copy_(value.to(target.dtype))
        touched.setdefault(index, []).append(e)
    return {k: sorted(set(v)) for k, v in touched.items()}
