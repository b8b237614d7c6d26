"""Recording the routing of a model you hold, call by call, with the engine's recorder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from steermoe_engine.adapters import MoeAdapter
from steermoe_engine.routing import RoutedParts, RoutingRecorder, Shard, write_shards


def _ids(tensor: torch.Tensor) -> np.ndarray:
    # The recorder keeps ids as int16 past 256 experts (torch's widest small int): they are uint16.
    array = tensor.contiguous().numpy()
    return array.view(np.uint16) if array.dtype == np.int16 else array


@dataclass(frozen=True)
class SampleRouting:
    """One sequence of one call: expert ids (uint8, uint16 past 256 experts) and router weights
    (float32), each [tokens, moe_layers, top_k]. Padding is dropped. `generation` is empty for a
    forward call; for `generate` it holds every generated token that went through the model, which
    is all but the last one (transformers stops without a forward of the token it sampled last)."""

    prompt: np.ndarray
    prompt_weights: np.ndarray
    generation: np.ndarray
    generation_weights: np.ndarray

    def _tensors(self) -> RoutedParts:
        def back(ids: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(ids.view(np.int16) if ids.dtype == np.uint16 else ids)

        return {
            "prompt": (back(self.prompt), torch.from_numpy(self.prompt_weights)),
            "generation": (back(self.generation), torch.from_numpy(self.generation_weights)),
        }


@dataclass
class Recording:
    """What `record_routing` saw: `calls[i][row]` is row `row` of the i-th forward or generate call."""

    adapter: MoeAdapter = field(repr=False)
    calls: list[list[SampleRouting]] = field(default_factory=list)

    @property
    def moe_layers(self) -> list[int]:
        """Decoder-layer index of each position of the moe_layers axis."""
        return self.adapter.moe_layer_indices

    @property
    def samples(self) -> list[SampleRouting]:
        """Every recorded sequence, call after call."""
        return [sample for call in self.calls for sample in call]

    def write_shard(self, path: str | Path, sample_ids: Sequence[str] | None = None) -> None:
        """Writes every recorded sequence to one routing shard, the format the CLI writes
        (docs/run-folder.md); ids default to "0", "1", ..."""
        samples = self.samples
        ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(samples))]
        write_shards(self.adapter, [Shard(str(path), ids)], [s._tensors() for s in samples])


# One forward's routing: (expert ids, router weights), each [rows, tokens, moe_layers, top_k].
Routing = tuple[torch.Tensor, torch.Tensor]


class _Calls:
    """Cuts the recorder's per-forward entries into calls of the model: one entry for a forward,
    the prefill and then one per decoding step for a generate."""

    def __init__(self, model: PreTrainedModel, recorder: RoutingRecorder, recording: Recording) -> None:
        self.model, self.recorder, self.recording = model, recorder, recording
        self.generating = False

    def _take(self, rows: int) -> list[Routing]:
        """The forwards recorded since the last call, on the host, split into rows."""
        entries = [
            (ids.cpu().view(rows, -1, *ids.shape[1:]), weights.detach().cpu().view(rows, -1, *weights.shape[1:]))
            for ids, weights in zip(self.recorder.ids, self.recorder.weights, strict=True)
        ]
        self.recorder.ids.clear()
        self.recorder.weights.clear()
        return entries

    def after_forward(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _output: Any) -> None:
        if self.generating:
            return
        inputs = kwargs.get("input_ids", args[0] if args else None)
        if inputs is None:
            inputs = kwargs["inputs_embeds"]
        rows = inputs.shape[0]
        ((ids, weights),) = self._take(rows)
        keep = _kept(kwargs.get("attention_mask"), rows, ids.shape[1])
        self.recording.calls.append(
            [_sample(ids[r, keep[r]], weights[r, keep[r]], ids[r, :0], weights[r, :0]) for r in range(rows)]
        )

    def generate(self, original: Any, *args: Any, **kwargs: Any) -> Any:
        self.recorder.ids.clear()
        self.recorder.weights.clear()
        self.generating = True
        try:
            out = original(*args, **kwargs)
        finally:
            self.generating = False
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        rows = sequences.shape[0]
        (prompt_ids, prompt_weights), *steps = self._take(rows)
        width = prompt_ids.shape[1]
        keep = _kept(kwargs.get("attention_mask"), rows, width)
        # Decoding forwards see one token per row: [rows, steps, moe_layers, top_k].
        step_ids = torch.cat([ids for ids, _ in steps], dim=1) if steps else prompt_ids[:, :0]
        step_weights = torch.cat([w for _, w in steps], dim=1) if steps else prompt_weights[:, :0]
        eos = kwargs.get("eos_token_id", self.model.generation_config.eos_token_id)
        eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), dtype=sequences.dtype)
        generated = sequences[:, width:].cpu()
        call = []
        for r in range(rows):
            ends = torch.isin(generated[r], eos_ids).nonzero()
            length = int(ends[0]) + 1 if len(ends) else generated.shape[1]
            call.append(
                _sample(
                    prompt_ids[r, keep[r]], prompt_weights[r, keep[r]], step_ids[r, :length], step_weights[r, :length]
                )
            )
        self.recording.calls.append(call)
        return out


def _kept(mask: torch.Tensor | None, rows: int, width: int) -> torch.Tensor:
    """[rows, width] bool: the positions that are not padding."""
    if mask is None:
        return torch.ones(rows, width, dtype=torch.bool)
    # num_return_sequences repeats each prompt's row.
    return mask.bool().cpu().repeat_interleave(rows // mask.shape[0], dim=0)


def _sample(
    prompt: torch.Tensor, prompt_weights: torch.Tensor, generation: torch.Tensor, generation_weights: torch.Tensor
) -> SampleRouting:
    return SampleRouting(
        prompt=_ids(prompt),
        prompt_weights=prompt_weights.numpy(),
        generation=_ids(generation),
        generation_weights=generation_weights.numpy(),
    )


@contextmanager
def record_routing(model: PreTrainedModel) -> Iterator[Recording]:
    """Records, for every forward and `generate` call of `model` inside the `with`, the experts
    each token was routed to and their router weights: exactly what the layers used (a hook on
    each router, the same one the CLI records with). `model` is any OLMoE, Mixtral, Qwen2-MoE or
    Qwen3-MoE model of transformers.

    >>> with record_routing(model) as rec:
    ...     model.generate(**inputs, max_new_tokens=20)
    >>> rec.calls[0][0].generation.shape   # [generated tokens - 1, moe_layers, top_k]
    >>> rec.write_shard("routing.safetensors")

    Padding (attention_mask == 0) and what follows a row's end-of-sequence token are dropped.
    Beam search reorders its beams between steps, so record greedy or sampled generation only.
    """
    adapter = MoeAdapter(model)
    recording = Recording(adapter)
    with RoutingRecorder(adapter) as recorder:
        calls = _Calls(model, recorder, recording)
        original, outer = model.generate, vars(model).get("generate")  # outer: an enclosing record_routing's
        hook = model.register_forward_hook(calls.after_forward, with_kwargs=True)
        model.generate = lambda *args, **kwargs: calls.generate(original, *args, **kwargs)  # type: ignore[method-assign]
        try:
            yield recording
        finally:
            hook.remove()
            if outer is None:
                del model.generate
            else:
                model.generate = outer  # type: ignore[method-assign]
