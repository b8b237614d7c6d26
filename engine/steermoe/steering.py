"""Steering a model you hold: switch experts off or force them on, for the calls inside a `with`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from transformers import PreTrainedModel

from steermoe_engine.adapters import MoeAdapter
from steermoe_engine.control import RouterControl
from steermoe_engine.models import Loaded
from steermoe_engine.operations import steering

Expert = tuple[int, int]  # (decoder-layer index, expert index)


def steer_bias(adapter: MoeAdapter, deactivate: Iterable[Expert], activate: Iterable[Expert]) -> np.ndarray:
    """The engine's steering map [decoder layers, experts]: -inf switches an expert off, +inf forces
    it on; refusing what the CLI's --steer refuses (src/components/method/steering.ts)."""
    bias = np.zeros((max(adapter.moe_layer_indices) + 1, adapter.num_experts), dtype=np.float32)
    for value, experts in ((-np.inf, deactivate), (np.inf, activate)):
        for layer, expert in experts:
            if layer not in adapter.moe_layer_indices:
                raise ValueError(f"steer: layer {layer} is not an MoE layer ({adapter.moe_layer_indices})")
            if not 0 <= expert < adapter.num_experts:
                raise ValueError(f"steer: layer {layer} has no expert {expert} (0..{adapter.num_experts - 1})")
            if bias[layer, expert] == -value:
                raise ValueError(f"steer: layer {layer} expert {expert} is both activated and deactivated")
            bias[layer, expert] = value
    groups = adapter.family.expert_groups(adapter.layers[0].router)
    for layer in adapter.moe_layer_indices:
        forced = np.flatnonzero(np.isposinf(bias[layer])).tolist()
        if len(forced) > adapter.top_k:
            raise ValueError(
                f"steer: layer {layer} activates {len(forced)} experts, but only top-{adapter.top_k} are used"
            )
        # The router picks groups first: forced experts spread over more groups than it picks
        # could not all be used, whatever their bias.
        if groups and forced:
            n_groups, chosen = groups
            hit = {e // (adapter.num_experts // n_groups) for e in forced}
            if len(hit) > chosen:
                raise ValueError(
                    f"steer: layer {layer} activates experts {', '.join(map(str, forced))} in {len(hit)} expert "
                    f"groups, but the router uses {chosen} of its {n_groups} groups per token"
                )
        if np.isneginf(bias[layer]).all():
            raise ValueError(f"steer: layer {layer} switches off every expert; at least one must remain")
    return bias


def router_control(model: PreTrainedModel, adapter: MoeAdapter, bias: np.ndarray) -> RouterControl:
    """The one place the Python API reaches the engine's steering, the same entry point the CLI's
    `generate` request goes through (server.steering → RouterControl)."""
    # server.steering reads only the adapter and the device of what it is given.
    loaded = Loaded(model=model, tokenizer=None, adapter=adapter, source="", device=model.device)  # type: ignore[arg-type]
    return RouterControl(adapter, steering(loaded, bias))


@contextmanager
def steer(model: PreTrainedModel, deactivate: Iterable[Expert] = (), activate: Iterable[Expert] = ()) -> Iterator[None]:
    """Inside the `with`, every forward (and generate) call of `model` routes as the CLI's
    `--steer` does: deactivated experts are never chosen (their router logits are -inf before
    top-k), activated ones are always in the top-k at the router's own probability. No weight
    changes; leaving the `with` restores the model.

    >>> with steer(model, deactivate=[(1, 3), (2, 7)]):
    ...     out = model.generate(**inputs)
    """
    adapter = MoeAdapter(model)
    with router_control(model, adapter, steer_bias(adapter, deactivate, activate)):
        yield
