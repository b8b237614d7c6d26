"""Batched chat generation and teacher-forced replay, both recording routing.

Sequences are left-padded so that every row's next token sits in the last column. Padding and
any position after a row's end-of-sequence token are dropped before results leave the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from .adapters import decoder
from .control import LayerControl, RouterControl
from .errors import EngineError, first_line
from .models import Loaded
from .routing import RoutedParts, RoutingRecorder, Shard, write_shards

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float


def sample_ids(ids: list[str] | None, conversations: list[Messages]) -> list[str]:
    """The caller's ids for its conversations (records in its files), else their positions."""
    return ids if ids is not None else [str(i) for i in range(len(conversations))]


@contextmanager
def naming(sample_id: str) -> Iterator[None]:
    """Failures while one conversation is rendered and tokenized name it by its sample id: the chat
    template or the tokenizer rejecting it is a problem with that input, not with the engine."""
    try:
        yield
    except EngineError as err:
        raise EngineError(f"sample {sample_id}: {err}") from err
    except Exception as err:  # templates and tokenizers raise many types
        raise EngineError(
            f"sample {sample_id} field messages: the model's chat template or tokenizer rejects it "
            f"({type(err).__name__}: {first_line(err)})"
        ) from err


def chat_ids(loaded: Loaded, messages: Messages, add_generation_prompt: bool) -> list[int]:
    tokenizer = loaded.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise EngineError(f"the tokenizer of {loaded.source} has no chat template")
    text = cast(
        str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    )
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        attention_mask[i, width - len(row) :] = 1
    return input_ids.to(device), attention_mask.to(device)


class _Reserved(DynamicLayer):
    """A DynamicLayer whose keys and values live in buffers sized for the whole generation: a
    decoding step writes one column instead of copying the whole cache (DynamicLayer's torch.cat,
    which at a 64-row batch moves more bytes per step than the expert weights). Attention reads
    a view of the filled part: the same values as DynamicLayer's, so the same results."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.filled = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.key_buffer = key_states.new_empty(*key_states.shape[:2], self.capacity, key_states.shape[3])
        self.value_buffer = value_states.new_empty(*value_states.shape[:2], self.capacity, value_states.shape[3])

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, self.filled = self.filled, self.filled + key_states.shape[-2]
        self.key_buffer[:, :, start : self.filled] = key_states
        self.value_buffer[:, :, start : self.filled] = value_states
        return self._views()

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys, self.values = self.key_buffer[:, :, : self.filled], self.value_buffer[:, :, : self.filled]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self._views()


def _reserved_cache(model: PreTrainedModel, capacity: int) -> DynamicCache:
    """The model's own cache layout (sliding-window layers stay as they are) with every plain
    layer reserved for `capacity` tokens."""
    cache = DynamicCache(config=model.config)
    cache.layers = [_Reserved(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _sample(logits: torch.Tensor, sampling: Sampling, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row; each row draws from its own generator, so a sample's text does not
    depend on which other samples share its compute batch."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        outside = _cumulative(sorted_probs) - sorted_probs >= sampling.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)])


def _cumulative(probs: torch.Tensor) -> torch.Tensor:
    """Running sums along the last dimension. CUDA adds floats in an order that varies from run to
    run (torch has no deterministic float cumsum there), so with --deterministic they are taken on
    the host."""
    if probs.device.type == "cuda" and torch.are_deterministic_algorithms_enabled():
        return probs.cpu().cumsum(dim=-1).to(probs.device)
    return probs.cumsum(dim=-1)


def _pad_id(loaded: Loaded) -> int:
    pad = loaded.tokenizer.pad_token_id
    return pad if isinstance(pad, int) else min(_eos_ids(loaded))


def _id_array(ids: torch.Tensor | list[int]) -> np.ndarray:
    return np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids, dtype=np.int32)


def generate(
    loaded: Loaded,
    conversations: list[Messages],
    seeds: list[int],
    sampling: Sampling,
    shards: list[Shard],
    steer: dict[int, LayerControl] | None = None,
    ids: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Routing is recorded when `shards` says where to write it. `steer` changes routing during
    generation (RouterControl); what is recorded is what the steered layers really used."""
    prompts = []
    for sample_id, messages in zip(sample_ids(ids, conversations), conversations, strict=True):
        with naming(sample_id):
            prompts.append(chat_ids(loaded, messages, add_generation_prompt=True))
    results, routing = generate_ids(loaded, prompts, seeds, sampling, bool(shards), steer)
    if shards:
        write_shards(loaded.adapter, shards, routing)
    return results


@torch.inference_mode()
def generate_ids(
    loaded: Loaded,
    prompts: list[list[int]],
    seeds: list[int],
    sampling: Sampling,
    record: bool,
    steer: dict[int, LayerControl] | None = None,
) -> tuple[list[dict[str, Any]], list[RoutedParts]]:
    """Generation from prompt token ids: one result per prompt and, when `record`, its routing
    (every prompt token and every generated token, the last one included)."""
    model, device = loaded.model, loaded.device
    eos_ids = torch.tensor(sorted(_eos_ids(loaded)), device=device)
    pad_id = _pad_id(loaded)
    input_ids, attention_mask = _left_pad(prompts, pad_id, device)
    batch, width = input_ids.shape
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    cache = _reserved_cache(model, width + sampling.max_new_tokens)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    steps: list[torch.Tensor] = []
    # The rows still in the batch (indices into `prompts`), and those of each decoding forward.
    rows = torch.arange(batch, device=device)
    step_rows: list[torch.Tensor] = []
    # Linear-attention (recurrent) layers of hybrid models cannot drop rows: theirs stay.
    rows_can_leave = all(isinstance(layer, DynamicLayer) for layer in cache.layers)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits; reads the current mask and positions, extends the cache."""
        return model(input_ids=ids, use_cache=True, logits_to_keep=1, **state()).logits[:, -1]

    def route(ids: torch.Tensor) -> None:
        """The decoder alone: the routing of the last token needs no logits."""
        decoder(model)(input_ids=ids, use_cache=True, **state())

    def state() -> dict[str, Any]:
        return {"attention_mask": attention_mask, "position_ids": position_ids, "past_key_values": cache}

    with (
        RouterControl(loaded.adapter, steer or {}),
        RoutingRecorder(loaded.adapter, enabled=record) as recorder,
        loaded.phases() as use,
    ):
        use("prefill")
        logits = forward(input_ids)
        use("decode")
        for step in range(sampling.max_new_tokens):
            ended = done[rows]
            token = torch.where(ended, pad_id, _sample(logits, sampling, [generators[i] for i in rows.tolist()]))
            steps.append(torch.full((batch,), pad_id, device=device).index_copy_(0, rows, token))
            lengths[rows] += (~ended).long()
            done[rows] |= torch.isin(token, eos_ids)
            last = step == sampling.max_new_tokens - 1 or bool(done.all())
            if last and not record:
                break
            # The forward of a token is where its routing happens, so the last token gets one too.
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
            position_ids = position_ids[:, -1:] + 1
            step_rows.append(rows)
            if last:
                route(token[:, None])
                break
            logits = forward(token[:, None])
            # Rows whose last token has had its forward leave the batch once they are a quarter of
            # it: leaving copies the whole cache, too much to do for each row as it ends.
            ended = done[rows]
            if rows_can_leave and int(ended.sum()) * 4 >= len(rows):
                keep = (~ended).nonzero().squeeze(1)
                rows, logits = rows[keep], logits[keep]
                attention_mask, position_ids = attention_mask[keep], position_ids[keep]
                cache.batch_select_indices(keep)

    generated = torch.stack(steps, dim=1).cpu()
    results = [
        generated_sample(loaded, prompt, generated[row, : int(lengths[row])].tolist())
        for row, prompt in enumerate(prompts)
    ]
    if not record:
        return results, []
    layers, k = len(loaded.adapter.layers), loaded.adapter.top_k
    prefill_ids = recorder.ids[0].view(batch, width, layers, k).cpu()
    prefill_w = recorder.weights[0].view(batch, width, layers, k).cpu()
    # Decoding forwards see one token per row still in the batch: [batch, steps, layers, k].
    step_ids = recorder.ids[0].new_zeros(batch, len(step_rows), layers, k)
    step_w = recorder.weights[0].new_zeros(batch, len(step_rows), layers, k)
    for i, (present, ids, weights) in enumerate(zip(step_rows, recorder.ids[1:], recorder.weights[1:], strict=True)):
        step_ids[present, i] = ids
        step_w[present, i] = weights
    step_ids, step_w = step_ids.cpu(), step_w.cpu()
    routing: list[RoutedParts] = []
    for row, prompt in enumerate(prompts):
        start, n = width - len(prompt), int(lengths[row])
        routing.append(
            {
                "prompt": (prefill_ids[row, start:], prefill_w[row, start:]),
                "generation": (step_ids[row, :n], step_w[row, :n]),
            }
        )
    return results, routing


def generated_sample(loaded: Loaded, prompt: list[int], generated: list[int]) -> dict[str, Any]:
    """A generation result: ids, the text without the end-of-sequence token, why it ended."""
    finished = bool(generated) and generated[-1] in _eos_ids(loaded)
    text_ids = generated[:-1] if finished else generated
    return {
        "prompt_ids": _id_array(prompt),
        "generated_ids": _id_array(generated),
        "text": loaded.tokenizer.decode(text_ids, skip_special_tokens=True),
        "finish_reason": "eos" if finished else "length",
    }


def replay_ids(
    loaded: Loaded, conversations: list[Messages], ids: list[str] | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """Per conversation ending in an assistant message: the prompt's ids and the whole
    conversation's, the prompt being a prefix of it."""
    prompts, fulls = [], []
    for sample_id, messages in zip(sample_ids(ids, conversations), conversations, strict=True):
        with naming(sample_id):
            if messages[-1]["role"] != "assistant":
                raise EngineError("does not end with an assistant message to replay")
            prompt = chat_ids(loaded, messages[:-1], add_generation_prompt=True)
            full = chat_ids(loaded, messages, add_generation_prompt=False)
            if full[: len(prompt)] != prompt:
                raise EngineError(
                    "the chat template does not render the prompt as a prefix of the full "
                    "conversation, so response tokens cannot be told apart"
                )
        prompts.append(prompt)
        fulls.append(full)
    return prompts, fulls


@torch.inference_mode()
def forced_routing(loaded: Loaded, prompts: list[list[int]], fulls: list[list[int]]) -> list[RoutedParts]:
    """The routing of one teacher-forced forward over each whole sequence, its prompt (a prefix
    of it) apart from the rest."""
    input_ids, attention_mask = _left_pad(fulls, _pad_id(loaded), loaded.device)
    batch, width = input_ids.shape
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with RoutingRecorder(loaded.adapter) as recorder, loaded.phases() as use:
        use("prefill")
        loaded.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=1)
    experts = recorder.ids[0].view(batch, width, len(loaded.adapter.layers), -1).cpu()
    weights = recorder.weights[0].view(batch, width, len(loaded.adapter.layers), -1).cpu()
    routing: list[RoutedParts] = []
    for row, (prompt, full) in enumerate(zip(prompts, fulls, strict=True)):
        start, split = width - len(full), width - len(full) + len(prompt)
        routing.append(
            {
                "prompt": (experts[row, start:split], weights[row, start:split]),
                "generation": (experts[row, split:], weights[row, split:]),
            }
        )
    return routing


def replay(
    loaded: Loaded, conversations: list[Messages], shards: list[Shard], ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """Teacher-forced pass over conversations ending in an assistant message: records the routing
    of the prompt and of the response tokens into `shards` without generating."""
    prompts, fulls = replay_ids(loaded, conversations, ids)
    write_shards(loaded.adapter, shards, forced_routing(loaded, prompts, fulls))
    return [
        {
            "prompt_ids": _id_array(prompt),
            "generated_ids": _id_array(full[len(prompt) :]),
            "text": messages[-1]["content"],
            "finish_reason": "replay",
        }
        for prompt, full, messages in zip(prompts, fulls, conversations, strict=True)
    ]


def _eos_ids(loaded: Loaded) -> set[int]:
    ids: set[int] = set()
    for source in (loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list):
            ids.update(int(token) for token in source)
    if not ids:
        raise EngineError(f"{loaded.source} defines no end-of-sequence token")
    return ids
