"""Loading a model, its tokenizer and its MoE adapter."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .adapters import MoeAdapter, check_supported, input_embeddings
from .errors import EngineError, first_line

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
# The warning torch gives for an operation without a deterministic algorithm (warn_only).
NONDETERMINISTIC = r".* does not have a deterministic implementation"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
Phase = Literal["prefill", "decode"]
# The transformers experts implementation each phase runs, by device type. On CPU the per-expert
# loop ("eager") runs prompts ~30% faster than grouped_mm (no copy of every token per chosen
# expert in one gathered tensor), and grouped_mm runs the one-token steps of 4 to 64 rows 20-35%
# faster (docs/benchmarks.md, Notes, "Issue 15"). On CUDA grouped_mm is one fused kernel for both.
EXPERTS_KERNELS: dict[str, dict[Phase, str]] = {
    "cpu": {"prefill": "eager", "decode": "grouped_mm"},
    "cuda": {"prefill": "grouped_mm", "decode": "grouped_mm"},
}


@dataclass
class Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: MoeAdapter
    source: str
    # Where inputs go: the device, or with a device map the embeddings' (the first layers').
    device: torch.device
    # The experts implementation per phase; None where the model's experts have only their own.
    kernels: dict[Phase, str] | None = None

    @classmethod
    def of(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str) -> Loaded:
        """A model in memory, placed where it will run."""
        device = input_embeddings(model).weight.device
        return cls(model, tokenizer, MoeAdapter(model), source, device, _kernels(model, device))

    @contextlib.contextmanager
    def phases(self) -> Iterator[Callable[[Phase], None]]:
        """Inside, `use(phase)` switches to the phase's experts implementation (if the model has
        a choice); after, the model has the one it had."""
        kernels = self.kernels
        with experts_implementation(self.model) as use:
            yield (lambda phase: use(kernels[phase])) if kernels is not None else (lambda _phase: None)


@contextlib.contextmanager
def experts_implementation(model: PreTrainedModel) -> Iterator[Callable[[str], None]]:
    """Inside, `use(name)` switches the model's transformers experts implementation for the
    forwards that follow; after, it computes with the one it had, so what runs next (a training
    step after a generation) never depends on what ran before."""
    before = model.config._experts_implementation

    def use(name: str) -> None:
        if model.config._experts_implementation != name:
            model.set_experts_implementation(name)

    try:
        yield use
    finally:
        if before is not None:
            use(before)


def _kernels(model: PreTrainedModel, device: torch.device) -> dict[Phase, str] | None:
    kernels = EXPERTS_KERNELS.get(device.type)
    if kernels is None or not type(model)._can_set_experts_implementation():
        return None
    return dict(kernels)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device '{device}' was asked for, but this machine has no CUDA device")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bf16 matmuls on CPU are slower than fp32 and lose precision: use fp32 there.
    return torch.float32


def _check_source(source: str) -> None:
    path = Path(source)
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if not looks_local:
        return  # a hub id: from_pretrained downloads it where the network allows
    if not path.exists():
        raise EngineError(f"model folder {source} does not exist")
    if not path.is_dir():
        raise EngineError(f"model path {source} is a file; give the folder holding config.json")
    if not os.access(path, os.R_OK | os.X_OK):
        raise EngineError(f"model folder {source} is not readable")
    if not (path / "config.json").is_file():
        raise EngineError(f"{source} is not a model folder: it has no config.json")
    # Without them transformers quietly makes an empty tokenizer, and every text turns to noise.
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise EngineError(f"{source} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")


def check_safetensors(path: str | Path) -> None:
    """Reads the header only: a cut or foreign file is named before anything loads it."""
    if not Path(path).is_file():
        raise EngineError(f"{path} is missing")
    try:
        with safe_open(str(path), "pt"):
            pass
    except Exception as err:  # safetensors raises its own, undocumented types
        raise EngineError(
            f"{path}: incomplete or damaged safetensors file ({first_line(err)}; not a weights file?)"
        ) from err


def _placed(device_map: str | None, device: str) -> dict[str, Any]:
    """from_pretrained's placement: accelerate's, whole decoder layers per device (the model's
    _no_split_modules), so hooks on a layer's router run on the device that holds the layer."""
    if device_map is None:
        return {}
    if device != "auto":
        raise EngineError("--device-map places the model itself: leave --device at auto")
    return {"device_map": device_map}


def _config(source: str, trust_remote_code: bool) -> Any:
    _check_source(source)
    if Path(source).is_dir():
        for weights in sorted(Path(source).glob("*.safetensors")):
            check_safetensors(weights)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot read the model config of {source}: {first_line(err)}") from err
    check_supported(config)
    return config


def settle_numerics(deterministic: bool) -> None:
    """How this process computes, set before a model loads (the engine process is steermoe's own).

    cuDNN's attention kernel never runs. It is torch's first choice where it applies on recent
    GPUs; with that automatic choice decoding differed from run to run on an H200 (issue 26: 0 of
    64 rows routed the same twice), and with flash, memory-efficient or math attention pinned it
    did not (64 of 64, no slower). It has also returned NaN gradients under an attention mask on
    H100/H200 (pytorch#196678) and corrupted greedy decoding on B200 (pytorch#193893). Flash,
    memory-efficient and math attention remain. Without CUDA this changes nothing.

    `deterministic`: every operation takes its deterministic algorithm, or the run stops naming the
    one that has none (torch.use_deterministic_algorithms), cuBLAS included (its workspace setting
    must be in place before its first call, which comes with the first model on the GPU). One
    flagged operation is let through: torch.histc on CUDA, flagged for its atomic adds, with which
    transformers' grouped_mm and trained_rows.py count tokens per expert; on integer expert ids, as
    both pass them there, the counts are exact in any order."""
    torch.backends.cuda.enable_cudnn_sdp(False)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Flagged operations warn (warn_only) so that the one exception can be made; the rest error.
    warnings.filterwarnings("error", message=NONDETERMINISTIC)
    warnings.filterwarnings("ignore", message=f"_histc_cuda{NONDETERMINISTIC}")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def load(
    source: str,
    dtype: str,
    device: str,
    trust_remote_code: bool,
    device_map: str | None = None,
    deterministic: bool = False,
) -> Loaded:
    if device == "meta":
        return _load_shapes(source, trust_remote_code)
    _config(source, trust_remote_code)
    settle_numerics(deterministic)
    target = resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as err:  # tokenizer files fail in many ways (JSON, sentencepiece, missing)
        raise EngineError(f"cannot load the tokenizer files in {source}: {first_line(err)}") from err
    try:
        model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=resolve_dtype(dtype, target),
            trust_remote_code=trust_remote_code,
            **_placed(device_map, device),
        )
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot load the model in {source}: {first_line(err)}") from err
    if device_map is None:
        # transformers declares `to` through functools.wraps, which pyright takes for an unbound method.
        model.to(target)  # pyright: ignore[reportArgumentType]
    model.eval()
    devices = {p.device.type for p in model.parameters()}
    if "meta" in devices or (device_map is not None and target.type == "cuda" and "cpu" in devices):
        # Offloaded weights live outside the layers between calls: steering, deltas and training
        # would write into copies. The model must fit the GPUs.
        raise EngineError(f"{source} does not fit the GPUs: --device-map {device_map} offloaded part of it")
    return Loaded.of(model, tokenizer, source)


def _load_shapes(source: str, trust_remote_code: bool) -> Loaded:
    """The tokenizer and a weightless model (device "meta": shapes, no memory, nothing read but
    config.json): enough to render prompts, decode ids and know every routing count, for when an
    inference server does the generating."""
    config = _config(source, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot load the tokenizer in {source}: {first_line(err)}") from err
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    # End-of-sequence ids come from generation_config.json, as when the weights are loaded.
    with contextlib.suppress(OSError):
        model.generation_config = GenerationConfig.from_pretrained(source)
    return Loaded(model.eval(), tokenizer, MoeAdapter(model), source, torch.device("meta"))


def describe(loaded: Loaded) -> dict[str, Any]:
    """What `steermoe inspect` shows."""
    model, adapter = loaded.model, loaded.adapter
    return {
        "source": loaded.source,
        "model_type": adapter.model_type,
        "architecture": adapter.architecture.name,
        "class_name": type(model).__name__,
        "num_layers": adapter.num_layers,
        "moe_layers": adapter.moe_layer_indices,
        "num_experts": adapter.num_experts,
        "top_k": adapter.top_k,
        "normalize_topk": adapter.normalize_topk,
        "routing_family": adapter.family.name,
        "expert_groups": adapter.family.expert_groups(adapter.layers[0].router),
        "shared_experts": {str(k): v for k, v in adapter.shared_experts().items()},
        "hidden_size": int(model.config.hidden_size),
        "vocab_size": int(model.config.vocab_size),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(loaded.device),
        "parameters": adapter.parameter_counts(model),
        "chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
        "experts_kernels": loaded.kernels,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
