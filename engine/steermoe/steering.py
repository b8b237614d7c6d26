"""Steering a model you hold: switch experts off or force them on, for the calls inside a `with`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from transformers import PreTrainedModel

from steermoe_engine.adapters import MoeAdapter
from steermoe_engine.control import RouterControl
from steermoe_engine.models import Loaded
from steermoe_engine.server import steering

Expert = tuple[int, int]  # (decoder-layer index, expert index)


def steer_request(
    adapter: MoeAdapter, deactivate: Iterable[Expert], activate: Iterable[Expert]
) -> dict[str, dict[str, list[int]]]:
    """The engine's steering request, {layer: {deactivate, activate}}, refusing what the CLI's
    --steer refuses (src/components/method/steering.ts `steerRequest`)."""
    request: dict[str, dict[str, list[int]]] = {}
    for mode, experts in (("deactivate", deactivate), ("activate", activate)):
        for layer, expert in experts:
            if layer not in adapter.moe_layer_indices:
                raise ValueError(f"steer: layer {layer} is not an MoE layer ({adapter.moe_layer_indices})")
            if not 0 <= expert < adapter.num_experts:
                raise ValueError(f"steer: layer {layer} has no expert {expert} (0..{adapter.num_experts - 1})")
            request.setdefault(str(layer), {"deactivate": [], "activate": []})[mode].append(expert)
    for layer, change in request.items():
        both = set(change["activate"]) & set(change["deactivate"])
        if both:
            raise ValueError(f"steer: layer {layer} expert {min(both)} is both activated and deactivated")
        if len(change["activate"]) > adapter.top_k:
            n = len(change["activate"])
            raise ValueError(f"steer: layer {layer} activates {n} experts, but only top-{adapter.top_k} are used")
        if len(set(change["deactivate"])) >= adapter.num_experts:
            raise ValueError(f"steer: layer {layer} switches off every expert; at least one must remain")
    return request


def router_control(
    model: PreTrainedModel, adapter: MoeAdapter, request: dict[str, dict[str, list[int]]]
) -> RouterControl:
    """The one place the Python API reaches the engine's steering, the same entry point the CLI's
    `generate` request goes through (server.steering → RouterControl)."""
    # server.steering reads only the adapter and the device of what it is given.
    loaded = Loaded(model=model, tokenizer=None, adapter=adapter, source="", device=model.device)  # type: ignore[arg-type]
    return RouterControl(adapter, steering(loaded, request))


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
    with router_control(model, adapter, steer_request(adapter, deactivate, activate)):
        yield
