"""`steermoe serve`: an HTTP server that answers like vLLM or SGLang started with
`--enable-return-routed-experts`, with generation and routing from this engine.

It speaks the wire formats of the pinned versions (vLLM 0.32.0, SGLang 0.5.23; read from their
sources; docs/provenance.md): token ids in, generated ids and the experts of every
position back, encoded exactly as each server encodes them. So the scale-out client can be tested
end to end on a CPU, and a model either server cannot run still gets a routing server.

Sampling: a request's seed seeds the same per-sample generator the local engine uses, so a seeded
request reproduces the local sample drawn with that seed (greedy needs no seed). Concurrent
requests with the same sampling settings share a compute batch; samples do not depend on it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import queue
import random
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from .adapters import input_embeddings
from .errors import EngineError
from .generation import Sampling, chat_ids, generate_ids
from .models import Loaded, load

VLLM_VERSION = "0.32.0"
SGLANG_VERSION = "0.5.23"
# The local version label says which server this really is; the public part, which wire format.
LOCAL_LABEL = "+steermoe"

Json = dict[str, Any]

# Limits that keep a flood or a malformed request from taking the server down: connections the
# kernel queues before accept, requests held at once (beyond: 503 with Retry-After), request body
# size (beyond: 413), JSON nesting (beyond: 400), seconds a client may take to send its request.
LISTEN_BACKLOG = 1024
MAX_REQUESTS = 512
MAX_BODY_BYTES = 32 << 20
MAX_JSON_DEPTH = 64
READ_TIMEOUT_S = 60


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass(frozen=True)
class Choice:
    """One generated sequence and, when the server returns routing, the experts of every position
    but the last: [prompt + generated - 1, decoder layers, top_k] (both servers' row set)."""

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    stopped: bool  # ended on an end-of-sequence token (which token_ids includes)
    experts: np.ndarray | None


def decoder_layer_experts(loaded: Loaded, moe_ids: torch.Tensor) -> np.ndarray:
    """[tokens, MoE layers, top_k] -> [tokens, decoder layers, top_k] as both servers lay it out:
    every decoder layer, dense ones as rows of zeros; uint8, or uint16 past 256 experts (vLLM's
    capture dtype; SGLang widens to int32 when it encodes)."""
    adapter = loaded.adapter
    dtype = np.uint8 if adapter.num_experts <= 256 else np.uint16
    rows = np.zeros((len(moe_ids), adapter.num_layers, adapter.top_k), dtype=dtype)
    rows[:, adapter.moe_layer_indices] = moe_ids.to(torch.int32).numpy()
    return rows


def vllm_routed_experts(rows: np.ndarray) -> str:
    """vllm/utils/serial_utils.py numpy2base64: the array's .npy bytes, base64."""
    with io.BytesIO() as buffer:
        np.save(buffer, rows, allow_pickle=False)
        return base64.b64encode(buffer.getbuffer()).decode("ascii")


def sglang_routed_experts(rows: np.ndarray) -> str:
    """sglang detokenizer_manager.py _b64_encode_per_request: raw int32 bytes (the capturer's
    dtype, little-endian), flattened, base64."""
    return base64.b64encode(rows.astype("<i4").tobytes()).decode("utf-8")


@dataclass
class _Job:
    prompts: list[list[int]]
    seeds: list[int]
    sampling: Sampling
    done: threading.Event = field(default_factory=threading.Event)
    choices: list[Choice] = field(default_factory=list)
    error: Exception | None = None


class Batcher:
    """One thread owns the model. Jobs waiting with the same sampling settings run together, up
    to `max_batch` sequences: each row draws from its own generator, so batching changes no sample.
    `lock` is held while the model or tokenizer is in use (a Rust tokenizer is not reentrant)."""

    def __init__(self, loaded: Loaded, max_batch: int, record: bool) -> None:
        self.loaded, self.max_batch, self.record = loaded, max_batch, record
        self.lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def run(self, prompts: list[list[int]], seeds: list[int], sampling: Sampling) -> list[Choice]:
        job = _Job(prompts, seeds, sampling)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.choices

    def _take(self) -> list[_Job]:
        jobs = [self._queue.get()]
        waiting: list[_Job] = []
        while not self._queue.empty():
            waiting.append(self._queue.get())
        size = len(jobs[0].prompts)
        for job in waiting:
            if job.sampling == jobs[0].sampling and size + len(job.prompts) <= self.max_batch:
                jobs.append(job)
                size += len(job.prompts)
            else:
                self._queue.put(job)
        return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            try:
                with self.lock:
                    choices = self._generate(
                        [p for job in jobs for p in job.prompts],
                        [s for job in jobs for s in job.seeds],
                        jobs[0].sampling,
                    )
                for job in jobs:
                    job.choices, choices = choices[: len(job.prompts)], choices[len(job.prompts) :]
            except Exception as err:
                for job in jobs:
                    job.error = err
            for job in jobs:
                job.done.set()

    def _generate(self, prompts: list[list[int]], seeds: list[int], sampling: Sampling) -> list[Choice]:
        results, routing = generate_ids(self.loaded, prompts, seeds, sampling, self.record)
        choices = []
        for i, result in enumerate(results):
            experts = None
            if self.record:
                # The last generated token has not been forwarded by the servers: no row for it.
                moe_ids = torch.cat([routing[i]["prompt"][0], routing[i]["generation"][0]])[:-1]
                experts = decoder_layer_experts(self.loaded, moe_ids)
            choices.append(
                Choice(
                    prompt_ids=result["prompt_ids"].tolist(),
                    token_ids=result["generated_ids"].tolist(),
                    text=result["text"],
                    stopped=result["finish_reason"] == "eos",
                    experts=experts,
                )
            )
        return choices


# Request fields: readers that name the field in their errors ----------------------------------


def _int(body: Json, key: str, default: int | None, low: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        raise RequestError(400, f"{key} must be an integer{'' if low is None else f' >= {low}'}", key)
    return value


def _number(body: Json, key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RequestError(400, f"{key} must be a number", key)
    return float(value)


# Features this server does not have, each with the values that leave it off.
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "top_k": (None, 0, -1),
    "min_p": (None, 0),
    "stop": (None, []),
    "stop_token_ids": (None, []),
    "ignore_eos": (None, False),
    "logprobs": (None,),
    "return_logprob": (None, False),
    "echo": (None, False),
    "stream": (None, False),
}


def _refuse_unsupported(fields: Json) -> None:
    for key, off in _UNSUPPORTED.items():
        if fields.get(key) not in off:
            raise RequestError(400, f"{key} is not supported by steermoe serve", key)


def _sampling(body: Json, max_tokens_key: str, max_tokens_default: int) -> Sampling:
    temperature = _number(body, "temperature", 1.0)
    top_p = _number(body, "top_p", 1.0)
    if temperature < 0:
        raise RequestError(400, "temperature must be >= 0", "temperature")
    if not 0 < top_p <= 1:
        raise RequestError(400, "top_p must be in (0, 1]", "top_p")
    _refuse_unsupported(body)
    max_tokens = _int(body, max_tokens_key, max_tokens_default, low=1)
    assert max_tokens is not None
    return Sampling(max_tokens, temperature, top_p)


def _seed(value: int | None) -> int:
    # No seed: a fresh draw, as the servers sample unseeded requests.
    return random.randrange(2**63) if value is None else value


def _start(body: Json, key: str, prompt: list[int]) -> int:
    start = _int(body, key, 0, low=0)
    assert start is not None
    if start > len(prompt):
        raise RequestError(400, f"{key} must be between 0 and the prompt length ({len(prompt)}), inclusive.", key)
    return start


class RoutingServer:
    """The routes of one flavour ("vllm" or "sglang") over one loaded model."""

    def __init__(
        self, loaded: Loaded, name: str, flavor: str, routed_experts: bool, max_batch: int, api_key: str | None
    ) -> None:
        self.loaded, self.name, self.flavor = loaded, name, flavor
        self.routed_experts, self.api_key = routed_experts, api_key
        self.batcher = Batcher(loaded, max_batch, record=routed_experts)
        config = loaded.model.config
        self.max_model_len: int | None = getattr(config, "max_position_embeddings", None)
        self.vocab_size = input_embeddings(loaded.model).num_embeddings
        vllm: dict[tuple[str, str], Callable[[Json], Any]] = {
            ("GET", "/version"): lambda _: {"version": VLLM_VERSION + LOCAL_LABEL},
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/completions"): self.completions,
            ("POST", "/v1/chat/completions"): self.chat_completions,
        }
        sglang: dict[tuple[str, str], Callable[[Json], Any]] = {
            ("GET", "/model_info"): self.model_info,
            ("GET", "/get_model_info"): self.model_info,
            ("GET", "/server_info"): self.server_info,
            ("GET", "/get_server_info"): self.server_info,
            ("GET", "/v1/models"): self.models,
            ("POST", "/generate"): self.generate,
        }
        self.routes = vllm if flavor == "vllm" else sglang
        self.slots = threading.BoundedSemaphore(MAX_REQUESTS)

    # Shared ---------------------------------------------------------------------------------

    def models(self, _: Json) -> Json:
        """vllm serve/engine/protocol.py ModelList (SGLang answers the same shape)."""
        card = {
            "id": self.name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm" if self.flavor == "vllm" else "sglang",
            "root": self.loaded.source if self.flavor == "vllm" else self.name,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [],
        }
        return {"object": "list", "data": [card]}

    def _prompt(self, value: Any, key: str) -> list[int]:
        if isinstance(value, str):
            raise RequestError(400, f"{key}: steermoe serve takes token ids, not text", key)
        if not isinstance(value, list) or not value:
            raise RequestError(400, f"{key} must be a non-empty list of token ids", key)
        for token in value:
            if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < self.vocab_size:
                raise RequestError(
                    400, f"{key}: {token!r} is not a token id of this model (0..{self.vocab_size - 1})", key
                )
        return value

    def _prompts(self, value: Any, key: str) -> list[list[int]]:
        """One list of ids, or a list of them (a batch)."""
        if isinstance(value, list) and value and all(isinstance(p, list) for p in value):
            return [self._prompt(p, key) for p in value]
        return [self._prompt(value, key)]

    def _run(self, prompts: list[list[int]], seeds: list[int], sampling: Sampling) -> list[Choice]:
        for prompt in prompts:
            if self.max_model_len is not None and len(prompt) + sampling.max_new_tokens > self.max_model_len:
                raise RequestError(
                    400,
                    f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                    f"requested {len(prompt) + sampling.max_new_tokens} tokens ({len(prompt)} in the "
                    f"messages, {sampling.max_new_tokens} in the completion).",
                )
        try:
            return self.batcher.run(prompts, seeds, sampling)
        except EngineError as err:
            raise RequestError(400, str(err)) from err

    # vLLM ------------------------------------------------------------------------------------

    def _check_model(self, body: Json) -> None:
        model = body.get("model")
        if model is not None and model != self.name:
            raise RequestError(404, f"The model `{model}` does not exist.", "model")

    def _vllm_reply(self, body: Json, prompts: list[list[int]], kind: str, fields: Callable[[Choice], Json]) -> Json:
        """vLLM's choice order: per prompt, its n samples; sample i of a seeded request uses seed + i
        (v1/engine/parallel_sampling.py). `fields` adds what the endpoint's choices carry besides."""
        self._check_model(body)
        sampling = _sampling(body, "max_tokens", 16)
        n = _int(body, "n", 1, low=1)
        seed = _int(body, "seed", None)
        assert n is not None
        starts = [_start(body, "routed_experts_prompt_start", p) for p in prompts for _ in range(n)]
        rows = [p for p in prompts for _ in range(n)]
        seeds = [_seed(None if seed is None else seed + i) for _ in prompts for i in range(n)]
        choices = self._run(rows, seeds, sampling)
        ids = bool(body.get("return_token_ids"))
        prompt_tokens = sum(len(p) for p in prompts)
        completion_tokens = sum(len(c.token_ids) for c in choices)
        return {
            "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": i,
                    "logprobs": None,
                    "finish_reason": "stop" if choice.stopped else "length",
                    "stop_reason": None,
                    "token_ids": choice.token_ids if ids else None,
                    "routed_experts": None if choice.experts is None else vllm_routed_experts(choice.experts[start:]),
                    **fields(choice),
                }
                for i, (choice, start) in enumerate(zip(choices, starts, strict=True))
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def completions(self, body: Json) -> Json:
        """vllm entrypoints/openai/completion: protocol.py CompletionResponse, serving.py:575-595."""
        prompts = self._prompts(body.get("prompt"), "prompt")
        ids = bool(body.get("return_token_ids"))
        return self._vllm_reply(
            body,
            prompts,
            "text_completion",
            lambda choice: {
                "text": choice.text,
                "prompt_logprobs": None,
                "prompt_token_ids": choice.prompt_ids if ids else None,
            },
        )

    def chat_completions(self, body: Json) -> Json:
        """vllm entrypoints/openai/chat_completion: the prompt is rendered by the model's chat
        template here, as the server would; the ids it made come back in prompt_token_ids."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list", "messages")
        try:
            with self.batcher.lock:
                prompt = chat_ids(self.loaded, messages, add_generation_prompt=True)
        except (EngineError, KeyError, TypeError) as err:
            raise RequestError(400, f"messages: {err}", "messages") from err
        reply = self._vllm_reply(
            body, [prompt], "chat.completion", lambda choice: {"message": {"role": "assistant", "content": choice.text}}
        )
        return {**reply, "prompt_token_ids": prompt if body.get("return_token_ids") else None}

    # SGLang ----------------------------------------------------------------------------------

    def model_info(self, _: Json) -> Json:
        """sglang srt/entrypoints/http_server.py /model_info (the fields a client can use)."""
        config = self.loaded.model.config
        return {
            "model_path": self.loaded.source,
            "served_model_name": self.name,
            "tokenizer_path": self.loaded.source,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "model_type": config.model_type,
            "architectures": getattr(config, "architectures", None),
        }

    def server_info(self, _: Json) -> Json:
        return {
            "model_path": self.loaded.source,
            "served_model_name": self.name,
            "enable_return_routed_experts": self.routed_experts,
            "version": SGLANG_VERSION + LOCAL_LABEL,
            "frontend": "python",
        }

    def generate(self, body: Json) -> Any:
        """sglang srt/managers/io_struct.py GenerateReqInput in; tokenizer_manager.py out."""
        if body.get("input_ids") is None:
            raise RequestError(400, "input_ids: steermoe serve takes token ids, not text", "input_ids")
        batch = (
            isinstance(body["input_ids"], list) and bool(body["input_ids"]) and isinstance(body["input_ids"][0], list)
        )
        prompts = self._prompts(body["input_ids"], "input_ids")
        params = body.get("sampling_params") or {}
        if not isinstance(params, dict):
            raise RequestError(400, "sampling_params must be an object", "sampling_params")
        _refuse_unsupported(body)  # stream and return_logprob sit beside sampling_params
        sampling = _sampling(params, "max_new_tokens", 128)
        if _int(params, "n", 1, low=1) != 1:
            raise RequestError(400, "sampling_params.n > 1 is not supported by steermoe serve", "n")
        seed = _int(params, "sampling_seed", None)
        wanted = bool(body.get("return_routed_experts"))
        starts = [_start(body, "routed_experts_start_len", p) for p in prompts]
        choices = self._run(prompts, [_seed(seed) for _ in prompts], sampling)
        outputs = []
        for choice, start in zip(choices, starts, strict=True):
            finish = (
                {"type": "stop", "matched": choice.token_ids[-1]}
                if choice.stopped
                else {"type": "length", "length": sampling.max_new_tokens}
            )
            meta: Json = {
                "id": uuid.uuid4().hex,
                "finish_reason": finish,
                "prompt_tokens": len(choice.prompt_ids),
                "weight_version": "default",
                "num_retractions": 0,
                "reasoning_tokens": 0,
                "completion_tokens": len(choice.token_ids),
                "cached_tokens": 0,
            }
            # Absent, not null, when the server or the request did not ask (tokenizer_manager.py:2602).
            if wanted and choice.experts is not None:
                meta["routed_experts"] = sglang_routed_experts(choice.experts[start:])
            outputs.append({"text": choice.text, "output_ids": choice.token_ids, "meta_info": meta})
        return outputs if batch else outputs[0]

    # HTTP ------------------------------------------------------------------------------------

    def read_body(self, headers: Any, rfile: Any) -> bytes:
        """The request's body, its Content-Length taken strictly: digits only, at most
        MAX_BODY_BYTES, and every byte of it there."""
        declared = headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.strip().isdigit():
            raise RequestError(400, f"Content-Length {declared!r} is not a byte count")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"the body is {length} bytes; at most {MAX_BODY_BYTES} are read")
        raw = rfile.read(length) if length else b""
        if len(raw) < length:
            raise RequestError(400, f"the body ended after {len(raw)} of its {length} bytes")
        return raw

    @staticmethod
    def parse_body(raw: bytes) -> Json:
        """The body's JSON object, its nesting bounded before the parser recurses into it."""
        if not raw:
            return {}
        if _nesting(raw) > MAX_JSON_DEPTH:
            raise RequestError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(400, f"the request body is not JSON: {err}") from err
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def error_body(self, err: RequestError) -> Json:
        if self.flavor == "vllm":
            kind = {400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError"}.get(
                err.status, "InternalServerError"
            )
            return {"error": {"message": str(err), "type": kind, "param": err.param, "code": err.status}}
        return {"error": {"message": str(err)}}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = READ_TIMEOUT_S  # a client that stops sending mid-request is let go

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log: stdout carries only the listening line

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                if status >= 400:  # every error is one line on stderr (stdout has the listening line)
                    error = body.get("error", body.get("detail")) if isinstance(body, dict) else None
                    said = error.get("message") if isinstance(error, dict) else error
                    path = self.path.split("?", 1)[0]
                    print(f"steermoe serve: {status} {self.command} {path}: {said}", file=sys.stderr, flush=True)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                if not server.slots.acquire(blocking=False):
                    # Held requests are at the bound: the client is told to come back, not cut off.
                    return self._refuse(RequestError(503, "the server is busy; retry"))
                try:
                    self._answer(method, path)
                finally:
                    server.slots.release()

            def _refuse(self, err: RequestError) -> None:
                self.close_connection = True  # what is left of a refused request is not read
                self._send(err.status, server.error_body(err), {"Retry-After": "1"} if err.status == 503 else {})

            def _answer(self, method: str, path: str) -> None:
                try:
                    raw = server.read_body(self.headers, self.rfile)
                except RequestError as err:
                    return self._refuse(err)
                except TimeoutError:
                    return self._refuse(RequestError(408, f"the body took over {READ_TIMEOUT_S} s"))
                if path == "/health":
                    return self._send(200, None)
                # Both servers answer a missing or wrong key this way (their auth middlewares).
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": "Unauthorized"})
                route = server.routes.get((method, path))
                if route is None:
                    return self._send(404, {"detail": "Not Found"})
                try:
                    status, reply = 200, route(server.parse_body(raw))
                except RequestError as err:
                    status, reply = err.status, server.error_body(err)
                except Exception as err:
                    traceback.print_exc()  # a bug: the client gets the message, the log the trace
                    status, reply = 500, server.error_body(RequestError(500, f"{type(err).__name__}: {err}"))
                self._send(status, reply)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG  # socketserver's 5 resets a burst of connections
    daemon_threads = True


def http_server(routing: RoutingServer, host: str, port: int) -> ThreadingHTTPServer:
    """The listening server: a thread per connection, LISTEN_BACKLOG connections queued."""
    return _HTTPServer((host, port), routing.handler())


def _nesting(raw: bytes) -> int:
    """How deep the JSON text's arrays and objects nest (brackets inside strings not counted):
    checked before parsing, which would otherwise recurse once per level."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="steermoe serve", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--flavor", default="vllm", choices=["vllm", "sglang"])
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--compute-batch", type=int, default=16)
    parser.add_argument("--no-routed-experts", action="store_true")
    parser.add_argument("--api-key-env")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            sys.exit(f"steermoe serve: --api-key-env {args.api_key_env}: that environment variable is empty or unset")
    try:
        loaded = load(args.model, args.dtype, args.device, args.trust_remote_code, deterministic=args.deterministic)
    except EngineError as err:
        sys.exit(f"steermoe serve: {err}")
    routing = RoutingServer(
        loaded,
        args.served_model_name or args.model,
        args.flavor,
        not args.no_routed_experts,
        args.compute_batch,
        api_key,
    )
    try:
        httpd = http_server(routing, args.host, args.port)
    except OSError as err:
        sys.exit(f"steermoe serve: cannot listen on {args.host}:{args.port}: {err.strerror}")
    print(f"listening on http://{args.host}:{httpd.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a foreground server stops
        httpd.serve_forever()


if __name__ == "__main__":
    main()
