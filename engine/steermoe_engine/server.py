"""The engine's operations. Requests are validated on the TypeScript side before they are sent;
each handler takes the request's params and returns a JSON-able dict (numpy arrays allowed)."""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

import torch
import transformers
from transformers.utils import logging as hf_logging

from .errors import EngineError
from .generation import Sampling, generate, replay
from .models import Loaded, describe, load
from .tiny import TinySize, build_tiny

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class Server:
    def __init__(self) -> None:
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.loaded: Loaded | None = None
        self.handlers: dict[str, Handler] = {
            "load": self.load,
            "generate": self.generate,
            "replay": self.replay,
            "build_tiny": self.build_tiny,
            "shutdown": lambda _params: {},
        }

    def versions(self) -> dict[str, Any]:
        return {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.cuda.is_available(),
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        }

    def describe_error(self, err: BaseException, trace: str) -> dict[str, str]:
        if isinstance(err, EngineError):
            return {"type": "EngineError", "message": str(err)}
        if isinstance(err, torch.OutOfMemoryError):
            return {"type": "OutOfMemory", "message": str(err).splitlines()[0], "traceback": trace}
        return {"type": type(err).__name__, "message": str(err), "traceback": trace}

    def _model(self) -> Loaded:
        if self.loaded is None:
            raise EngineError("no model is loaded; send 'load' first")
        return self.loaded

    def load(self, params: dict[str, Any]) -> dict[str, Any]:
        self.loaded = None  # free the previous model before reading the next one
        self.loaded = load(params["source"], params["dtype"], params["device"], params["trust_remote_code"])
        return describe(self.loaded)

    def generate(self, params: dict[str, Any]) -> dict[str, Any]:
        sampling = Sampling(params["max_new_tokens"], params["temperature"], params["top_p"])
        samples = generate(self._model(), params["conversations"], params["seeds"], sampling, params["record"])
        return {"samples": samples}

    def replay(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"samples": replay(self._model(), params["conversations"])}

    def build_tiny(self, params: dict[str, Any]) -> dict[str, Any]:
        size = TinySize(**params.get("size", {}))
        return build_tiny(params["arch"], params["out"], params["seed"], size, params.get("corpus"))
