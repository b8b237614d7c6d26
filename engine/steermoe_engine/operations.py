"""The engine's operations. Requests are validated on the TypeScript side before they are sent;
each handler takes the request's params and returns a JSON-able dict (numpy arrays allowed)."""

from __future__ import annotations

import errno
import platform
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import transformers
from transformers.utils import logging as hf_logging

from . import server_backend
from .clipping import clip
from .control import LayerControl
from .distributed import rank_and_world, rank_device
from .errors import EngineError, first_line
from .files import apply_delta, expert_delta, load_tensors, save_model, save_tensors
from .fingerprint import free_memory, model_fingerprint, model_limits
from .generation import Sampling, chat_ids, generate, naming, replay, sample_ids
from .models import DTYPES, Loaded, describe, load, resolve_device, resolve_dtype
from .routing import Shard
from .tiny import TinySize, build_tiny
from .training import Batch, RouterLoss, Trainer, TrainSetup, full_state

Handler = Callable[[dict[str, Any]], dict[str, Any]]
DISK_FAULTS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}
DISK_WORDS = ("Read-only file system", "No space left on device", "Permission denied", "Disk quota exceeded")


class Operations:
    def __init__(self) -> None:
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.loaded: Loaded | None = None
        self.trainer: Trainer | None = None
        self.batches: list[Batch] = []
        self.handlers: dict[str, Handler] = {
            "load": self.load,
            "generate": self.generate,
            "replay": self.replay,
            "render": self.render,
            "record_served": self.record_served,
            "count_tokens": self.count_tokens,
            "free_memory": self.free_memory,
            "build_tiny": self.build_tiny,
            "train_setup": self.train_setup,
            "train_step": self.train_step,
            "save_checkpoint": self.save_checkpoint,
            "load_checkpoint": self.load_checkpoint,
            "save_model": self.save_model,
            "save_delta": self.save_delta,
            "apply_delta": self.apply_delta,
            "clip_texts": self.clip_texts,
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
        # The disk refusing a write (read-only, no permission, full) is the user's to mend: one line
        # naming the file. safetensors reports it in its own error type, with the OS's words.
        if (isinstance(err, OSError) and err.errno in DISK_FAULTS) or any(w in str(err) for w in DISK_WORDS):
            where = getattr(err, "filename", None)
            if isinstance(where, str):  # the file meant, not the temporary name it is written under
                where = re.sub(r"/\.([^/]+)\.tmp-\d+$", r"/\1", where)
            why = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
            return {"type": "EngineError", "message": f"{where}: {why}" if where else f"cannot write: {why}"}
        if isinstance(err, torch.OutOfMemoryError):
            return {"type": "OutOfMemory", "message": str(err).splitlines()[0], "traceback": trace}
        return {"type": type(err).__name__, "message": str(err), "traceback": trace}

    def _model(self) -> Loaded:
        if self.loaded is None:
            raise EngineError("no model is loaded; send 'load' first")
        return self.loaded

    def load(self, params: dict[str, Any]) -> dict[str, Any]:
        self.loaded, self.trainer = None, None  # free the previous model before reading the next one
        source, dtype, device, trust = params["source"], params["dtype"], params["device"], params["trust_remote_code"]
        deterministic = params["deterministic"]
        if rank_and_world()[1] == 1:
            self.loaded = load(source, dtype, device, trust, params.get("device_map"), deterministic)
        else:
            # Each rank reads the model into memory and FSDP2 moves only its shard to its device.
            target = rank_device(resolve_device(device))
            dtype = next(name for name, d in DTYPES.items() if d == resolve_dtype(dtype, target))
            self.loaded = load(source, dtype, "cpu", trust, deterministic=deterministic)
            self.loaded.device = target
        return {
            **describe(self.loaded),
            **model_limits(self.loaded.model, self.loaded.tokenizer),
            "fingerprint": model_fingerprint(source),
        }

    def count_tokens(self, params: dict[str, Any]) -> dict[str, Any]:
        """Token counts of conversations as generation and training render them (chat template)."""
        loaded, prompt, conversations = self._model(), params["add_generation_prompt"], params["conversations"]
        lengths = []
        for sample_id, messages in zip(sample_ids(params.get("ids"), conversations), conversations, strict=True):
            with naming(sample_id):
                lengths.append(len(chat_ids(loaded, messages, add_generation_prompt=prompt)))
        return {"lengths": np.asarray(lengths, dtype=np.int32)}

    def free_memory(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"bytes": free_memory(self._model().device)}

    def generate(self, params: dict[str, Any]) -> dict[str, Any]:
        sampling = Sampling(params["max_new_tokens"], params["temperature"], params["top_p"])
        loaded = self._model()
        steer = steering(loaded, params.get("steer"))
        shards = [Shard(**shard) for shard in params["shards"]]
        conversations, ids = params["conversations"], params.get("ids")
        return {"samples": generate(loaded, conversations, params["seeds"], sampling, shards, steer, ids)}

    def replay(self, params: dict[str, Any]) -> dict[str, Any]:
        shards = [Shard(**shard) for shard in params["shards"]]
        return {"samples": replay(self._model(), params["conversations"], shards, params.get("ids"))}

    def render(self, params: dict[str, Any]) -> dict[str, Any]:
        return server_backend.render(self._model(), params["conversations"], params["replay"])

    def record_served(self, params: dict[str, Any]) -> dict[str, Any]:
        shards = [Shard(**shard) for shard in params["shards"]]
        return {"samples": server_backend.record(self._model(), params["samples"], params["max_new_tokens"], shards)}

    def build_tiny(self, params: dict[str, Any]) -> dict[str, Any]:
        size = TinySize(**params.get("size", {}))
        return build_tiny(
            params["arch"], params["out"], params["seed"], size, params.get("corpus"), params.get("released", False)
        )

    def _trainer(self) -> Trainer:
        if self.trainer is None:
            raise EngineError("training is not set up; send 'train_setup' first")
        return self.trainer

    def train_setup(self, params: dict[str, Any]) -> dict[str, Any]:
        """The trainer and every batch of the run, tokenized once (their lengths go back for the
        context check); steps then name a batch."""
        torch.manual_seed(params["seed"])
        setup = TrainSetup(
            trainable=params["trainable"],
            experts=_layer_map(params.get("experts", {})),
            weight_decay=params["weight_decay"],
            grad_clip=params["grad_clip"],
            loss_on=params["loss_on"],
            router_loss=RouterLoss(**params["router_loss"]),
            gradient_checkpointing=params["gradient_checkpointing"],
            micro_batch=params["micro_batch"],
        )
        self.trainer = None
        if len({p.device for p in self._model().model.parameters()}) > 1:
            raise EngineError("training needs the model on one device, not spread by --device-map")
        trainer = Trainer(self._model(), setup)
        batches = []
        for i, b in enumerate(params["batches"]):
            try:
                batches.append(trainer.batch(b["conversations"], b["labels"], _layer_map(b["allowed"]), b.get("ids")))
            except EngineError as err:
                raise EngineError(f"batch {i}: {err}") from err
        self.trainer, self.batches = trainer, batches
        lengths = [len(ids) for batch in batches for ids, _ in batch.encoded]
        return {"trainable_parameters": trainer.trainable_parameters(), "lengths": lengths}

    def train_step(self, params: dict[str, Any]) -> dict[str, Any]:
        trainer = self._trainer()
        stats = trainer.step(self.batches[params["batch"]], params["lr"])
        state_bytes = sum(
            v.numel() * v.element_size()
            for s in trainer.optimizer.state.values()
            for v in s.values()
            if torch.is_tensor(v)
        )
        return {**stats, "optimizer_state_bytes": state_bytes}

    def save_checkpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        position = {"step": str(params["step"]), "epoch": str(params["epoch"])}
        state = self._trainer().state()
        if rank_and_world()[0] == 0:
            save_tensors(state, params["path"], position)
        return {}

    def load_checkpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        tensors, metadata = load_tensors(params["path"])
        self._trainer().load_state(tensors)
        return {"step": int(metadata["step"]), "epoch": int(metadata["epoch"])}

    def save_model(self, params: dict[str, Any]) -> dict[str, Any]:
        loaded = self._model()
        state = full_state(loaded.model) if rank_and_world()[1] > 1 else None
        if rank_and_world()[0] == 0:
            save_model(loaded.model, loaded.tokenizer, params["out"], state)
        return {}

    def save_delta(self, params: dict[str, Any]) -> dict[str, Any]:
        experts = _layer_map(params["experts"])
        tensors = expert_delta(self._model(), experts)
        if rank_and_world()[0] == 0:
            save_tensors(tensors, params["out"], params["metadata"])
        return {"tensors": sorted(tensors)}

    def apply_delta(self, params: dict[str, Any]) -> dict[str, Any]:
        touched = apply_delta(self._model(), load_tensors(params["delta"])[0])
        return {"experts": {str(k): v for k, v in touched.items()}}

    def clip_texts(self, params: dict[str, Any]) -> dict[str, Any]:
        """Generations as HarmBench's classifier sees them (clipping.py); needs no model loaded."""
        texts, clipped = clip(params["tokenizer"], params["max_tokens"], params["texts"])
        return {"texts": texts, "clipped": clipped}


def steering(loaded: Loaded, bias: np.ndarray | None) -> dict[int, LayerControl]:
    """A bias map [decoder layers, experts] (±inf allowed; checked against the model by the
    TypeScript side, which knows it from `load`) -> one control per MoE layer. Every MoE layer gets
    its row, zeros included: bias 0 is the router's own choice, bit for bit (control.py)."""
    if bias is None:
        return {}
    return {
        layer.index: LayerControl(torch.tensor(bias[layer.index], dtype=torch.float32, device=loaded.device))
        for layer in loaded.adapter.layers
    }


def _layer_map(value: dict[str, list[int]]) -> dict[int, list[int]]:
    """JSON object keys are strings; layers are decoder-layer indices."""
    return {int(k): [int(e) for e in v] for k, v in value.items()}
