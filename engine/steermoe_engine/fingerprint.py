"""What a run needs to know about the model it was made with: a fingerprint of the model folder
that changes when the weights, config or tokenizer do, cheap enough to take on every load, and the
limits a prompt must fit (context length, memory per token)."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

# Files up to this size are hashed whole; larger ones (weights in any format) by their
# safetensors header and sampled content, so a load never reads gigabytes twice.
WHOLE_HASH_BYTES = 16 << 20
SAMPLES = 16
SAMPLE_BYTES = 64 << 10


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sampled(path: Path, size: int) -> str:
    """The safetensors header (names, shapes, offsets) and evenly spread slices of the data: a
    reseeded model of the same shape has the same header, so the data must be looked at too."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        start = 0
        if path.suffix == ".safetensors":
            (header_len,) = struct.unpack("<Q", f.read(8))
            start = 8 + header_len
            if start > size:
                return f"unreadable header ({size} bytes)"
            digest.update(f.read(header_len))
        span = max(size - start - SAMPLE_BYTES, 0)
        for i in range(SAMPLES):
            f.seek(start + span * i // (SAMPLES - 1))
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def model_fingerprint(source: str) -> dict[str, str]:
    """File name -> "size:digest" for every file of the model folder (weights, config, tokenizer,
    chat template). Files are read whole when small, large ones by header and sampled content."""
    folder = _model_folder(source)
    out: dict[str, str] = {}
    if folder is None:
        return out
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        size = path.stat().st_size
        out[path.name] = f"{size}:{_sampled(path, size) if size > WHOLE_HASH_BYTES else _sha256(path)}"
    return out


def _model_folder(source: str) -> Path | None:
    """The folder the model was read from: the source itself, or the hub cache's snapshot of it."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not in the cache in a form we can find: no fingerprint to take
        return None


def model_limits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What a prompt must fit: the context, and what the memory estimate needs per token."""
    # Multimodal configs keep the language model's settings in a sub-config.
    text = model.config.get_text_config(decoder=True)
    return {
        "context": _context_length(text, tokenizer),
        "kv_bytes_per_token": _kv_bytes_per_token(text, next(model.parameters()).element_size()),
        "attention_heads": int(text.num_attention_heads),
        "attention_implementation": str(model.config._attn_implementation),
    }


def _context_length(text: PretrainedConfig, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """Positions the model was built for: the config's, else the tokenizer's (HF marks "no limit"
    with a huge number there)."""
    positions = getattr(text, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        return positions
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**9 else None


def _kv_bytes_per_token(text: PretrainedConfig, element_size: int) -> int:
    """Bytes the KV cache holds per token of one sequence: keys and values of every layer."""
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    # Multi-head latent attention (DeepSeek): transformers caches full keys and values per head,
    # whose widths differ.
    v_head_dim = getattr(text, "v_head_dim", None)
    if v_head_dim:
        per_layer = kv_heads * (int(text.qk_nope_head_dim) + int(text.qk_rope_head_dim) + int(v_head_dim))
    else:
        per_layer = 2 * kv_heads * head_dim
    return int(text.num_hidden_layers) * per_layer * element_size


def free_memory(device: Any) -> int | None:
    """Bytes free on the device now: the GPU's free memory, or the host's available RAM."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
