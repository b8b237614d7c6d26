"""The CUDA tier: what depends on the platform, checked on the GPU at hand, in bf16, with the
released checkpoints' routing (tiny.RELEASED). `pytest -m cuda` on a machine with CUDA; skipped
elsewhere (conftest.py, CUDA_TIER). The marker also runs the GPU cases of test_training.py (the
trained rows' gradients) and test_distributed.py (FSDP2 over the GPUs present).

On the CPU, decoding is held to a teacher-forced pass bit for bit (test_routing.py). On a GPU the
two run other kernels and differ in bf16 (issue 26: 4.7% of the generated tokens' expert sets), so
here the reference for recorded routing is what each router returned in the same forward."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from steermoe_engine.generation import Sampling, generate, generate_ids
from steermoe_engine.models import Loaded, load
from steermoe_engine.operations import steering
from steermoe_engine.routing import RoutingRecorder
from steermoe_engine.training import Trainer, TrainSetup

from .conftest import ARCHS, CUDA_TIER, TIER_DEVICE, TinyModels, models_root
from .rules import reference
from .test_families import compare
from .test_routing import CONVERSATIONS
from .test_serve import PROMPT, call, sglang_rows, vllm_rows
from .test_steering import bias_map, routed
from .test_training import BATCH, LABELS, moved_experts, snapshot

pytestmark = CUDA_TIER


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(models_root(tmp_path_factory, "released"), released=True)


def on_device(models: TinyModels, arch: str, deterministic: bool = False) -> Loaded:
    return load(str(models[arch]), "bf16", TIER_DEVICE, False, deterministic=deterministic)


def random_ids(rows: int, tokens: int, seed: int) -> torch.Tensor:
    return torch.randint(5, 300, (rows, tokens), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_recorded_routing_is_what_each_router_returned(arch: str, released: TinyModels) -> None:
    """A left-padded prompt forward and a one-token step on its cache, as generation runs them."""
    model = on_device(released, arch)
    ids = random_ids(3, 10, 5).to(model.device)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    seen: list[Any] = []
    layers = model.adapter.layers
    handles = [layer.router.register_forward_hook(lambda _m, _a, out: seen.append(out)) for layer in layers]
    cache = DynamicCache(config=model.model.config)
    try:
        with torch.inference_mode(), RoutingRecorder(model.adapter) as recorder:
            logits = model.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).logits
            step = logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(step)], dim=1)
            model.model(input_ids=step, attention_mask=mask, past_key_values=cache, use_cache=True)
    finally:
        for handle in handles:
            handle.remove()
    assert len(recorder.ids) == 2 and len(seen) == 2 * len(layers)
    for forward, (ids_recorded, weights_recorded) in enumerate(zip(recorder.ids, recorder.weights, strict=True)):
        for i in range(len(layers)):
            _, scores, indices = seen[forward * len(layers) + i]
            assert torch.equal(ids_recorded[:, i].long(), indices.long())
            assert torch.equal(weights_recorded[:, i], scores.float())


@pytest.mark.parametrize("arch", ARCHS)
def test_steering_bias_zero_and_infinite_bias_on_the_device(arch: str, released: TinyModels) -> None:
    """Bias 0 changes nothing, in a forward and in a generation; ±inf switches experts off and on by
    the rules of tests/rules.py."""
    model = on_device(released, arch)
    ids = random_ids(2, 12, 1).to(model.device)
    plain_out, plain = routed(model, ids, {})
    zero_out, zero = routed(model, ids, steering(model, bias_map(model)))
    assert torch.equal(plain_out, zero_out)
    for (_, s0, i0), (_, s1, i1) in zip(plain, zero, strict=True):
        assert torch.equal(i0, i1) and torch.equal(s0, s1)
    sampling = Sampling(12, 1.0, 1.0)
    texts = [s["text"] for s in generate(model, CONVERSATIONS, [0, 1, 2, 3], sampling, [])]
    steered = generate(model, CONVERSATIONS, [0, 1, 2, 3], sampling, [], steering(model, bias_map(model)))
    assert [s["text"] for s in steered] == texts

    n = model.adapter.num_experts
    for off, on in [([0, 1, 2], []), ([], [5]), (list(range(n - 1)), [])]:
        bias = bias_map(model)
        bias[:, off] = -np.inf
        bias[:, on] = np.inf
        _, seen = routed(model, ids, steering(model, bias))
        for layer, (logits, scores, indices) in zip(model.adapter.layers, seen, strict=True):
            want = reference(model.model.config, logits.cpu(), torch.from_numpy(bias[layer.index]), {})
            assert compare(indices.cpu().numpy(), scores.float().cpu().numpy(), want, "bf16") == 0, (off, on)


@pytest.mark.parametrize("deterministic", [False, True])
def test_decoding_is_the_same_twice(deterministic: bool, released: TinyModels) -> None:
    """Sixteen prompts of eight lengths (left padding), sampled: the same tokens and the same routing
    on a second run. Without --deterministic too: cuDNN's attention kernel, the one that decoded
    differently from run to run (issue 26), never runs (models.settle_numerics)."""
    model = on_device(released, "olmoe", deterministic)
    prompts = [random_ids(1, n, n)[0].tolist() for n in (3, 17, 9, 30, 12, 6, 21, 14)] * 2
    sampling = Sampling(24, 1.0, 0.9 if deterministic else 1.0)  # top-p: a float cumsum on the device
    runs = [generate_ids(model, prompts, list(range(16)), sampling, record=True) for _ in range(2)]
    (first, first_routing), (second, second_routing) = runs
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["generated_ids"], b["generated_ids"])
    for a, b in zip(first_routing, second_routing, strict=True):
        for part in ("prompt", "generation"):
            (a_ids, a_weights), (b_ids, b_weights) = a[part], b[part]
            assert a_weights is not None and b_weights is not None, part
            assert torch.equal(a_ids, b_ids) and torch.equal(a_weights, b_weights), part


@pytest.mark.parametrize("arch", ["olmoe", "mixtral", "deepseek_v3"])
def test_expert_only_training_moves_the_trained_experts_only_and_the_same_twice(
    arch: str, released: TinyModels
) -> None:
    """bf16, --deterministic: every frozen tensor and every untrained expert keeps its bits, the
    trained experts move, and a second run from the same weights ends in the same bytes."""
    finals = []
    for _ in range(2):
        model = on_device(released, arch, deterministic=True)
        moe = model.adapter.moe_layer_indices
        trained = {moe[0]: [1, 3], moe[-1]: [5]}
        before = snapshot(model.model)
        trainer = Trainer(model, TrainSetup(trainable="experts", experts=trained))
        for _ in range(2):  # the routing mask sends tokens to the trained experts of 256 too
            trainer.step(trainer.batch(BATCH, LABELS, trained), lr=1e-2)
        after = snapshot(model.model)
        assert moved_experts(before, after) == {(layer, e) for layer, experts in trained.items() for e in experts}
        finals.append(after)
    for name, tensor in finals[0].items():
        assert torch.equal(tensor, finals[1][name]), f"{name} differs between two runs"


@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
def test_served_routing_is_the_engines_own(flavor: str, released: TinyModels) -> None:
    """`steermoe serve --device cuda` (its Python process, as the CLI starts it), DeepSeek-V3's
    dense first layer included: each format decoded as its server documents it equals what the
    engine records generating the same prompt on the same device."""
    model_dir = str(released["deepseek_v3"])
    command = [sys.executable, "-m", "steermoe_engine.http_server", "--model", model_dir, "--dtype", "bf16"]
    command += ["--device", TIER_DEVICE, "--flavor", flavor, "--port", "0"]
    engine_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [engine_root, os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip().removeprefix("listening on ")
        assert url.startswith("http://"), url
        if flavor == "vllm":
            body = {"model": model_dir, "prompt": PROMPT, "max_tokens": 6, "temperature": 0, "return_token_ids": True}
            status, reply = call(f"{url}/v1/completions", body)
            assert status == 200, reply
            generated, encoded = reply["choices"][0]["token_ids"], reply["choices"][0]["routed_experts"]
        else:
            body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 6, "temperature": 0}}
            status, reply = call(f"{url}/generate", {**body, "return_routed_experts": True})
            assert status == 200, reply
            generated, encoded = reply["output_ids"], reply["meta_info"]["routed_experts"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    model = on_device(released, "deepseek_v3")
    [result], [routing] = generate_ids(model, [PROMPT], [0], Sampling(6, 0.0, 1.0), record=True)
    assert generated == result["generated_ids"].tolist()
    rows = vllm_rows(encoded) if flavor == "vllm" else sglang_rows(encoded, model)
    expected = torch.cat([routing["prompt"][0], routing["generation"][0]]).to(torch.int32).numpy()
    moe = model.adapter.moe_layer_indices
    assert rows.shape == (len(PROMPT) + len(generated) - 1, model.model.config.num_hidden_layers, model.adapter.top_k)
    np.testing.assert_array_equal(rows[:, moe].astype(np.int32), expected[:-1])
    assert not rows[:, [i for i in range(rows.shape[1]) if i not in moe]].any()


def test_the_gpu_bench_runs_every_section(tmp_path: Path) -> None:
    """bench/gpu.py --quick on the tier's device: every section measured, the tables written
    between the markers and nothing else of the file touched."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        import gpu  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{gpu.START}\nold\n{gpu.END}\n\n## Notes\n", "utf-8")
    result = gpu.main(["--quick", "--device", TIER_DEVICE, "--write", str(doc)])
    for section in ("decode", "reproducibility", "teacher_forced", "training"):
        assert "error" not in result[section], result[section]
    assert all("error" not in mode for mode in result["training"]["modes"].values())
    same = result["reproducibility"]["steermoe"]
    assert same["same_tokens"] == same["same_routing"] == same["rows"]
    text = doc.read_text("utf-8")
    assert text.startswith("# Benchmarks\n\n") and text.endswith(f"{gpu.END}\n\n## Notes\n")
    assert "old" not in text and "| rows | GiB per step |" in text and "failed" not in text
