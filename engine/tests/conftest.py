from __future__ import annotations

from pathlib import Path

import pytest

from steermoe_engine.models import Loaded, load
from steermoe_engine.tiny import TinySize, build_tiny

from .support import record_outcome, write_matrix

ARCHS = ["olmoe", "mixtral", "qwen2_moe", "qwen3_moe"]
# Every architecture with a routing adapter, one tiny model each (test_families.py).
ALL_ARCHS = [
    *ARCHS,
    "flex_olmo",
    "qwen3_next",
    "qwen3_5_moe_text",
    "gpt_oss",
    "granitemoe",
    "granitemoeshared",
    "granitemoe_swa",
    "jamba",
    "hunyuan_v1_moe",
    "phimoe",
    "ernie4_5_moe",
    "deepseek_v2",
    "deepseek_v3",
    "glm4_moe",
    "dots1",
    "glm4_moe_lite",
    "solar_open",
    "exaone_moe",
    "axk1",
    "deepseek_v32",
    "glm_moe_dsa",
    "mellum",
    "minimax_m2",
    "llama4_text",
]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    # Three layers so Qwen2-MoE gets a dense layer in the middle (mlp_only_layers=[1]), DeepSeek
    # and GLM a dense first layer, Llama 4 a dense layer on each side of its MoE layer.
    size = TinySize(layers=3)
    return {arch: Path(build_tiny(arch, str(root / arch), seed=0, size=size)["path"]) for arch in [*ALL_ARCHS, "llama"]}


@pytest.fixture(scope="session")
def loaded(tiny_models: dict[str, Path]) -> dict[str, Loaded]:
    return {arch: load(str(tiny_models[arch]), "fp32", "cpu", False) for arch in ALL_ARCHS}


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    record_outcome(item, call)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    write_matrix(session, exitstatus)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Before -k deselects anything: how many family tests a complete run has.
    config._families_total = sum(
        1 for i in items if i.module is not None and i.module.__name__.endswith("test_families")
    )  # type: ignore[attr-defined]
