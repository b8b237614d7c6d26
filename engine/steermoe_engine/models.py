"""Loading a model, its tokenizer and its MoE adapter."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .adapters import MoeAdapter, check_supported
from .errors import EngineError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: MoeAdapter
    source: str
    device: torch.device


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device '{device}' was asked for, but this machine has no CUDA device")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bf16 matmuls on CPU are slower than fp32 and lose precision: use fp32 there.
    return torch.float32


def _check_source(source: str) -> None:
    path = Path(source)
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if not looks_local:
        return  # a hub id: from_pretrained downloads it where the network allows
    if not path.exists():
        raise EngineError(f"model folder {source} does not exist")
    if not path.is_dir():
        raise EngineError(f"model path {source} is a file; give the folder holding config.json")
    if not os.access(path, os.R_OK | os.X_OK):
        raise EngineError(f"model folder {source} is not readable")
    if not (path / "config.json").is_file():
        raise EngineError(f"{source} is not a model folder: it has no config.json")


def _config(source: str, trust_remote_code: bool) -> Any:
    _check_source(source)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot read the model config of {source}: {str(err).splitlines()[0]}") from err
    check_supported(config)
    return config


def load(source: str, dtype: str, device: str, trust_remote_code: bool) -> Loaded:
    if device == "meta":
        return _load_shapes(source, trust_remote_code)
    _config(source, trust_remote_code)
    target = resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype, target), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot load the model in {source}: {str(err).splitlines()[0]}") from err
    model.to(target).eval()
    return Loaded(model, tokenizer, MoeAdapter(model), source, target)


def _load_shapes(source: str, trust_remote_code: bool) -> Loaded:
    """The tokenizer and a weightless model (device "meta": shapes, no memory, nothing read but
    config.json): enough to render prompts, decode ids and know every routing count, for when an
    inference server does the generating."""
    config = _config(source, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot load the tokenizer in {source}: {str(err).splitlines()[0]}") from err
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    # End-of-sequence ids come from generation_config.json, as when the weights are loaded.
    with contextlib.suppress(OSError):
        model.generation_config = GenerationConfig.from_pretrained(source)
    return Loaded(model.eval(), tokenizer, MoeAdapter(model), source, torch.device("meta"))


def describe(loaded: Loaded) -> dict[str, Any]:
    """What `steermoe inspect` shows."""
    model, adapter = loaded.model, loaded.adapter
    return {
        "source": loaded.source,
        "model_type": adapter.model_type,
        "architecture": adapter.architecture.name,
        "class_name": type(model).__name__,
        "num_layers": adapter.num_layers,
        "moe_layers": adapter.moe_layer_indices,
        "num_experts": adapter.num_experts,
        "top_k": adapter.top_k,
        "normalize_topk": adapter.normalize_topk,
        "routing_family": adapter.family.name,
        "shared_experts": {str(k): v for k, v in adapter.shared_experts().items()},
        "hidden_size": int(model.config.hidden_size),
        "vocab_size": int(model.config.vocab_size),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(loaded.device),
        "parameters": adapter.parameter_counts(model),
        "chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
    }
