"""Graded steering: a bias on the router logits. Bias 0 must be no steering at all, ±inf switches
experts off and on by the independent rules of tests/rules.py, and a finite bias must select
exactly what the router's own rule selects from the biased logits, recomputed here from the logits
alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from steermoe_engine.control import LayerControl, RouterControl
from steermoe_engine.generation import Sampling, generate
from steermoe_engine.models import Loaded
from steermoe_engine.operations import steering

from .conftest import ARCHS
from .rules import reference
from .test_families import compare
from .test_routing import CONVERSATIONS


def routed(model: Loaded, ids: torch.Tensor, controls: dict[int, LayerControl]) -> tuple[Any, list[tuple]]:
    """The model's output and, per MoE layer, what its router returned (logits, scores, indices)."""
    seen: list[Any] = []
    with torch.no_grad(), RouterControl(model.adapter, controls):
        # Registered after the steering hook, so this one sees what the layer really used.
        handles = [
            layer.router.register_forward_hook(lambda _m, _a, out: seen.append(out)) for layer in model.adapter.layers
        ]
        try:
            out = model.model(ids).logits
        finally:
            for handle in handles:
                handle.remove()
    return out, seen


def bias_map(model: Loaded, fill: float = 0.0) -> np.ndarray:
    return np.full((model.adapter.num_layers, model.adapter.num_experts), fill, dtype=np.float32)


@pytest.mark.cpu_paths
@pytest.mark.parametrize("arch", ARCHS)
def test_bias_zero_is_bit_identical_to_no_steering(arch: str, loaded: dict[str, Loaded]) -> None:
    model = loaded[arch]
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    plain_out, plain = routed(model, ids, {})
    zero_out, zero = routed(model, ids, steering(model, bias_map(model)))
    assert torch.equal(plain_out, zero_out)
    for (_, s0, i0), (_, s1, i1) in zip(plain, zero, strict=True):
        assert torch.equal(i0, i1) and torch.equal(s0, s1) and s0.dtype == s1.dtype
    sampling = Sampling(12, 1.0, 1.0)
    texts = [s["text"] for s in generate(model, CONVERSATIONS, [0, 1, 2, 3], sampling, [])]
    steered = generate(model, CONVERSATIONS, [0, 1, 2, 3], sampling, [], steering(model, bias_map(model)))
    assert [s["text"] for s in steered] == texts


@pytest.mark.parametrize("arch", ARCHS)
def test_infinite_bias_switches_experts_off_and_on_by_the_rule(arch: str, loaded: dict[str, Loaded]) -> None:
    """±inf against the rules written out independently (tests/rules.py): -inf never selected and
    out of the softmax, +inf always selected, the other slots by the architecture's own rule."""
    model = loaded[arch]
    n = model.adapter.num_experts
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(2))
    cases = [([0, 1, 2], []), ([], [5]), ([0, 2, 4, 6], [7]), (list(range(n - 1)), [])]
    for off, on in cases:
        bias = bias_map(model)
        bias[:, off] = -np.inf
        bias[:, on] = np.inf
        _, seen = routed(model, ids, steering(model, bias))
        for layer, (logits, scores, indices) in zip(model.adapter.layers, seen, strict=True):
            want = reference(model.model.config, logits, torch.from_numpy(bias[layer.index]), {})
            assert compare(indices.numpy(), scores.float().numpy(), want) == 0, (off, on)
            used = indices[scores > 0]
            assert not np.isin(used.numpy(), off).any() and all((indices == e).any(-1).all() for e in on)


@pytest.mark.parametrize("arch", ARCHS)
def test_finite_bias_selects_the_top_k_of_the_biased_logits(arch: str, loaded: dict[str, Loaded]) -> None:
    model = loaded[arch]
    config = model.model.config
    # The architectures' own rules, read from transformers' router code: top-k of the logits,
    # weights = softmax probabilities, renormalised by Mixtral always, by the others per config.
    normalize = config.model_type == "mixtral" or bool(getattr(config, "norm_topk_prob", False))
    top_k = config.num_experts_per_tok
    ids = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(3))
    _, plain = routed(model, ids, {})
    bias = torch.randn(model.adapter.num_layers, model.adapter.num_experts, generator=torch.Generator().manual_seed(4))
    _, steered = routed(model, ids, steering(model, bias.numpy()))
    changed = 0
    for layer, (logits, scores, indices), (_, _, plain_indices) in zip(
        model.adapter.layers, steered, plain, strict=True
    ):
        logits = logits.float()
        expected = torch.topk(logits + bias[layer.index], top_k, dim=-1).indices
        assert torch.equal(indices.sort(-1).values, expected.sort(-1).values)
        weights = torch.softmax(logits, dim=-1).gather(-1, indices)
        if normalize:
            weights = weights / weights.sum(-1, keepdim=True)
        torch.testing.assert_close(scores.float(), weights, rtol=1e-6, atol=1e-7)
        changed += int((indices.sort(-1).values != plain_indices.sort(-1).values).any(-1).sum())
    assert changed > 0, "a bias of this size must change some token's experts"
