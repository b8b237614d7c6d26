"""Every supported architecture, one tiny random model each, all four capabilities: inspect,
record, steer, train. The routing rules the results are checked against are written out in
tests/rules.py, independently of steermoe_engine/families/. The outcomes make the support matrix
(tests/support.py writes docs/support.md and README's table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from steermoe_engine.adapters import check_supported
from steermoe_engine.control import RouterControl
from steermoe_engine.errors import EngineError
from steermoe_engine.files import apply_delta, expert_delta, save_model
from steermoe_engine.generation import Sampling, generate
from steermoe_engine.models import Loaded, describe, load
from steermoe_engine.routing import RoutingRecorder
from steermoe_engine.server import steering
from steermoe_engine.training import Trainer, TrainSetup

from .conftest import ALL_ARCHS
from .rules import logits_of, reference
from .test_routing import CONVERSATIONS, read_shards, shards_for
from .test_training import BATCH, LABELS, snapshot

capability = pytest.mark.capability

# Which decoder layers are MoE, top-k and the shared experts, as the tiny configs (tiny.py) set
# them and transformers builds them.
LAYOUT: dict[str, tuple[list[int], int, list[str]]] = {
    "olmoe": ([0, 1, 2], 2, []),
    "flex_olmo": ([0, 1, 2], 2, []),
    "mixtral": ([0, 1, 2], 2, []),
    "qwen2_moe": ([0, 2], 2, ["shared_expert", "shared_expert_gate"]),
    "qwen3_moe": ([0, 1, 2], 2, []),
    "qwen3_next": ([0, 1, 2], 2, ["shared_expert", "shared_expert_gate"]),
    "qwen3_5_moe_text": ([0, 1, 2], 2, ["shared_expert", "shared_expert_gate"]),
    "gpt_oss": ([0, 1, 2], 2, []),
    "granitemoe": ([0, 1, 2], 2, []),
    "granitemoeshared": ([0, 1, 2], 2, ["shared_mlp"]),
    "granitemoe_swa": ([0, 1, 2], 2, ["shared_mlp"]),
    "jamba": ([0, 1, 2], 2, []),
    "hunyuan_v1_moe": ([0, 1, 2], 2, ["shared_mlp"]),
    "phimoe": ([0, 1, 2], 2, []),
    "ernie4_5_moe": ([1, 2], 2, ["shared_experts"]),
    "deepseek_v2": ([1, 2], 2, ["shared_experts"]),
    "deepseek_v3": ([1, 2], 2, ["shared_experts"]),
    "glm4_moe": ([1, 2], 2, ["shared_experts"]),
    "dots1": ([1, 2], 2, ["shared_experts"]),
    "glm4_moe_lite": ([1, 2], 2, ["shared_experts"]),
    "solar_open": ([0, 1, 2], 2, ["shared_experts"]),
    "exaone_moe": ([1, 2], 2, ["shared_experts"]),
    "axk1": ([1, 2], 2, ["shared_experts"]),
    "deepseek_v32": ([1, 2], 2, ["shared_experts"]),
    "glm_moe_dsa": ([1, 2], 2, ["shared_experts"]),
    "mellum": ([0, 1, 2], 2, []),
    "minimax_m2": ([0, 1, 2], 2, []),
    "llama4_text": ([1], 1, ["shared_expert"]),
}


def router_inputs(model: Loaded, ids: torch.Tensor) -> tuple[Any, list[torch.Tensor]]:
    """Model output and every MoE router's input [tokens, hidden], from a plain forward."""
    seen: list[torch.Tensor] = []
    handles = [
        layer.router.register_forward_pre_hook(lambda _m, args: seen.append(args[0].reshape(-1, args[0].shape[-1])))
        for layer in model.adapter.layers
    ]
    try:
        with torch.no_grad():
            out = model.model(ids).logits
    finally:
        for handle in handles:
            handle.remove()
    return out, seen


def expected_routing(model: Loaded, inputs: list[torch.Tensor], bias: np.ndarray) -> list[list[dict[int, float]]]:
    """Per MoE layer, per token, the reference rule's {expert: weight}."""
    config = model.model.config
    out = []
    for layer, hidden in zip(model.adapter.layers, inputs, strict=True):
        # The block's own buffers too: MiniMax-M2 keeps its router's correction bias there.
        params = {
            **dict(layer.block.named_buffers()),
            **dict(layer.router.named_parameters()),
            **dict(layer.router.named_buffers()),
        }
        logits = logits_of(config.model_type, hidden, params)
        out.append(reference(config, logits, torch.from_numpy(bias[layer.index]), params))
    return out


def compare(ids: np.ndarray, weights: np.ndarray, expected: list[dict[int, float]]) -> int:
    """Tokens whose recorded experts (slots of positive weight) or weights differ from `expected`."""
    mismatches = 0
    for row_ids, row_w, want in zip(ids, weights, expected, strict=True):
        got = {int(e): float(w) for e, w in zip(row_ids, row_w, strict=True) if w > 0}
        same = got.keys() == want.keys() and all(abs(got[e] - want[e]) <= 1e-5 * max(1.0, abs(want[e])) for e in got)
        mismatches += not same
    return mismatches


@capability("inspect")
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_layout(arch: str, loaded: dict[str, Loaded]) -> None:
    model = loaded[arch]
    info = describe(model)
    moe_layers, top_k, shared = LAYOUT[arch]
    assert (info["model_type"], info["num_layers"], info["moe_layers"]) == (arch, 3, moe_layers)
    assert (info["num_experts"], info["top_k"]) == (8, top_k)
    assert info["shared_experts"] == ({str(i): shared for i in moe_layers} if shared else {})
    counts = info["parameters"]
    routed = sum(p.numel() for layer in model.adapter.layers for p in layer.experts.parameters())
    assert counts["experts"] == routed == len(moe_layers) * 8 * counts["one_expert"]
    shared_ids = {id(p) for layer in model.adapter.layers for m in layer.shared.values() for p in m.parameters()}
    assert bool(shared_ids) == bool(shared)
    assert not shared_ids & {id(p) for layer in model.adapter.layers for p in layer.experts.parameters()}
    assert counts["total"] == sum(p.numel() for p in model.model.parameters())


@capability("record")
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("batch", [1, 8])
def test_recorded_ids_are_the_rule_on_a_teacher_forced_pass(
    arch: str, batch: int, loaded: dict[str, Loaded], tmp_path: Path
) -> None:
    model = loaded[arch]
    convs = (CONVERSATIONS * 2)[:batch]
    shards = shards_for(tmp_path, [batch])
    samples = generate(model, convs, seeds=list(range(batch)), sampling=Sampling(12, 1.0, 1.0), shards=shards)
    unsteered = np.zeros((3, 8), dtype=np.float32)
    mismatches = generated = 0
    for sample, routing in zip(samples, read_shards(shards), strict=True):
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        _, inputs = router_inputs(model, torch.tensor([ids]))
        expected = expected_routing(model, inputs, unsteered)
        got_ids = np.concatenate([routing["prompt"], routing["generation"]])
        got_w = np.concatenate([routing["prompt.weights"], routing["generation.weights"]])
        assert got_ids.shape == (len(ids), len(model.adapter.layers), model.adapter.top_k)
        for m, want in enumerate(expected):
            mismatches += compare(got_ids[:, m], got_w[:, m], want)
        generated += len(sample["generated_ids"])
    assert generated > 0
    assert mismatches == 0


STEER_CASES = [
    ("finite", [], []),
    ("off", [0, 1, 2], []),
    ("on", [], [5]),
    ("off+on", [0, 2, 4, 6], [7]),
]


@pytest.mark.cpu_paths
@capability("steer")
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_steering_follows_the_rule(arch: str, loaded: dict[str, Loaded]) -> None:
    model = loaded[arch]
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    plain, _ = router_inputs(model, ids)
    with RouterControl(model.adapter, steering(model, np.zeros((3, 8), dtype=np.float32))):
        zero, _ = router_inputs(model, ids)
    assert torch.equal(plain, zero), "bias 0 must be bit-identical to no steering"
    for name, off, on in STEER_CASES:
        bias = (np.random.default_rng(len(name)).normal(size=(3, 8)) * (2.0 if name == "finite" else 0.3)).astype(
            np.float32
        )
        bias[:, off] = -np.inf
        bias[:, on] = np.inf
        with RouterControl(model.adapter, steering(model, bias)), RoutingRecorder(model.adapter) as rec:
            _, inputs = router_inputs(model, ids)
        got_ids, got_w = rec.ids[0].numpy(), rec.weights[0].numpy()
        assert not np.isin(got_ids, off).any(), name
        if on:
            assert np.isin(got_ids, on).any(-1).all(), name
        for m, want in enumerate(expected_routing(model, inputs, bias)):
            assert compare(got_ids[:, m], got_w[:, m], want) == 0, (name, m)
    # Steering holds for generated tokens too.
    bias = np.zeros((3, 8), dtype=np.float32)
    bias[:, [0, 3]], bias[:, 6] = -np.inf, np.inf
    shards = shards_for(Path(model.source).parent / f".steer-{arch}", [2])
    generate(model, CONVERSATIONS[:2], [0, 1], Sampling(8, 1.0, 1.0), shards=shards, steer=steering(model, bias))
    for routing in read_shards(shards):
        used = np.concatenate([routing["prompt"], routing["generation"]])
        assert not np.isin(used, [0, 3]).any() and (used == 6).any(-1).all()


def router_call(model: Loaded, layer: int) -> tuple[Any, ...]:
    """The positional arguments one MoE router is called with in a forward of the model (MiniMax-M2's
    block hands its router the correction bias too)."""
    calls: list[tuple[Any, ...]] = []
    handle = model.adapter.layers[layer].router.register_forward_pre_hook(lambda _m, args: calls.append(args))
    try:
        with torch.no_grad():
            model.model(torch.tensor([[1, 2, 3]]))
    finally:
        handle.remove()
    return calls[0]


@pytest.mark.cpu_paths
@capability("steer")
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_zero_bias_reselection_is_the_router_bit_for_bit(arch: str, dtype: str, tiny_models: dict[str, Path]) -> None:
    """The re-selection under bias 0 runs the router's own operations on the router's own shapes:
    the same bits on every CPU, not only values that happen to agree on this one. Many tokens of a
    wide logit range, so that a vector kernel's other rounding of one lane would show."""
    model = load(str(tiny_models[arch]), dtype, "cpu", False)
    generator = torch.Generator().manual_seed(0)
    for m, layer in enumerate(model.adapter.layers):
        args = router_call(model, m)
        hidden = args[0]
        for tokens in [*range(1, 49), 4099]:
            x = torch.randn(tokens, hidden.shape[-1], generator=generator)
            x = x.to(hidden.dtype).reshape(*([1] * (hidden.dim() - 2)), tokens, hidden.shape[-1])
            with torch.no_grad():
                # Logits of spread 4, whatever the router's scale: neither saturated nor flat.
                x *= 4 / model.adapter.family.routing(layer.router, layer.router(x, *args[1:])).logits.float().std()
                plain = layer.router(x, *args[1:])
                with RouterControl(model.adapter, steering(model, np.zeros((3, 8), dtype=np.float32))):
                    zero = layer.router(x, *args[1:])
            assert len(plain) == len(zero)
            for got, want in zip(zero, plain, strict=True):
                assert got.dtype == want.dtype and torch.equal(got, want), (m, tokens)


def expert_tensor_names(model: Loaded) -> dict[str, int]:
    """state_dict name of each fused expert tensor -> its decoder layer."""
    ids = {
        id(getattr(layer.experts, n)): layer.index
        for layer in model.adapter.layers
        for n in model.adapter.expert_params
    }
    return {name: ids[id(p)] for name, p in model.model.named_parameters() if id(p) in ids}


def moved_experts(
    model: Loaded, before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
) -> set[tuple[int, int]]:
    """The (decoder layer, expert) rows that changed; every other tensor must not have changed by a bit."""
    expert_names = expert_tensor_names(model)
    assert {n.rsplit(".", 1)[-1] for n in expert_names} == set(model.adapter.expert_params)
    changed = set()
    for name, tensor in before.items():
        if name in expert_names:
            changed |= {(expert_names[name], e) for e in range(8) if not torch.equal(tensor[e], after[name][e])}
        else:
            assert torch.equal(tensor, after[name]), f"{name} moved"
    return changed


@pytest.mark.cpu_paths
@capability("train")
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_training_moves_only_the_chosen_expert_slices(arch: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    source = str(tiny_models[arch])
    model = load(source, "fp32", "cpu", False)
    first, last = model.adapter.moe_layer_indices[0], model.adapter.moe_layer_indices[-1]
    trained = {first: [1, 3], last: [5]} if first != last else {first: [1, 3, 5]}
    before = snapshot(model.model)
    trainer = Trainer(model, TrainSetup(trainable="experts", experts=trained))
    for step in range(3):
        # The routing mask of each batch keeps its layer's tokens inside the trained experts.
        allowed = {first: trained[first]} if step % 2 == 0 else {last: trained[last]}
        trainer.step(trainer.batch(BATCH, LABELS, allowed), lr=1e-2)
    after = snapshot(model.model)
    assert moved_experts(model, before, after) == {(layer, e) for layer, es in trained.items() for e in es}
    # The delta rebuilds the trained model from the original one, bit for bit.
    delta = {k: v.clone() for k, v in expert_delta(model, trained).items()}
    base = load(source, "fp32", "cpu", False)
    assert apply_delta(base, delta) == trained
    for name, tensor in snapshot(base.model).items():
        assert torch.equal(tensor, after[name]), name
    # The saved folder reloads with transformers alone.
    save_model(model.model, model.tokenizer, str(tmp_path / "trained"))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "trained"), dtype=torch.float32)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, after[name]), name


@capability("train")
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_bf16_expert_training_starts_from_the_models_own_loss(arch: str, tiny_models: dict[str, Path]) -> None:
    """Expert-only training of a bf16 model, where many routers (Mixtral's, DeepSeek's, GLM's,
    MiniMax-M2's, Hunyuan's) hand the experts fp32 weights: its first step's loss is the model's own
    forward(labels=...) loss on the batch, and it moves the trained expert rows alone."""
    model = load(str(tiny_models[arch]), "bf16", "cpu", False)
    # Two experts of one group: grouped routing (DeepSeek's) ranks a group by its two best experts,
    # so a routing mask that leaves a group one expert never chooses it.
    trained = {i: [1, 3] for i in (model.adapter.moe_layer_indices[0], model.adapter.moe_layer_indices[-1])}
    before = snapshot(model.model)
    trainer = Trainer(model, TrainSetup(trainable="experts", experts=trained))
    # The routing mask sends each trained layer's tokens to its trained experts (and the model's
    # own forward runs under it too).
    batch = trainer.batch(BATCH, LABELS, trained)
    [chunk] = trainer._chunks(batch)
    # The model's own forward as at inference: training routes as generation does (Phi-3.5-MoE's
    # router would sample its experts in train mode).
    with torch.no_grad(), RouterControl(model.adapter, batch.controls):
        own = model.model(input_ids=chunk.input_ids, attention_mask=chunk.attention, labels=chunk.target).loss
    stats = trainer.step(batch, lr=1e-2)
    # The same logits; only the cross-entropy's summation differs (per target here, a mean there).
    assert stats["loss"] == pytest.approx(float(own), rel=1e-6)
    assert moved_experts(model, before, snapshot(model.model)) == {(i, e) for i, es in trained.items() for e in es}


def test_unsupported_moe_is_refused_from_its_config() -> None:
    config = AutoConfig.for_model("dbrx")
    with pytest.raises(EngineError, match="MoE model type 'dbrx' has no steermoe routing adapter"):
        check_supported(config)
