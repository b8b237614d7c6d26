from __future__ import annotations

import warnings
from pathlib import Path
from typing import cast

import pytest
import torch

from steermoe_engine.errors import EngineError
from steermoe_engine.models import Loaded, describe, load, settle_numerics
from steermoe_engine.tiny import build_tiny

from .conftest import ARCHS, TinyModels


def test_tiny_build_is_deterministic(tmp_path: Path) -> None:
    first = build_tiny("olmoe", str(tmp_path / "a"), seed=3)
    again = build_tiny("olmoe", str(tmp_path / "b"), seed=3)
    other = build_tiny("olmoe", str(tmp_path / "c"), seed=4)
    assert first["files"] == again["files"]
    assert first["files"]["model.safetensors"] != other["files"]["model.safetensors"]
    assert first["files"]["tokenizer.json"] == other["files"]["tokenizer.json"]


def test_tiny_build_refuses_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(EngineError, match="already exists"):
        build_tiny("olmoe", str(tmp_path / "m"), seed=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_adapter_describes_layout(arch: str, loaded: dict[str, Loaded]) -> None:
    info = describe(loaded[arch])
    assert info["model_type"] == arch
    assert info["num_layers"] == 3
    assert info["moe_layers"] == ([0, 2] if arch == "qwen2_moe" else [0, 1, 2])
    assert (info["num_experts"], info["top_k"]) == (8, 2)
    assert info["normalize_topk"] == (arch in ("mixtral", "qwen3_moe"))
    counts = info["parameters"]
    assert counts["experts"] == len(info["moe_layers"]) * 8 * counts["one_expert"]
    assert counts["total"] == sum(p.numel() for p in loaded[arch].model.parameters())
    assert info["chat_template"] is True


@pytest.mark.parametrize("arch", ARCHS)
def test_expert_parameters_are_views_of_the_fused_tensors(arch: str, loaded: dict[str, Loaded]) -> None:
    adapter = loaded[arch].adapter
    layer = adapter.layers[-1]
    params = adapter.expert_parameters(layer, 5)
    assert set(params) == {"gate_up_proj", "down_proj"}
    assert params["down_proj"].data_ptr() == cast(torch.Tensor, layer.experts.down_proj)[5].data_ptr()


def test_dense_model_is_refused(tiny_models: TinyModels) -> None:
    with pytest.raises(EngineError, match="'llama' is a dense model"):
        load(str(tiny_models["llama"]), "auto", "cpu", False)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "has no config.json"),
        (lambda p: (p.write_text("x"), p)[1], "is a file"),
        (
            lambda p: (
                p.mkdir(),
                (p / "config.json").write_text("{not json"),
                (p / "tokenizer.json").write_text("{}"),
                p,
            )[3],
            "cannot read the model config",
        ),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}"), p)[2], "has no tokenizer files"),
    ],
)
def test_bad_model_folders(tmp_path: Path, setup, message: str) -> None:
    path = setup(tmp_path / "model")
    with pytest.raises(EngineError, match=message):
        load(str(path), "auto", "cpu", False)


def test_cuda_request_without_cuda(tiny_models: TinyModels) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EngineError, match="no CUDA device"):
        load(str(tiny_models["olmoe"]), "auto", "cuda", False)


def test_device_map_auto_records_the_same_routing_bytes(tiny_models: TinyModels, tmp_path: Path) -> None:
    """On CPU, accelerate's placement puts everything on cpu: the device-map path (from_pretrained
    placing the model, inputs sent to the embeddings' device) must record what the plain path does,
    byte for byte (the shard writer sorts its metadata, so bytes do not depend on the process)."""
    from steermoe_engine.generation import Sampling, generate
    from steermoe_engine.routing import Shard

    conversations = [[{"role": "user", "content": "Name three rivers"}], [{"role": "user", "content": "Hi"}]]
    outputs = {}
    for name, device_map in [("plain", None), ("mapped", "auto")]:
        model = load(str(tiny_models["qwen2_moe"]), "fp32", "auto", False, device_map)
        shard = Shard(str(tmp_path / f"{name}.safetensors"), ["a", "b"])
        samples = generate(model, conversations, [1, 2], Sampling(6, 1.0, 1.0), [shard])
        outputs[name] = ([s["generated_ids"].tolist() for s in samples], Path(shard.path).read_bytes())
    assert model.device == torch.device("cpu")
    assert outputs["mapped"] == outputs["plain"]


def test_device_map_leaves_the_device_to_itself(tiny_models: TinyModels) -> None:
    with pytest.raises(EngineError, match="leave --device at auto"):
        load(str(tiny_models["olmoe"]), "fp32", "cpu", False, "balanced")


def test_deterministic_stops_at_an_operation_without_a_deterministic_algorithm() -> None:
    """--deterministic: an operation torch flags stops with its name; the one let through is
    CUDA's histc on integer expert ids (models.settle_numerics), whose warning is not raised."""
    try:
        settle_numerics(True)
        with pytest.raises(UserWarning, match="put_ does not have a deterministic implementation"):
            torch.zeros(3).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
        warnings.warn("_histc_cuda does not have a deterministic implementation, but ...", UserWarning, stacklevel=1)
    finally:
        settle_numerics(False)
    torch.zeros(3).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
