"""The engine's half of generation on an inference server (vLLM, SGLang): the client sends the
server token ids rendered here, with the model's own chat template, and hands back the ids it
generated and the expert ids it routed them to; results and shards are then made by the same code
as for local generation. Nothing here needs the weights (models.load with device "meta")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import EngineError
from .generation import Messages, _id_array, chat_ids, generated_sample, replay_ids
from .models import Loaded
from .routing import PARTS, RoutedParts, Shard, write_shards


def render(loaded: Loaded, conversations: list[Messages], replay: bool) -> dict[str, Any]:
    """Prompt ids (generation), or prompt and whole-conversation ids (replay)."""
    if not replay:
        return {"prompts": [_id_array(chat_ids(loaded, m, add_generation_prompt=True)) for m in conversations]}
    prompts, fulls = replay_ids(loaded, conversations)
    return {"prompts": [_id_array(p) for p in prompts], "fulls": [_id_array(f) for f in fulls]}


def _expert_tensor(ids: np.ndarray) -> torch.Tensor:
    # As the routing recorder holds them: uint8, or int16 past 256 experts (stored as uint16).
    return torch.from_numpy(ids.view(np.int16) if ids.dtype == np.uint16 else ids)


def record(
    loaded: Loaded, samples: list[dict[str, Any]], max_new_tokens: int | None, shards: list[Shard]
) -> list[dict[str, Any]]:
    """Each sample: prompt_ids, generated_ids and, when there are shards to write, per part the
    [tokens, moe_layers, top_k] expert ids the server routed them to. `max_new_tokens` is the
    generation's (None: a replay)."""
    results: list[dict[str, Any]] = []
    routing: list[RoutedParts] = []
    layers, top_k = len(loaded.adapter.layers), loaded.adapter.top_k
    for i, sample in enumerate(samples):
        prompt, generated = sample["prompt_ids"].tolist(), sample["generated_ids"].tolist()
        result = generated_sample(loaded, prompt, generated)
        if max_new_tokens is not None and len(generated) < max_new_tokens and result["finish_reason"] != "eos":
            raise EngineError(
                f"sample {i}: the server stopped after {len(generated)} of {max_new_tokens} tokens at token "
                f"{generated[-1] if generated else None}, which {loaded.source} does not end sequences with: "
                "the server's tokenizer or generation config is not this model's"
            )
        results.append(result)
        if not shards:
            continue
        for part, tokens in (("prompt", len(prompt)), ("generation", len(generated))):
            if sample[part].shape != (tokens, layers, top_k):
                shape = list(sample[part].shape)
                raise EngineError(f"sample {i}: {part} routing has shape {shape}, not [{tokens}, {layers}, {top_k}]")
        routing.append({part: (_expert_tensor(sample[part]), None) for part in PARTS})
    if shards:
        write_shards(loaded.adapter, shards, routing)
    return results
