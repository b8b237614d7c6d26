"""The Python API on a model the user holds: what it records and how it steers must equal what the
CLI's engine records and steers for the same inputs (one greedy generation, same prompt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import GenerationMixin, PreTrainedModel

from steermoe import Recording, record_routing, steer
from steermoe.schema import problem, run_file_schema
from steermoe_engine.generation import Sampling, chat_ids, generate
from steermoe_engine.models import Loaded, load
from steermoe_engine.operations import steering
from steermoe_engine.routing import Shard

from .conftest import ARCHS, TinyModels

PROMPT = [{"role": "user", "content": "Tell me a story about a cat who plays the piano."}]
STEER = {"deactivate": [0, 1, 2], "activate": [5]}


def engine_run(loaded: Loaded, tmp_path: Path, layer: int | None) -> dict[str, np.ndarray]:
    """Greedy generation through the CLI's engine (its bias map as the TypeScript side sends it:
    -inf off, +inf on), its routing read back from the shard."""
    bias = None
    if layer is not None:
        bias = np.zeros((layer + 1, loaded.adapter.num_experts), dtype=np.float32)
        bias[layer, STEER["deactivate"]] = -np.inf
        bias[layer, STEER["activate"]] = np.inf
    shard = Shard(str(tmp_path / "cli.safetensors"), ["0"])
    (sample,) = generate(loaded, [PROMPT], [0], Sampling(12, 0.0, 1.0), [shard], steering(loaded, bias))
    return {**load_file(shard.path), "generated": sample["generated_ids"]}


def hf_generate(model: PreTrainedModel, inputs: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """transformers' greedy generate, as a notebook calls it."""
    assert isinstance(model, GenerationMixin)
    # transformers types generate's self as a protocol its own models do not meet statically.
    out = model.generate(inputs, max_new_tokens=new_tokens, do_sample=False)  # pyright: ignore[reportAttributeAccessIssue]
    assert isinstance(out, torch.Tensor)
    return out


def api_run(loaded: Loaded, layer: int | None) -> tuple[torch.Tensor, Recording]:
    inputs = torch.tensor([chat_ids(loaded, PROMPT, add_generation_prompt=True)])
    changes = (
        {} if layer is None else {"deactivate": [(layer, e) for e in STEER["deactivate"]], "activate": [(layer, 5)]}
    )
    with record_routing(loaded.model) as recording, steer(loaded.model, **changes):
        out = hf_generate(loaded.model, inputs, 12)
    return out[0, inputs.shape[1] :], recording


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("steered", [False, True])
def test_recorded_and_steered_routing_equals_the_cli_engine(
    arch: str, steered: bool, loaded: dict[str, Loaded], tmp_path: Path
) -> None:
    model = loaded[arch]
    layer = model.adapter.moe_layer_indices[-1]
    cli = engine_run(model, tmp_path, layer if steered else None)
    generated, recording = api_run(model, layer if steered else None)
    (call,) = recording.calls
    (sample,) = call
    n = len(cli["generated"])
    assert generated[:n].tolist() == cli["generated"].tolist()
    np.testing.assert_array_equal(sample.prompt, cli["prompt.expert_ids"])
    np.testing.assert_allclose(sample.prompt_weights, cli["prompt.router_weights"], rtol=1e-5)
    # transformers' generate does not run the last sampled token through the model.
    assert len(sample.generation) == n - 1
    np.testing.assert_array_equal(sample.generation, cli["generation.expert_ids"][: n - 1])
    if steered:
        used = np.concatenate([sample.prompt, sample.generation])[:, -1]
        assert not np.isin(used, STEER["deactivate"]).any() and (used == 5).any(-1).all()


def test_padding_is_dropped_and_shards_read_back(loaded: dict[str, Loaded], tmp_path: Path) -> None:
    model = loaded["qwen2_moe"]
    rows = [
        chat_ids(model, [{"role": "user", "content": text}], True) for text in ("Hi", "Write a poem about the sea.")
    ]
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[1] * (width - len(r)) + r for r in rows])
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with record_routing(model.model) as recording:
        model.model(input_ids=input_ids, attention_mask=attention_mask)
        with record_routing(model.model) as inner:
            model.model(torch.tensor([rows[0]]))
            hf_generate(model.model, torch.tensor([rows[0]]), 3)
        assert len(inner.calls) == 2 and "generate" in vars(model.model)
    padded, alone, generated = recording.calls
    assert len(generated[0].generation) == 2 and generated[0].prompt.shape == alone[0].prompt.shape
    assert [len(s.prompt) for s in padded] == [len(r) for r in rows]
    np.testing.assert_array_equal(padded[0].prompt, alone[0].prompt)
    assert padded[0].generation.shape == (0, len(recording.moe_layers), model.adapter.top_k)
    recording.write_shard(tmp_path / "api.safetensors", ["short", "long", "again", "generated"])
    shard = load_file(str(tmp_path / "api.safetensors"))
    short, long = len(rows[0]), len(rows[1])
    assert shard["prompt.offsets"].tolist() == [0, short, short + long, 2 * short + long, 3 * short + long]
    assert shard["generation.offsets"].tolist() == [0, 0, 0, 0, 2]
    np.testing.assert_array_equal(shard["prompt.expert_ids"][short : short + long], padded[1].prompt)
    # Outside the `with` nothing is recorded and generate is the model's own again.
    model.model(torch.tensor([rows[0]]))
    assert len(recording.calls) == 3 and "generate" not in vars(model.model)


def test_steer_refuses_what_the_cli_refuses(loaded: dict[str, Loaded]) -> None:
    model = loaded["qwen2_moe"].model  # layer 1 is dense
    for changes, message in [
        ({"deactivate": [(1, 0)]}, "layer 1 is not an MoE layer"),
        ({"deactivate": [(0, 99)]}, "layer 0 has no expert 99"),
        ({"deactivate": [(0, 2)], "activate": [(0, 2)]}, "expert 2 is both activated and deactivated"),
        ({"deactivate": [(0, e) for e in range(8)]}, "switches off every expert"),
        ({"activate": [(0, 1), (0, 2), (0, 3)]}, "activates 3 experts, but only top-2 are used"),
    ]:
        with pytest.raises(ValueError, match=message), steer(model, **changes):
            pass


def test_steer_refuses_forced_experts_in_more_groups_than_the_router_picks(tiny_models: TinyModels) -> None:
    model = load(str(tiny_models["deepseek_v3"]), "fp32", "cpu", False).model  # 2 groups of 4, 1 picked
    refused = "activates experts 0, 7 in 2 expert groups, but the router uses 1 of its 2"
    with pytest.raises(ValueError, match=refused), steer(model, activate=[(1, 0), (1, 7)]):
        pass
    with steer(model, activate=[(1, 0), (1, 3)]):  # one group: allowed
        pass


def test_the_validator_names_the_field() -> None:
    schema = run_file_schema("train_log")
    row = {"step": 0, "epoch": 0, "batch_idx": 1, "sample_ids": ["a"], "loss": None, "router_loss": 0.0}
    row |= {"lr": 1e-3, "grad_norm": 1.0, "tokens": 9, "seconds": 0.5}
    assert problem(row, schema) is None
    assert problem({**row, "step": True}, schema) == "step: expected integer, got bool"
    assert problem({**row, "sample_ids": ["a", 3]}, schema) == "sample_ids[1]: expected string, got int"
    assert problem({**row, "extra": 1}, schema) == "extra: unknown field"
    assert problem({k: v for k, v in row.items() if k != "lr"}, schema) == "lr: missing"


def test_load_run_names_file_line_and_field(tmp_path: Path) -> None:
    from steermoe import SchemaError, load_run

    with pytest.raises(FileNotFoundError, match=r"no samples\.jsonl; give a folder made by steermoe analyze"):
        load_run(tmp_path)
    for name in ("experts.json", "risk_diff.parquet", "risk_diff_batches.parquet"):
        (tmp_path / name).write_text("{}")
    good = {"sample_id": "0:safe", "pair_id": "0", "batch_idx": 0, "in_batch_idx": 0, "label": "safe", "seed": 1}
    good |= {"messages": [{"role": "user", "content": "hi"}], "prompt_token_ids": [1], "generated_token_ids": [2]}
    good |= {"text": "x", "finish_reason": "eos", "verdict": None, "qc_pass": True, "kept": True, "why": None}
    good |= {"routing": {"shard": "routing/batch-00000.safetensors", "index": 0}}
    bad = {**good, "label": "maybe"}
    (tmp_path / "samples.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(SchemaError, match=r"samples\.jsonl line 2: label: 'maybe' is not one of \['safe', 'unsafe'\]"):
        load_run(tmp_path)
    (tmp_path / "samples.jsonl").write_text(json.dumps(good) + "\n")
    with pytest.raises(SchemaError, match=r"experts\.json: num_layers: missing"):
        load_run(tmp_path)
