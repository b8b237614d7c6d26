from __future__ import annotations

from pathlib import Path

import pytest

from steermoe_engine.models import Loaded, load
from steermoe_engine.tiny import TinySize, build_tiny

ARCHS = ["olmoe", "mixtral", "qwen2_moe", "qwen3_moe"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    # Three layers so Qwen2-MoE gets a dense layer in the middle (mlp_only_layers=[1]).
    size = TinySize(layers=3)
    return {arch: Path(build_tiny(arch, str(root / arch), seed=0, size=size)["path"]) for arch in [*ARCHS, "llama"]}


@pytest.fixture(scope="session")
def loaded(tiny_models: dict[str, Path]) -> dict[str, Loaded]:
    return {arch: load(str(tiny_models[arch]), "fp32", "cpu", False) for arch in ARCHS}
