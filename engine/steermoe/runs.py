"""Reading a run folder of the CLI as pandas DataFrames, every JSON file checked against the
schema the CLI writes it with (schemas/*.schema.json, generated from src/components/io/run-files.ts)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from .schema import SchemaError, problem, run_file_schema

Part = Literal["prompt", "generation"]


def _checked(value: Any, schema: str, where: str) -> Any:
    found = problem(value, run_file_schema(schema))
    if found:
        raise SchemaError(f"{where}: {found}")
    return value


def _read_json(path: Path, schema: str) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SchemaError(f"{path}: not valid JSON ({err})") from err
    return _checked(value, schema, str(path))


def _read_jsonl(path: Path, schema: str) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise SchemaError(f"{path} line {n}: not valid JSON ({err})") from err
        rows.append(_checked(value, schema, f"{path} line {n}"))
    return rows


def _eval_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per model and metric: rate with its 95% Wilson interval, k of n."""
    rows = [
        {"model": r["name"], "source": r["source"], "steered": r["steered"], "metric": metric, **rate}
        for r in results
        for metric, rate in r["metrics"].items()
    ]
    return pd.DataFrame(rows, columns=["model", "source", "steered", "metric", "rate", "low", "high", "k", "n"])


@dataclass
class Run:
    """An analysis run folder (and, when present, its train/ and eval/ results).

    samples: one row per sample of samples.jsonl (label, texts, token ids, verdict, kept, routing).
    risk_diff / risk_diff_batches: the analysis tables (risk_diff.parquet, risk_diff_batches.parquet).
    experts: experts.json's ranking, every expert by mean risk_diff, with `rank` from 0.
    experts_file: experts.json itself (the chosen sets: global, union, per_batch, random).
    train_log: train/train_log.jsonl, one row per optimizer step (None before training).
    eval: eval/results.json, one row per model and metric (None before evaluation).
    """

    path: Path
    samples: pd.DataFrame
    risk_diff: pd.DataFrame
    risk_diff_batches: pd.DataFrame
    experts: pd.DataFrame
    experts_file: dict[str, Any]
    train_log: pd.DataFrame | None
    eval: pd.DataFrame | None
    _rows: dict[str, dict[str, Any]] = field(repr=False)

    def routing(self, sample_id: str, part: Part = "generation") -> np.ndarray:
        """The expert ids of one sample's tokens, [tokens, moe_layers, top_k] (uint8, or uint16
        past 256 experts); `part` is "prompt" or "generation"."""
        return self._shard_slice(sample_id, f"{part}.expert_ids", part)

    def routing_weights(self, sample_id: str, part: Part = "generation") -> np.ndarray:
        """The router weights of one sample's tokens, [tokens, moe_layers, top_k] float32."""
        return self._shard_slice(sample_id, f"{part}.router_weights", part)

    def _shard_slice(self, sample_id: str, key: str, part: Part) -> np.ndarray:
        if sample_id not in self._rows:
            raise KeyError(f"{self.path}: no sample {sample_id!r} in samples.jsonl")
        location = self._rows[sample_id]["routing"]
        shard = _shard(str(self.path / location["shard"]))
        i, offsets = location["index"], shard[f"{part}.offsets"]
        array: np.ndarray = shard[key][offsets[i] : offsets[i + 1]]
        return array


@cache
def _shard(path: str) -> dict[str, np.ndarray]:
    return load_file(path)


def load_run(path: str | Path) -> Run:
    """Reads an analysis run folder written by `steermoe analyze` (or `demo`).

    Raises FileNotFoundError for a folder that is not a finished analysis, and SchemaError naming
    the file, line and field of any value the CLI would not have written.
    """
    root = Path(path)
    for name in ("samples.jsonl", "experts.json", "risk_diff.parquet", "risk_diff_batches.parquet"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: no {name}; give a folder made by steermoe analyze")
    rows = _read_jsonl(root / "samples.jsonl", "samples")
    experts_file = _read_json(root / "experts.json", "experts")
    experts = pd.DataFrame(experts_file["ranking"], columns=["layer", "expert"]).rename_axis("rank").reset_index()
    log_path, eval_path = root / "train" / "train_log.jsonl", root / "eval" / "results.json"
    return Run(
        path=root,
        samples=pd.DataFrame(rows),
        risk_diff=pd.read_parquet(root / "risk_diff.parquet"),
        risk_diff_batches=pd.read_parquet(root / "risk_diff_batches.parquet"),
        experts=experts,
        experts_file=experts_file,
        train_log=pd.DataFrame(_read_jsonl(log_path, "train_log")) if log_path.is_file() else None,
        eval=_eval_frame(_read_json(eval_path, "eval_results")) if eval_path.is_file() else None,
        _rows={row["sample_id"]: row for row in rows},
    )
