"""Framed messages between the TypeScript side and the engine.

A frame is: u32 little-endian length of a UTF-8 JSON header, the header, then the raw bytes of
every array the header refers to, in order. Inside the JSON an array appears as
{"$array": i, "dtype": "uint8", "shape": [...]}; the header's "buffers" lists their byte sizes.
Arrays travel as raw bytes so routing for thousands of tokens costs no JSON encoding.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

import numpy as np

DTYPES = {"uint8", "uint16", "int32", "int64", "float16", "float32", "float64"}


def _encode(value: Any, buffers: list[bytes]) -> Any:
    if isinstance(value, np.ndarray):
        dtype = str(value.dtype)
        if dtype not in DTYPES:
            raise TypeError(f"array dtype {dtype} cannot travel in a frame")
        buffers.append(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
        return {"$array": len(buffers) - 1, "dtype": dtype, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {k: _encode(v, buffers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, buffers) for v in value]
    return value


def _decode(value: Any, buffers: list[bytes]) -> Any:
    if isinstance(value, dict):
        if "$array" in value:
            dtype = np.dtype(value["dtype"]).newbyteorder("<")
            return np.frombuffer(buffers[value["$array"]], dtype=dtype).reshape(value["shape"])
        return {k: _decode(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, buffers) for v in value]
    return value


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    buffers: list[bytes] = []
    body = _encode(message, buffers)
    body["buffers"] = [len(b) for b in buffers]
    header = json.dumps(body, allow_nan=False).encode()
    stream.write(struct.pack("<I", len(header)) + header)
    for b in buffers:
        stream.write(b)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """Next message, or None once the other side has closed the channel."""
    size = _read_exact(stream, 4)
    if size is None:
        return None
    header = _read_exact(stream, struct.unpack("<I", size)[0])
    if header is None:
        return None
    body = json.loads(header)
    buffers = []
    for n in body.pop("buffers", []):
        data = _read_exact(stream, n)
        if data is None:
            return None
        buffers.append(data)
    decoded: dict[str, Any] = _decode(body, buffers)
    return decoded
