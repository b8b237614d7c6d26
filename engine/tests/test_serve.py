"""`steermoe serve` answers as vLLM 0.32.0 and SGLang 0.5.23 do, over real sockets.

The payloads are decoded here the way each server documents its own format (vLLM: base64 of .npy
bytes, np.load; SGLang: base64 of raw int32, np.frombuffer, reshaped by the model config), not with
the server's code, and compared with an independent teacher-forced pass over prompt + generated ids.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from steermoe_engine import http_server as serve
from steermoe_engine.generation import Sampling, generate_ids
from steermoe_engine.http_server import RoutingServer, http_server
from steermoe_engine.models import Loaded, load
from steermoe_engine.routing import RoutingRecorder
from steermoe_engine.tiny import TinySize, build_tiny

PROMPT = [5, 17, 42, 99, 7, 250]


@pytest.fixture(scope="module")
def deepseek(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """Dense first layer (first_k_dense_replace), MoE layers 1 and 2."""
    path = build_tiny("deepseek_v3", str(tmp_path_factory.mktemp("serve") / "ds3"), seed=0, size=TinySize(layers=3))
    loaded = load(path["path"], "fp32", "cpu", False)
    assert loaded.adapter.moe_layer_indices == [1, 2]
    return loaded


@contextmanager
def running(loaded: Loaded, flavor: str, routed_experts: bool = True, api_key: str | None = None) -> Iterator[str]:
    server = RoutingServer(loaded, "tiny", flavor, routed_experts, max_batch=8, api_key=api_key)
    httpd = http_server(server, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def call(url: str, body: dict[str, Any] | None = None, key: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def vllm_rows(encoded: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(encoded)), allow_pickle=False)


def sglang_rows(encoded: str, loaded: Loaded) -> np.ndarray:
    config = loaded.model.config
    flat = np.frombuffer(base64.b64decode(encoded), dtype="<i4")
    return flat.reshape(-1, config.num_hidden_layers, config.num_experts_per_tok)


def teacher_forced(loaded: Loaded, ids: list[int]) -> np.ndarray:
    """[tokens, MoE layers, top_k]: one unpadded forward over the whole sequence."""
    with torch.inference_mode(), RoutingRecorder(loaded.adapter) as recorder:
        loaded.model(input_ids=torch.tensor([ids]))
    return recorder.ids[0].to(torch.int32).numpy()


def local(loaded: Loaded, seed: int, sampling: Sampling, prompt: list[int] = PROMPT) -> list[int]:
    results, _ = generate_ids(loaded, [prompt], [seed], sampling, record=False)
    return results[0]["generated_ids"].tolist()


def check_rows(loaded: Loaded, rows: np.ndarray, ids: list[int]) -> None:
    """Rows for every position but the last, every decoder layer; dense layers all zero."""
    moe = loaded.adapter.moe_layer_indices
    assert rows.shape == (len(ids) - 1, loaded.model.config.num_hidden_layers, loaded.adapter.top_k)
    np.testing.assert_array_equal(rows[:, moe].astype(np.int32), teacher_forced(loaded, ids)[:-1])
    dense = [i for i in range(rows.shape[1]) if i not in moe]
    assert not rows[:, dense].any()


def test_vllm_completion_returns_ids_and_the_routing_of_every_position(deepseek: Loaded) -> None:
    with running(deepseek, "vllm") as url:
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 6, "temperature": 0, "return_token_ids": True}
        status, reply = call(f"{url}/v1/completions", body)
        assert status == 200, reply
        (choice,) = reply["choices"]
        assert choice["prompt_token_ids"] == PROMPT
        assert choice["token_ids"] == local(deepseek, 0, Sampling(6, 0.0, 1.0))
        assert choice["finish_reason"] == "length" and reply["usage"]["completion_tokens"] == 6
        rows = vllm_rows(choice["routed_experts"])
        assert rows.dtype == np.uint8
        check_rows(deepseek, rows, PROMPT + choice["token_ids"])

        _, late = call(f"{url}/v1/completions", {**body, "routed_experts_prompt_start": 4})
        np.testing.assert_array_equal(vllm_rows(late["choices"][0]["routed_experts"]), rows[4:])

        # Seeded sampling draws as the local engine does with that seed; choice i uses seed + i.
        _, sampled = call(f"{url}/v1/completions", {**body, "temperature": 1.0, "seed": 11, "n": 2})
        assert [c["token_ids"] for c in sampled["choices"]] == [
            local(deepseek, seed, Sampling(6, 1.0, 1.0)) for seed in (11, 12)
        ]

        status, chat = call(
            f"{url}/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3,
                "temperature": 0,
                "return_token_ids": True,
            },
        )
        assert status == 200, chat
        check_rows(
            deepseek,
            vllm_rows(chat["choices"][0]["routed_experts"]),
            chat["prompt_token_ids"] + chat["choices"][0]["token_ids"],
        )

        assert call(f"{url}/version") == (200, {"version": "0.32.0+steermoe"})
        assert call(f"{url}/v1/models")[1]["data"][0]["id"] == "tiny"


def test_sglang_generate_returns_flat_int32_routing_when_asked(deepseek: Loaded) -> None:
    with running(deepseek, "sglang") as url:
        body = {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 5, "temperature": 0}}
        status, reply = call(f"{url}/generate", {**body, "return_routed_experts": True})
        assert status == 200, reply
        assert reply["output_ids"] == local(deepseek, 0, Sampling(5, 0.0, 1.0))
        assert reply["meta_info"]["finish_reason"] == {"type": "length", "length": 5}
        rows = sglang_rows(reply["meta_info"]["routed_experts"], deepseek)
        check_rows(deepseek, rows, PROMPT + reply["output_ids"])

        _, late = call(f"{url}/generate", {**body, "return_routed_experts": True, "routed_experts_start_len": 6})
        np.testing.assert_array_equal(sglang_rows(late["meta_info"]["routed_experts"], deepseek), rows[6:])
        _, unasked = call(f"{url}/generate", body)
        assert "routed_experts" not in unasked["meta_info"]
        for refused in ({**body, "stream": True}, {**body, "sampling_params": {"top_k": 20}}):
            assert call(f"{url}/generate", refused)[0] == 400

        _, seeded = call(
            f"{url}/generate", {"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 5, "sampling_seed": 3}}
        )
        assert seeded["output_ids"] == local(deepseek, 3, Sampling(5, 1.0, 1.0))
        assert call(f"{url}/server_info")[1]["version"] == "0.5.23+steermoe"
        assert call(f"{url}/model_info")[1]["model_type"] == "deepseek_v3"


def test_a_sequence_ended_by_eos_keeps_the_eos_id_and_drops_its_row(deepseek: Loaded) -> None:
    model = deepseek.model
    eos = deepseek.tokenizer.eos_token_id
    assert isinstance(eos, int)
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
    with torch.no_grad():
        model.lm_head.bias[eos] = 30.0
    try:
        with running(deepseek, "vllm") as url:
            _, reply = call(
                f"{url}/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0, "return_token_ids": True}
            )
    finally:
        model.lm_head.bias = None
    (choice,) = reply["choices"]
    assert choice["token_ids"] == [eos] and choice["finish_reason"] == "stop" and choice["stop_reason"] is None
    assert vllm_rows(choice["routed_experts"]).shape[0] == len(PROMPT)


def test_concurrent_requests_share_a_batch_without_changing_a_sample(deepseek: Loaded) -> None:
    seeds = [21, 22, 23, 24]
    with running(deepseek, "vllm") as url, ThreadPoolExecutor(len(seeds)) as pool:
        replies = list(
            pool.map(
                lambda seed: call(
                    f"{url}/v1/completions",
                    {"prompt": PROMPT[: 3 + seed % 3], "max_tokens": 5, "seed": seed, "return_token_ids": True},
                )[1],
                seeds,
            )
        )
    for seed, reply in zip(seeds, replies, strict=True):
        assert reply["choices"][0]["token_ids"] == local(deepseek, seed, Sampling(5, 1.0, 1.0), PROMPT[: 3 + seed % 3])


def test_without_the_routing_flag_the_field_is_null_or_absent(deepseek: Loaded) -> None:
    with running(deepseek, "vllm", routed_experts=False) as url:
        _, reply = call(f"{url}/v1/completions", {"prompt": PROMPT, "max_tokens": 2})
        assert "routed_experts" in reply["choices"][0] and reply["choices"][0]["routed_experts"] is None
    with running(deepseek, "sglang", routed_experts=False) as url:
        _, reply = call(f"{url}/generate", {"input_ids": PROMPT, "return_routed_experts": True})
        assert "routed_experts" not in reply["meta_info"]
        assert call(f"{url}/server_info")[1]["enable_return_routed_experts"] is False


def test_bad_requests_are_refused_naming_the_field(deepseek: Loaded) -> None:
    with running(deepseek, "vllm", api_key="k3y") as url:
        completions = f"{url}/v1/completions"
        assert call(completions, {"prompt": PROMPT}) == (401, {"error": "Unauthorized"})
        status, reply = call(completions, {"prompt": PROMPT, "model": "other"}, key="k3y")
        assert status == 404 and reply["error"]["message"] == "The model `other` does not exist."
        for body, param in [
            ({"prompt": "text"}, "prompt"),
            ({"prompt": [10**9]}, "prompt"),
            ({"prompt": PROMPT, "routed_experts_prompt_start": 7}, "routed_experts_prompt_start"),
            ({"prompt": PROMPT, "stream": True}, "stream"),
            ({"prompt": PROMPT, "top_k": 20}, "top_k"),
        ]:
            status, reply = call(completions, body, key="k3y")
            assert status == 400 and reply["error"]["param"] == param, reply
        assert call(f"{url}/generate", {"input_ids": PROMPT}, key="k3y")[0] == 404  # not a vLLM route


def raw_request(url: str, head: str, body: bytes = b"", half_close: bool = False) -> tuple[int, dict[str, str]]:
    """Sends bytes as written (headers a client library would not send) and reads the status line
    and headers of the reply."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while b"\r\n\r\n" not in reply and (chunk := sock.recv(65536)):
            reply += chunk
    lines = reply.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers


def test_malformed_requests_get_a_status_and_one_logged_line(
    deepseek: Loaded, capfd: pytest.CaptureFixture[str]
) -> None:
    post = "POST /v1/completions HTTP/1.1\nHost: x\nContent-Type: application/json\n"
    deep = b"[" * 100_000 + b"]" * 100_000
    with running(deepseek, "vllm") as url:
        cases = [
            (raw_request(url, post + "Content-Length: abc\n"), 400),
            (raw_request(url, post + "Content-Length: -1\n"), 400),
            (raw_request(url, post + "Content-Length: 99999999999999\n"), 413),
            # A body cut short: the client sent 10 bytes of 500 and closed its side.
            (raw_request(url, post + "Content-Length: 500\n", b'{"prompt":', half_close=True), 400),
            (raw_request(url, post + f"Content-Length: {len(deep)}\n", deep), 400),
        ]
        for (status, _), expected in cases:
            assert status == expected
    logged = [line for line in capfd.readouterr().err.splitlines() if line.startswith("steermoe serve:")]
    assert len(logged) == len(cases), logged
    assert "Content-Length 'abc' is not a byte count" in logged[0]
    assert "nests deeper than 64 levels" in logged[-1]


def test_a_thousand_connections_at_once_are_each_answered_or_told_to_retry(
    deepseek: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bound of 100 held requests, so that some of the thousand are over it.
    monkeypatch.setattr(serve, "MAX_REQUESTS", 100)
    with running(deepseek, "vllm") as url:
        host, port = url.removeprefix("http://").split(":")
        socks = [socket.create_connection((host, int(port)), timeout=60) for _ in range(1000)]
        for sock in socks:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        statuses = []
        for sock in socks:
            reply = b""
            while chunk := sock.recv(65536):  # a reset would raise here
                reply += chunk
            sock.close()
            head = reply.split(b"\r\n\r\n")[0].decode()
            statuses.append(int(head.split()[1]))
            if statuses[-1] == 503:
                assert "Retry-After: 1" in head
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 100, sorted(set(statuses))


def test_more_than_256_experts_come_as_uint16(tmp_path: Path) -> None:
    path = build_tiny("olmoe", str(tmp_path / "wide"), seed=0, size=TinySize(layers=1, experts=300, hidden=32))
    wide = load(path["path"], "fp32", "cpu", False)
    with running(wide, "vllm") as url:
        _, reply = call(f"{url}/v1/completions", {"prompt": PROMPT, "max_tokens": 4, "return_token_ids": True})
    (choice,) = reply["choices"]
    rows = vllm_rows(choice["routed_experts"])
    assert rows.dtype == np.uint16 and rows.max() >= 256
    check_rows(wide, rows, PROMPT + choice["token_ids"])
