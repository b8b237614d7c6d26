"""The model fingerprint a run records: it must change with the weights, config or tokenizer, and
stay cheap on large weight files (header and sampled data, never the whole file)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from steermoe_engine.fingerprint import SAMPLE_BYTES, WHOLE_HASH_BYTES, model_fingerprint


def _safetensors(path: Path, data: bytes) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def test_small_files_are_hashed_whole(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text('{"a": 1}')
    _safetensors(tmp_path / "model.safetensors", bytes(1000))
    before = model_fingerprint(str(tmp_path))
    assert sorted(before) == ["config.json", "model.safetensors", "tokenizer.json"]
    (tmp_path / "tokenizer.json").write_text('{"a": 2}')
    data = bytearray(1000)
    data[500] = 1  # the same shape, another value: what a reseeded model looks like
    _safetensors(tmp_path / "model.safetensors", bytes(data))
    after = model_fingerprint(str(tmp_path))
    assert [f for f in before if before[f] != after[f]] == ["model.safetensors", "tokenizer.json"]
    os.utime(tmp_path / "config.json", (0, 0))  # touched, not changed
    assert model_fingerprint(str(tmp_path))["config.json"] == before["config.json"]


def test_large_weights_are_sampled_not_read_whole(tmp_path: Path) -> None:
    size = WHOLE_HASH_BYTES + 3 * SAMPLE_BYTES
    path = tmp_path / "model-00001-of-00002.safetensors"
    _safetensors(path, bytes(size))
    before = model_fingerprint(str(tmp_path))[path.name]
    with path.open("r+b") as f:  # inside the first sample of the data
        f.seek(path.stat().st_size - size + 10)
        f.write(b"\x01")
    assert model_fingerprint(str(tmp_path))[path.name] != before
    assert before.startswith(f"{path.stat().st_size}:")


def test_a_hub_id_not_in_the_cache_has_no_fingerprint() -> None:
    assert model_fingerprint("nobody/no-such-model") == {}
