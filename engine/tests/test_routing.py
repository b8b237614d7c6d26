"""The recorded experts must be exactly the ones the model used. The reference is an independent
teacher-forced pass per sample, unpadded, whose router logits come from transformers' own
`output_router_logits` rather than from steermoe's hooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import PretrainedConfig

from steermoe_engine.generation import Sampling, generate, replay
from steermoe_engine.models import Loaded
from steermoe_engine.routing import ROUTING_FORMAT, SHARD_FORMAT, Shard

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


def shards_for(tmp_path: Path, sizes: list[int]) -> list[Shard]:
    ids = iter(range(sum(sizes)))
    return [
        Shard(str(tmp_path / f"shard-{i}.safetensors"), [f"s{next(ids)}" for _ in range(n)])
        for i, n in enumerate(sizes)
    ]


def read_shards(shards: list[Shard]) -> list[dict[str, np.ndarray]]:
    """Per sample, in order: {part: expert ids, part.weights: router weights}, as a reader of the
    README would slice them."""
    samples = []
    for shard in shards:
        tensors = load_file(shard.path)
        with open(shard.path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        assert header["__metadata__"]["format"] == ROUTING_FORMAT
        # Exactly the metadata the TypeScript reader's schema names (routing_format.json).
        assert sorted(header["__metadata__"]) == sorted(SHARD_FORMAT["metadata"]["required"])
        assert json.loads(header["__metadata__"]["sample_ids"]) == shard.sample_ids
        for i in range(len(shard.sample_ids)):
            sample = {}
            for part in ("prompt", "generation"):
                off = tensors[f"{part}.offsets"]
                assert off.dtype == np.int64 and len(off) == len(shard.sample_ids) + 1
                sample[part] = tensors[f"{part}.expert_ids"][off[i] : off[i + 1]]
                sample[f"{part}.weights"] = tensors[f"{part}.router_weights"][off[i] : off[i + 1]]
            samples.append(sample)
    return samples


def recorded_experts(routing: dict[str, np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate([routing["prompt"], routing["generation"]]), axis=-1)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("batch", [1, 8])
def test_generation_routing_matches_teacher_forced_pass(
    arch: str, batch: int, loaded: dict[str, Loaded], tmp_path: Path
) -> None:
    model = loaded[arch]
    convs = (CONVERSATIONS * 2)[:batch]
    shards = shards_for(tmp_path, [batch // 2, batch - batch // 2] if batch > 1 else [1])
    samples = generate(model, convs, seeds=list(range(batch)), sampling=Sampling(24, 1.0, 1.0), shards=shards)
    for sample, routing in zip(samples, read_shards(shards), strict=True):
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        assert routing["prompt"].shape[0] == len(sample["prompt_ids"])
        assert routing["generation"].shape[0] == len(sample["generated_ids"])
        assert routing["generation"].dtype == np.uint8
        np.testing.assert_array_equal(recorded_experts(routing), reference_experts(model, ids))
        weights = routing["generation.weights"]
        assert weights.dtype == np.float32 and np.all(weights > 0)
        if model.adapter.normalize_topk:
            np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_samples_do_not_depend_on_their_batch(loaded: dict[str, Loaded]) -> None:
    model = loaded["olmoe"]
    alone = generate(model, CONVERSATIONS[1:2], seeds=[7], sampling=Sampling(16, 1.0, 1.0), shards=[])
    together = generate(model, CONVERSATIONS, seeds=[5, 7, 9, 11], sampling=Sampling(16, 1.0, 1.0), shards=[])
    assert alone[0]["generated_ids"].tolist() == together[1]["generated_ids"].tolist()


def test_stops_at_eos_and_drops_what_follows(loaded: dict[str, Loaded], tmp_path: Path) -> None:
    model = loaded["olmoe"]
    eos = model.tokenizer.eos_token_id
    assert isinstance(eos, int)
    # Make end-of-sequence likely enough that rows end at different steps (rows that have ended
    # leave the batch while the others go on) by biasing the LM head.
    with torch.no_grad():
        saved = model.model.lm_head.bias
        model.model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.model.config.vocab_size))
        model.model.lm_head.bias[eos] = 4.0
    try:
        shards = shards_for(tmp_path, [8])
        samples = generate(
            model, CONVERSATIONS * 2, seeds=list(range(8)), sampling=Sampling(32, 1.0, 1.0), shards=shards
        )
    finally:
        model.model.lm_head.bias = saved
    lengths = {len(sample["generated_ids"]) for sample in samples}
    assert len(lengths) >= 4, lengths
    for sample, routing in zip(samples, read_shards(shards), strict=True):
        gen = sample["generated_ids"].tolist()
        assert eos not in gen[:-1]
        assert sample["finish_reason"] == ("eos" if gen[-1] == eos else "length")
        assert routing["generation"].shape[0] == len(gen)
        ids = [*sample["prompt_ids"].tolist(), *gen]
        np.testing.assert_array_equal(recorded_experts(routing), reference_experts(model, ids))


def test_greedy_and_top_p(loaded: dict[str, Loaded]) -> None:
    model = loaded["mixtral"]
    greedy = [generate(model, CONVERSATIONS[:2], [s, s + 1], Sampling(12, 0.0, 1.0), []) for s in (0, 99)]
    assert [g["generated_ids"].tolist() for g in greedy[0]] == [g["generated_ids"].tolist() for g in greedy[1]]
    # A vanishing top-p keeps only the most likely token: the same as greedy.
    nucleus = generate(model, CONVERSATIONS[:2], [3, 4], Sampling(12, 1.0, 1e-6), [])
    assert [g["generated_ids"].tolist() for g in nucleus] == [g["generated_ids"].tolist() for g in greedy[0]]


@pytest.mark.parametrize("arch", ARCHS)
def test_replay_records_response_routing(arch: str, loaded: dict[str, Loaded], tmp_path: Path) -> None:
    model = loaded[arch]
    convs = [[*c, {"role": "assistant", "content": "I'm sorry, but I cannot help with that."}] for c in CONVERSATIONS]
    shards = shards_for(tmp_path, [3, 1])
    for sample, routing in zip(replay(model, convs, shards), read_shards(shards), strict=True):
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        assert str(model.tokenizer.decode(sample["generated_ids"].tolist())).startswith("I'm sorry")
        assert routing["generation"].shape[0] == len(sample["generated_ids"])
        np.testing.assert_array_equal(recorded_experts(routing), reference_experts(model, ids))


def test_steering_shows_in_the_recorded_routing(loaded: dict[str, Loaded], tmp_path: Path) -> None:
    from steermoe_engine.operations import steering

    model = loaded["qwen3_moe"]
    bias = np.zeros((3, 8), dtype=np.float32)
    bias[0, [0, 1, 2, 3]] = -np.inf
    bias[2, 6] = np.inf
    controls = steering(model, bias)
    shards = shards_for(tmp_path, [4])
    generate(model, CONVERSATIONS, [0, 1, 2, 3], Sampling(16, 1.0, 1.0), shards=shards, steer=controls)
    for routing in read_shards(shards):
        ids = np.concatenate([routing["prompt"], routing["generation"]])
        assert not np.isin(ids[:, 0], [0, 1, 2, 3]).any()
        assert (ids[:, 2] == 6).any(-1).all()
        assert np.isin(ids[:, 1], [0, 1, 2, 3]).any()  # an unsteered layer still uses them


def test_past_256_experts_the_shard_holds_uint16_ids(tmp_path: Path) -> None:
    from steermoe_engine.models import load
    from steermoe_engine.tiny import TinySize, build_tiny

    built = build_tiny("olmoe", str(tmp_path / "wide"), seed=0, size=TinySize(layers=1, experts=300, top_k=2))
    model = load(built["path"], "fp32", "cpu", False)
    shards = shards_for(tmp_path, [2])
    samples = generate(model, CONVERSATIONS[:2], [0, 1], Sampling(8, 1.0, 1.0), shards=shards)
    for sample, routing in zip(samples, read_shards(shards), strict=True):
        assert routing["prompt"].dtype == np.uint16 and routing["generation"].dtype == np.uint16
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        np.testing.assert_array_equal(recorded_experts(routing), reference_experts(model, ids))
    assert (np.concatenate([r["prompt"] for r in read_shards(shards)]) >= 256).any()


def test_prompts_and_steps_run_the_experts_kernel_of_their_phase(loaded: dict[str, Loaded]) -> None:
    model = loaded["olmoe"]
    assert model.kernels == {"prefill": "eager", "decode": "grouped_mm"}  # on CPU
    experts = model.adapter.layers[0].experts
    config = cast(PretrainedConfig, experts.config)  # what the experts' dispatch reads
    before = model.model.config._experts_implementation
    seen: list[tuple[int, str | None]] = []
    hook = experts.register_forward_pre_hook(
        lambda _module, args: seen.append((args[0].shape[0], config._experts_implementation))
    )
    try:
        generate(model, CONVERSATIONS[:2], seeds=[0, 1], sampling=Sampling(4, 1.0, 1.0), shards=[])
    finally:
        hook.remove()
    (prompt_tokens, first), *steps = seen
    assert prompt_tokens > 2 and first == "eager"
    assert steps and all(tokens <= 2 and kernel == "grouped_mm" for tokens, kernel in steps)
    # Training and anything else after generation compute with what the model had.
    assert model.model.config._experts_implementation == before
