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
from steermoe_engine.families.base import Bias
from steermoe_engine.files import apply_delta, expert_delta, save_model
from steermoe_engine.generation import Sampling, generate
from steermoe_engine.models import Loaded, describe, load
from steermoe_engine.operations import steering
from steermoe_engine.routing import RoutingRecorder
from steermoe_engine.tiny import RELEASED, Mirror, TinySize, build_tiny
from steermoe_engine.training import Trainer, TrainSetup

from .conftest import ALL_ARCHS, Family, TinyModels
from .rules import logits_of, reference
from .test_routing import CONVERSATIONS, read_shards, shards_for
from .test_training import BATCH, LABELS, snapshot

capability = pytest.mark.capability

# Which decoder layers are MoE, experts and top-k (the released checkpoint's, tiny.RELEASED), and
# the shared experts, as the tiny configs (tiny.py) set them and transformers builds them.
LAYOUT: dict[str, tuple[list[int], int, int, list[str]]] = {
    "olmoe": ([0, 1, 2], 64, 8, []),
    "flex_olmo": ([0, 1, 2], 7, 5, []),
    "mixtral": ([0, 1, 2], 8, 2, []),
    "qwen2_moe": ([0, 2], 60, 4, ["shared_expert", "shared_expert_gate"]),
    "qwen3_moe": ([0, 1, 2], 128, 8, []),
    "qwen3_next": ([0, 1, 2], 512, 10, ["shared_expert", "shared_expert_gate"]),
    "qwen3_5_moe_text": ([0, 1, 2], 256, 8, ["shared_expert", "shared_expert_gate"]),
    "gpt_oss": ([0, 1, 2], 32, 4, []),
    "granitemoe": ([0, 1, 2], 40, 8, []),
    "granitemoeshared": ([0, 1, 2], 8, 2, ["shared_mlp"]),
    "granitemoe_swa": ([0, 1, 2], 8, 2, ["shared_mlp"]),
    "jamba": ([0, 1, 2], 16, 2, []),
    "hunyuan_v1_moe": ([0, 1, 2], 64, 8, ["shared_mlp"]),
    "phimoe": ([0, 1, 2], 16, 2, []),
    "ernie4_5_moe": ([1, 2], 64, 6, ["shared_experts"]),
    "deepseek_v2": ([1, 2], 64, 6, ["shared_experts"]),
    "deepseek_v3": ([1, 2], 256, 8, ["shared_experts"]),
    "glm4_moe": ([1, 2], 128, 8, ["shared_experts"]),
    "dots1": ([1, 2], 128, 6, ["shared_experts"]),
    "glm4_moe_lite": ([1, 2], 64, 4, ["shared_experts"]),
    "solar_open": ([0, 1, 2], 128, 8, ["shared_experts"]),
    "exaone_moe": ([1, 2], 128, 8, ["shared_experts"]),
    "axk1": ([1, 2], 192, 8, ["shared_experts"]),
    "deepseek_v32": ([1, 2], 256, 8, ["shared_experts"]),
    "glm_moe_dsa": ([1, 2], 256, 8, ["shared_experts"]),
    "mellum": ([0, 1, 2], 64, 8, []),
    "minimax_m2": ([0, 1, 2], 256, 8, []),
    "llama4_text": ([1], 128, 1, ["shared_expert"]),
}
DTYPES = ["fp32", "bf16"]
# The second CPU kernel path (cpu_paths.py) reruns the claims that hold on fp32 kernels; the
# bf16 re-selection claim runs there too (test_zero_bias_reselection_is_the_router_bit_for_bit).
DTYPES_CPU_PATHS = [pytest.param("fp32", marks=pytest.mark.cpu_paths), "bf16"]


def zeros(model: Loaded) -> np.ndarray:
    """A steering map of bias 0: [decoder layers, experts]."""
    return np.zeros((model.adapter.num_layers, model.adapter.num_experts), dtype=np.float32)


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


def layer_rule(model: Loaded, m: int, hidden: torch.Tensor, bias: np.ndarray) -> list[dict[int, float]]:
    """Per token, the reference rule's {expert: weight} in MoE layer `m` for its router's input."""
    layer = model.adapter.layers[m]
    # The block's own buffers too: MiniMax-M2 keeps its router's correction bias there.
    params = {
        **dict(layer.block.named_buffers()),
        **dict(layer.router.named_parameters()),
        **dict(layer.router.named_buffers()),
    }
    config = model.model.config
    logits = logits_of(config.model_type, hidden, params)
    return reference(config, logits, torch.from_numpy(bias[layer.index]), params)


def expected_routing(model: Loaded, inputs: list[torch.Tensor], bias: np.ndarray) -> list[list[dict[int, float]]]:
    """Per MoE layer, per token, the reference rule's {expert: weight}."""
    return [layer_rule(model, m, hidden, bias) for m, hidden in enumerate(inputs)]


# Weights as the router hands them over: rounded to bf16 in a bf16 model (relative 2^-8).
WEIGHT_RTOL = {"fp32": 1e-5, "bf16": 2**-7}


def compare(ids: np.ndarray, weights: np.ndarray, expected: list[dict[int, float]], dtype: str = "fp32") -> int:
    """Tokens whose recorded experts (slots of positive weight) or weights differ from `expected`."""
    mismatches = 0
    rtol = WEIGHT_RTOL[dtype]
    for row_ids, row_w, want in zip(ids, weights, expected, strict=True):
        got = {int(e): float(w) for e, w in zip(row_ids, row_w, strict=True) if w > 0}
        same = got.keys() == want.keys() and all(abs(got[e] - want[e]) <= rtol * max(1.0, abs(want[e])) for e in got)
        mismatches += not same
    return mismatches


@capability("inspect")
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_layout(arch: str, family: Family) -> None:
    model = family(arch, "fp32")
    info = describe(model)
    moe_layers, experts, top_k, shared = LAYOUT[arch]
    assert (info["model_type"], info["num_layers"], info["moe_layers"]) == (arch, 3, moe_layers)
    assert (info["num_experts"], info["top_k"]) == (experts, top_k)
    # DeepSeek-V3's routing (and A.X K1's, V3.2's): 4 of 8 groups; the released others keep one group.
    assert info["expert_groups"] == ([8, 4] if arch in ("deepseek_v3", "axk1", "deepseek_v32") else None)
    assert info["shared_experts"] == ({str(i): shared for i in moe_layers} if shared else {})
    counts = info["parameters"]
    routed = sum(p.numel() for layer in model.adapter.layers for p in layer.experts.parameters())
    assert counts["experts"] == routed == len(moe_layers) * experts * counts["one_expert"]
    shared_ids = {id(p) for layer in model.adapter.layers for m in layer.shared.values() for p in m.parameters()}
    assert bool(shared_ids) == bool(shared)
    assert not shared_ids & {id(p) for layer in model.adapter.layers for p in layer.experts.parameters()}
    assert counts["total"] == sum(p.numel() for p in model.model.parameters())


@capability("record")
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_recorded_ids_are_the_rule(arch: str, batch: int, dtype: str, family: Family, tmp_path: Path) -> None:
    """Every router call of a generation records the rule applied to that call's input. Then the
    samples' shards: in fp32 each token's routing equals a teacher-forced pass over the whole sample
    (one forward, no cache). bf16 rounds a cached decoding step and a whole-sequence pass
    differently, so their routes part at near-ties (1 to 62 of a few hundred to a few thousand
    token-layers on these models); there one sample's shard holds exactly the calls' rows."""
    model = family(arch, dtype)
    convs = (CONVERSATIONS * 2)[:batch]
    shards = shards_for(tmp_path, [batch])
    calls: list[list[tuple[torch.Tensor, np.ndarray, np.ndarray]]] = [[] for _ in model.adapter.layers]

    def seen(m: int) -> Any:
        def hook(router: torch.nn.Module, args: tuple[Any, ...], out: Any) -> None:
            routing = model.adapter.family.routing(router, out)
            hidden = args[0].reshape(-1, args[0].shape[-1])
            calls[m].append((hidden, routing.indices.numpy(), routing.weights.float().numpy()))

        return hook

    handles = [layer.router.register_forward_hook(seen(m)) for m, layer in enumerate(model.adapter.layers)]
    try:
        samples = generate(model, convs, seeds=list(range(batch)), sampling=Sampling(12, 1.0, 1.0), shards=shards)
    finally:
        for handle in handles:
            handle.remove()
    unsteered = zeros(model)
    with torch.inference_mode():  # the generation's tensors are inference tensors
        for m, layer_calls in enumerate(calls):
            for hidden, ids, weights in layer_calls:
                # Left padding that an embedding's padding_idx zeroes is routed too, never recorded.
                real = hidden.ne(0).any(-1).numpy()
                want = layer_rule(model, m, hidden[real], unsteered)
                assert compare(ids[real], weights[real], want, dtype) == 0, m

    mismatches = generated = 0
    for sample, routing in zip(samples, read_shards(shards), strict=True):
        ids = [*sample["prompt_ids"].tolist(), *sample["generated_ids"].tolist()]
        got_ids = np.concatenate([routing["prompt"], routing["generation"]])
        got_w = np.concatenate([routing["prompt.weights"], routing["generation.weights"]])
        assert got_ids.shape == (len(ids), len(model.adapter.layers), model.adapter.top_k)
        generated += len(sample["generated_ids"])
        if dtype == "fp32":
            _, inputs = router_inputs(model, torch.tensor([ids]))
            for m, want in enumerate(expected_routing(model, inputs, unsteered)):
                mismatches += compare(got_ids[:, m], got_w[:, m], want, dtype)
        elif batch == 1:
            for m, layer_calls in enumerate(calls):
                assert np.array_equal(got_ids[:, m], np.concatenate([c[1] for c in layer_calls]))
                assert np.array_equal(got_w[:, m], np.concatenate([c[2] for c in layer_calls]))
    assert generated > 0
    assert mismatches == 0


STEER_CASES = [
    ("finite", [], []),
    ("wide", [], []),  # ±1e4: no underflow may tie the experts it ranks down
    ("off", [0, 1], []),
    ("on", [], [5]),
    ("off+on", [0, 2], [6]),  # FlexOlmo: 7 experts, top-5
]


@capability("steer")
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("dtype", DTYPES_CPU_PATHS)
def test_steering_follows_the_rule(arch: str, dtype: str, family: Family) -> None:
    model = family(arch, dtype)
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    plain, _ = router_inputs(model, ids)
    with RouterControl(model.adapter, steering(model, zeros(model))):
        zero, _ = router_inputs(model, ids)
    assert torch.equal(plain, zero), "bias 0 must be bit-identical to no steering"
    for name, off, on in STEER_CASES:
        spread = {"finite": 2.0, "wide": 1e4}.get(name, 0.3)
        bias = (np.random.default_rng(len(name)).normal(size=zeros(model).shape) * spread).astype(np.float32)
        bias[:, off] = -np.inf
        bias[:, on] = np.inf
        with RouterControl(model.adapter, steering(model, bias)), RoutingRecorder(model.adapter) as rec:
            _, inputs = router_inputs(model, ids)
        got_ids, got_w = rec.ids[0].numpy(), rec.weights[0].numpy()
        assert not np.isin(got_ids, off).any(), name
        if on:
            assert np.isin(got_ids, on).any(-1).all(), name
        for m, want in enumerate(expected_routing(model, inputs, bias)):
            assert compare(got_ids[:, m], got_w[:, m], want, dtype) == 0, (name, m)
    # Steering holds for generated tokens too.
    bias = zeros(model)
    bias[:, [0, 3]], bias[:, 6] = -np.inf, np.inf
    shards = shards_for(Path(model.source).parent / f".steer-{arch}-{dtype}", [2])
    generate(model, CONVERSATIONS[:2], [0, 1], Sampling(8, 1.0, 1.0), shards=shards, steer=steering(model, bias))
    for routing in read_shards(shards):
        used = np.concatenate([routing["prompt"], routing["generation"]])
        assert not np.isin(used, [0, 3]).any() and (used == 6).any(-1).all()


# DeepSeek-V2 (not -Lite, whose greedy routing has no groups): 160 experts in 8 groups, 3 chosen.
DEEPSEEK_V2 = Mirror(
    "deepseek-ai/DeepSeek-V2-Chat",
    {
        **{"n_routed_experts": 160, "num_experts_per_tok": 6, "n_shared_experts": 2, "n_group": 8, "topk_group": 3},
        **{"topk_method": "group_limited_greedy", "routed_scaling_factor": 16.0, "norm_topk_prob": False},
    },
)


@pytest.mark.parametrize("arch", ["deepseek_v2", "deepseek_v3"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forced_experts_in_as_many_groups_as_the_router_chooses_are_always_used(
    arch: str, dtype: str, family: Family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeepSeek-V3 picks 4 of its 8 groups before its experts, DeepSeek-V2 3 of 8: an expert forced
    in each of that many groups is used by every token (steerRequest refuses forced experts in
    more groups than that)."""
    if arch == "deepseek_v2":
        monkeypatch.setitem(RELEASED, "deepseek_v2", DEEPSEEK_V2)
        path = build_tiny(arch, str(tmp_path / arch), seed=0, size=TinySize(layers=3), released=True)["path"]
        model = load(path, dtype, "cpu", False)
    else:
        model = family(arch, dtype)
    groups, chosen = describe(model)["expert_groups"]
    per_group = model.adapter.num_experts // groups
    forced = [g * per_group + 3 for g in range(1, 2 * chosen, 2)]
    bias = zeros(model)
    bias[:, forced] = np.inf
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(2))
    with RouterControl(model.adapter, steering(model, bias)), RoutingRecorder(model.adapter) as rec:
        router_inputs(model, ids)
    used = rec.ids[0].numpy()
    for expert in forced:
        assert (used == expert).any(-1).all(), expert


# Families whose choice is the top-k of the router logits once their extras are neutral: no score
# correction, every group eligible. SparseMixer's rounds pick the same experts.
SAME_CHOICE = [
    *("olmoe", "mixtral", "gpt_oss", "granitemoe", "llama4_text", "phimoe"),
    *("minimax_m2", "deepseek_v3", "glm4_moe", "ernie4_5_moe", "deepseek_v2"),
]


def test_one_map_is_one_strength_in_every_family(tiny_models: TinyModels) -> None:
    """The bias is in logit units in every family (sigmoid and corrected-softmax routers rank the
    scores of the biased logits): under one map, the same router logits select the same experts
    wherever the selection rules coincide, and a map times S is the same steering whatever the model."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 8, generator=generator) * 2
    bias = torch.randn(8, generator=generator) * 3
    for arch in SAME_CHOICE:
        model = load(str(tiny_models[arch]), "fp32", "cpu", False)
        layer = model.adapter.layers[-1]
        router, family = layer.router, model.adapter.family
        with torch.no_grad():
            for name, tensor in [*layer.block.named_buffers(), *layer.block.named_parameters()]:
                if name.endswith("e_score_correction_bias"):
                    tensor.zero_()
        if family.expert_groups(router):
            router.topk_group = router.num_group
        weights, indices = family.select(router, logits, Bias.of(bias, torch.device("cpu")), (None, torch.zeros(8)))
        k = family.top_k(router)
        got = [{int(e) for e, w in zip(i, ws, strict=True) if w > 0} for i, ws in zip(indices, weights, strict=True)]
        want = [set(row.tolist()) for row in (logits + bias).topk(k, dim=-1).indices]
        assert got == want, arch


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
def test_zero_bias_reselection_is_the_router_bit_for_bit(arch: str, dtype: str, family: Family) -> None:
    """The re-selection under bias 0 runs the router's own operations on the router's own shapes:
    the same bits on every CPU, not only values that happen to agree on this one. Many tokens of a
    wide logit range, so that a vector kernel's other rounding of one lane would show."""
    model = family(arch, dtype)
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
                with RouterControl(model.adapter, steering(model, zeros(model))):
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
            changed |= {(expert_names[name], e) for e, row in enumerate(tensor) if not torch.equal(row, after[name][e])}
        else:
            assert torch.equal(tensor, after[name]), f"{name} moved"
    return changed


# The trained rows' gradient against autograd's through the model's own forward: element by element
# in fp32; in bf16 in norm, as the two round along different paths (test_training.agree).
GRAD_RTOL, GRAD_ATOL, GRAD_NORM = 1e-4, 1e-6, 2e-2


@capability("train")
@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("dtype", DTYPES_CPU_PATHS)
def test_expert_training_is_the_models_own_and_moves_only_the_trained_rows(
    arch: str, dtype: str, family: Family, tmp_path: Path
) -> None:
    """Expert-only training (in bf16, many routers (Mixtral's, DeepSeek's, GLM's, MiniMax-M2's,
    Hunyuan's) hand the experts fp32 weights): the first step's loss is the model's own
    forward(labels=...) loss on the batch, the trained rows' gradient is plain autograd's through
    that forward with the expert tensors learning; the steps move the trained rows alone, bit for
    bit elsewhere; the delta rebuilds the trained model, and its folder reloads with transformers."""
    source = family(arch, dtype).source
    model = load(source, dtype, "cpu", False)
    first, last = model.adapter.moe_layer_indices[0], model.adapter.moe_layer_indices[-1]
    # One expert alone in the last layer: a routing mask that leaves a group (DeepSeek-V3's) one
    # expert still reaches it.
    trained = {first: [1, 3], last: [5]} if first != last else {first: [1, 3, 5]}
    before = snapshot(model.model)
    trainer = Trainer(model, TrainSetup(trainable="experts", experts=trained))
    # The routing mask sends each trained layer's tokens to its trained experts (and the model's
    # own forward runs under it too).
    batch = trainer.batch(BATCH, LABELS, trained)
    [chunk] = trainer._chunks(batch)
    stats = trainer.accumulate(batch)

    # The model's own forward as at inference (training routes as generation does: Phi-3.5-MoE's
    # router would sample its experts in train mode), the expert tensors learning.
    own = load(source, dtype, "cpu", False)
    layers = {layer.index: layer for layer in own.adapter.layers}
    fused = {(i, n): getattr(layers[i].experts, n) for i in trained for n in own.adapter.expert_params}
    for tensor in fused.values():
        tensor.requires_grad_(True)
    with RouterControl(own.adapter, batch.controls):
        loss = own.model(input_ids=chunk.input_ids, attention_mask=chunk.attention, labels=chunk.target).loss
    loss.backward()
    # The same logits; only the cross-entropy's summation differs (per target here, a mean there).
    assert stats["loss"] == pytest.approx(loss.item(), rel=1e-6)
    pieces = iter(trainer.slices)
    for index in sorted(trained):
        for name in own.adapter.expert_params:
            got, want = next(pieces).master.grad, fused[(index, name)].grad[trained[index]].float()
            assert want.abs().max() > 0, (index, name)
            if dtype == "fp32":
                torch.testing.assert_close(got, want, rtol=GRAD_RTOL, atol=GRAD_ATOL)
            else:
                assert (got - want).norm() <= GRAD_NORM * want.norm(), (index, name)

    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.step(batch, lr=1e-2)
    # A second step with the mask on one layer only.
    trainer.step(trainer.batch(BATCH, LABELS, {last: trained[last]}), lr=1e-2)
    after = snapshot(model.model)
    assert moved_experts(model, before, after) == {(i, e) for i, es in trained.items() for e in es}
    # The delta rebuilds the trained model from the original one, bit for bit.
    delta = {k: v.clone() for k, v in expert_delta(model, trained).items()}
    for tensor in fused.values():
        tensor.requires_grad_(False)
    assert apply_delta(own, delta) == trained
    for name, tensor in snapshot(own.model).items():
        assert torch.equal(tensor, after[name]), name
    # The saved folder reloads with transformers alone.
    save_model(model.model, model.tokenizer, str(tmp_path / "trained"))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "trained"), dtype=model.model.dtype)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, after[name]), name


def test_unsupported_moe_is_refused_from_its_config() -> None:
    config = AutoConfig.for_model("dbrx")
    with pytest.raises(EngineError, match="MoE model type 'dbrx' has no steermoe routing adapter"):
        check_supported(config)
