from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from steermoe_engine.models import Loaded, load
from steermoe_engine.tiny import RELEASED, TinySize, build_tiny

from .support import FAMILIES_COLLECTED, FAMILIES_FILE, record_outcome, write_matrix

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


# The CUDA tier (`pytest -m cuda`): the claims that depend on the platform, run on the GPU at hand.
# Skipped without CUDA, so never in CI. STEERMOE_TIER_DEVICE=cpu runs the same tests on the CPU,
# which checks the tier itself on a machine without a GPU.
TIER_DEVICE = os.environ.get("STEERMOE_TIER_DEVICE", "cuda")
CUDA_TIER = [
    pytest.mark.cuda,
    pytest.mark.skipif(TIER_DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device"),
]

# Three layers so Qwen2-MoE gets a dense layer in the middle (mlp_only_layers=[1]), DeepSeek
# and GLM a dense first layer, Llama 4 a dense layer on each side of its MoE layer.
SIZE = TinySize(layers=3)


class TinyModels(dict[str, Path]):
    """Architecture -> its tiny model folder, built on first use. `released`: the released
    checkpoint's routing (tiny.RELEASED) where one is known; else the tiny default (top-2 of 8),
    small and fast, for the mechanisms' tests."""

    def __init__(self, root: Path, released: bool) -> None:
        super().__init__()
        self.root, self.released = root, released

    def __missing__(self, arch: str) -> Path:
        path = self.root / arch
        if not path.exists():  # built by an earlier pass (cpu_paths.py)
            build_tiny(arch, str(path), seed=0, size=SIZE, released=self.released and arch in RELEASED)
        self[arch] = path
        return path


def models_root(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where the tiny models go: shared by both passes of cpu_paths.py, else this session's."""
    shared = os.environ.get("STEERMOE_TEST_MODELS")
    if not shared:
        return tmp_path_factory.mktemp(name)
    (Path(shared) / name).mkdir(exist_ok=True)
    return Path(shared) / name


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(models_root(tmp_path_factory, "tiny"), released=False)


@pytest.fixture(scope="session")
def loaded(tiny_models: TinyModels) -> dict[str, Loaded]:
    return {arch: load(str(tiny_models[arch]), "fp32", "cpu", False) for arch in ARCHS}


Family = Callable[[str, str], Loaded]


@pytest.fixture(scope="session")
def family(tmp_path_factory: pytest.TempPathFactory) -> Family:
    """(architecture, dtype) -> its tiny model with the released checkpoint's routing, loaded once
    (tests that change weights load their own copy from its `source`)."""
    models = TinyModels(models_root(tmp_path_factory, "released"), released=True)
    cache: dict[tuple[str, str], Loaded] = {}

    def get(arch: str, dtype: str) -> Loaded:
        if (arch, dtype) not in cache:
            cache[(arch, dtype)] = load(str(models[arch]), dtype, "cpu", False)
        return cache[(arch, dtype)]

    return get


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    record_outcome(item, call)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    write_matrix(session, exitstatus)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Before -k deselects anything: how many family tests a complete run has.
    config.stash[FAMILIES_COLLECTED] = sum(1 for i in items if i.path.name == FAMILIES_FILE)
