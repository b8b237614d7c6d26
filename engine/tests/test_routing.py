"""The recorded experts must be exactly the ones the model used. The reference is an independent
teacher-forced pass per sample, unpadded, whose router logits come from transformers' own
`output_router_logits` rather than from steermoe's hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steermoe_engine.generation import Sampling, generate, replay
from steermoe_engine.models import Loaded

from .conftest import ARCHS

CONVERSATIONS = [
    [{"role": "user", "content": "How do I bake bread at home?"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Tell me a story about a cat who learns to play the piano in a small village."},
    ],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a short poem about the sea."}],
]


def reference_experts(loaded: Loaded, token_ids: list[int]) -> np.ndarray:
    """[tokens, moe_layers, top_k] expert ids, sorted within top-k."""
    with torch.inference_mode():
        out = loaded.model(torch.tensor([token_ids]), output_router_logits=True)
    top_k = loaded.adapter.top_k
    per_layer = [torch.topk(torch.softmax(logits.float(), -1), top_k, dim=-1).indices for logits in out.router_logits]
    return np.sort(torch.stack(per_layer, dim=1).numpy(), axis=-1)


def recorded_experts(sample: dict) -> np.ndarray:
    parts = sample["routing"]
    return np.sort(np.concatenate([parts["prompt"]["expert_ids"], parts["generation"]["expert_ids"]]), axis=-1)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("batch", [1, 8])
def test_generation_routing_matches_teacher_forced_pass(arch: str, batch: int, loaded: dict[str, Loaded]) -> None:
    model = loaded[arch]
    convs = (CONVERSATIONS * 2)[:batch]
    samples = generate(model, convs, seeds=list(range(batch)), sampling=Sampling(24, 1.0, 1.0), record=True)
    for sample in samples:
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        assert sample["routing"]["prompt"]["expert_ids"].shape[0] == len(sample["prompt_ids"])
        assert sample["routing"]["generation"]["expert_ids"].shape[0] == len(sample["generated_ids"])
        np.testing.assert_array_equal(recorded_experts(sample), reference_experts(model, ids))
        weights = sample["routing"]["generation"]["weights"]
        assert weights.dtype == np.float32 and np.all(weights > 0)
        if model.adapter.normalize_topk:
            np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_samples_do_not_depend_on_their_batch(loaded: dict[str, Loaded]) -> None:
    model = loaded["olmoe"]
    alone = generate(model, CONVERSATIONS[1:2], seeds=[7], sampling=Sampling(16, 1.0, 1.0), record=False)
    together = generate(model, CONVERSATIONS, seeds=[5, 7, 9, 11], sampling=Sampling(16, 1.0, 1.0), record=False)
    assert alone[0]["generated_ids"].tolist() == together[1]["generated_ids"].tolist()
    assert "routing" not in alone[0]


def test_stops_at_eos_and_drops_what_follows(loaded: dict[str, Loaded]) -> None:
    model = loaded["olmoe"]
    eos = model.tokenizer.eos_token_id
    # Make end-of-sequence the likeliest token after a few steps by biasing the LM head.
    with torch.no_grad():
        saved = model.model.lm_head.bias
        model.model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.model.config.vocab_size))
        model.model.lm_head.bias[eos] = 8.0
    try:
        samples = generate(model, CONVERSATIONS, seeds=[0, 1, 2, 3], sampling=Sampling(32, 1.0, 1.0), record=True)
    finally:
        model.model.lm_head.bias = saved
    for sample in samples:
        gen = sample["generated_ids"].tolist()
        assert sample["finish_reason"] == "eos" and gen[-1] == eos and eos not in gen[:-1]
        assert sample["routing"]["generation"]["expert_ids"].shape[0] == len(gen)


def test_greedy_and_top_p(loaded: dict[str, Loaded]) -> None:
    model = loaded["mixtral"]
    greedy = [generate(model, CONVERSATIONS[:2], [s, s + 1], Sampling(12, 0.0, 1.0), False) for s in (0, 99)]
    assert [g["generated_ids"].tolist() for g in greedy[0]] == [g["generated_ids"].tolist() for g in greedy[1]]
    # A vanishing top-p keeps only the most likely token: the same as greedy.
    nucleus = generate(model, CONVERSATIONS[:2], [3, 4], Sampling(12, 1.0, 1e-6), False)
    assert [g["generated_ids"].tolist() for g in nucleus] == [g["generated_ids"].tolist() for g in greedy[0]]


@pytest.mark.parametrize("arch", ARCHS)
def test_replay_records_response_routing(arch: str, loaded: dict[str, Loaded]) -> None:
    model = loaded[arch]
    convs = [[*c, {"role": "assistant", "content": "I'm sorry, but I cannot help with that."}] for c in CONVERSATIONS]
    for sample in replay(model, convs):
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        assert model.tokenizer.decode(sample["generated_ids"].tolist()).startswith("I'm sorry")
        np.testing.assert_array_equal(recorded_experts(sample), reference_experts(model, ids))


def test_steering_shows_in_the_recorded_routing(loaded: dict[str, Loaded]) -> None:
    from steermoe_engine.server import steering

    model = loaded["qwen3_moe"]
    controls = steering(model, {"0": {"deactivate": [0, 1, 2, 3]}, "2": {"activate": [6]}})
    samples = generate(model, CONVERSATIONS, [0, 1, 2, 3], Sampling(16, 1.0, 1.0), record=True, steer=controls)
    for sample in samples:
        ids = np.concatenate([sample["routing"]["prompt"]["expert_ids"], sample["routing"]["generation"]["expert_ids"]])
        assert not np.isin(ids[:, 0], [0, 1, 2, 3]).any()
        assert (ids[:, 2] == 6).any(-1).all()
        assert np.isin(ids[:, 1], [0, 1, 2, 3]).any()  # an unsteered layer still uses them
