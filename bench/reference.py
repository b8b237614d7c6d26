"""Benchmark helpers in Python: the workload's prompts, and the reference-style baseline.

The baseline mirrors how the original research pipeline did analysis, so that `npm run bench` can
time steermoe against it on the same model, prompts and outputs:
  - one prompt at a time (no batching);
  - the full router logits of every layer kept for every token (a hook copies [tokens, experts]
    to the host on each forward) and written to one .npy file per prompt and layer;
  - activations counted afterwards from those files, token by token, in Python loops.
It was written for this benchmark; nothing in steermoe uses it.

Subcommands (each prints one JSON object per line on stdout):
  prompts   build the analysis workload's conversations at an exact token length
  baseline  a worker: loads the model once, then runs the reference pipeline once per stdin line
  pertoken  the original-style per-token counting loop over synthetic expert ids
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from steermoe_engine.generation import chat_ids
from steermoe_engine.models import Loaded, load

Messages = list[dict[str, str]]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# prompts


def _fit(loaded: Loaded, head: Messages, text: str, tokens: int) -> Messages:
    """The longest prefix of `text` as the last user message such that the rendered prompt has at
    most `tokens` tokens. Cutting characters (not tokens) keeps the text valid UTF-8."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ids = chat_ids(loaded, [*head, {"role": "user", "content": text[:mid]}], add_generation_prompt=True)
        if len(ids) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return [*head, {"role": "user", "content": text[:lo]}]


def prompts(args: argparse.Namespace) -> None:
    """8 safe + 8 unsafe prompts (per analysis batch) of `--tokens` tokens each. Unsafe ones are the
    FlipAttack prompts of the synthetic data; safe ones are the plain request followed by more
    plain requests, so both labels cost the same prefill, as in a FlipAttack-length workload."""
    loaded = load(args.model, "auto", "cpu", False)
    records = json.loads(Path(args.data).read_text())
    goals = " ".join(r["goal"] + "." for r in records)[:4000]  # enough text for any 350-token prompt
    out: list[dict[str, Any]] = []
    for i in range(args.pairs):
        record = records[i % len(records)]
        system, user = record["all_prompt"][0], record["all_prompt"][-1]["content"]
        unsafe_text = user
        while len(chat_ids(loaded, [system, {"role": "user", "content": unsafe_text}], True)) < args.tokens:
            unsafe_text += "\n" + user  # FlipAttack prompts shorter than the target repeat their steps
        safe_head = [{"role": "system", "content": "You are a helpful assistant."}]
        safe = _fit(loaded, safe_head, record["goal"] + ". " + goals, args.tokens)
        unsafe = _fit(loaded, [system], unsafe_text, args.tokens)
        # A short assistant answer for the training batches (prompt + response conversations).
        answer = _fit(loaded, [], goals[i * 97 :], args.response_tokens + 1)[0]["content"]
        for label, messages in (("safe", safe), ("unsafe", unsafe)):
            out.append(
                {
                    "label": label,
                    "messages": messages,
                    "prompt_tokens": len(chat_ids(loaded, messages, True)),
                    "answer": answer,
                }
            )
    # Order: the safe halves first, then the unsafe ones, as an 8 + 8 analysis batch.
    out.sort(key=lambda s: s["label"] != "safe")
    Path(args.out).write_text(json.dumps(out))
    _emit({"prompts": len(out), "tokens": [s["prompt_tokens"] for s in out]})


# ---------------------------------------------------------------------------------------------
# baseline


class LogitDump:
    """Forward hooks that copy every router's full logits [tokens, experts] to the host, as the
    original patched inference engine did."""

    def __init__(self, loaded: Loaded) -> None:
        self.layers = loaded.adapter.layers
        self.logits: list[list[np.ndarray]] = [[] for _ in self.layers]
        self.handles = [
            layer.router.register_forward_hook(self._hook(i)) for i, layer in enumerate(loaded.adapter.layers)
        ]

    def _hook(self, position: int) -> Any:
        def hook(_m: torch.nn.Module, _a: Any, out: tuple[torch.Tensor, ...]) -> None:
            self.logits[position].append(out[0].float().cpu().numpy().copy())

        return hook

    def reset(self) -> None:
        self.logits = [[] for _ in self.layers]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


KERNELS = ("eager", "grouped_mm")


@torch.inference_mode()
def _generate_one(
    loaded: Loaded, messages: Messages, max_new_tokens: int, eos: set[int], kernels: dict[str, str]
) -> tuple[list[int], int]:
    """Greedy decoding of one prompt with a KV cache; returns (generated ids, prompt length)."""
    model = loaded.model
    ids = chat_ids(loaded, messages, add_generation_prompt=True)
    cache = DynamicCache(config=model.config)
    input_ids = torch.tensor([ids], device=loaded.device)
    generated: list[int] = []
    for step in range(max_new_tokens):
        model.set_experts_implementation(kernels["prefill" if step == 0 else "decode"])
        logits = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        token = int(logits[0, -1].argmax())
        generated.append(token)
        if token in eos:
            break
        input_ids = torch.tensor([[token]], device=loaded.device)
    # The last generated token's own routing needs one more forward, as steermoe records it.
    model(input_ids=torch.tensor([[generated[-1]]], device=loaded.device), past_key_values=cache, use_cache=True)
    return generated, len(ids)


def _fastest_kernels(loaded: Loaded, messages: Messages, eos: set[int]) -> dict[str, Any]:
    """The baseline gets the fastest experts kernel for each phase on this machine, so that
    steermoe's speedup is not an artefact of a slow one: each kernel runs the prompt alone and
    with 16 one-token steps, best of 3."""
    seconds: dict[str, dict[str, float]] = {}
    for kernel in KERNELS:
        same = {"prefill": kernel, "decode": kernel}

        def best(steps: int, same: dict[str, str] = same) -> float:
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                _generate_one(loaded, messages, steps, set(), same)
                runs.append(time.perf_counter() - start)
            return min(runs)

        prefill = best(1)
        seconds[kernel] = {"prefill": prefill, "decode_step": (best(17) - prefill) / 16}
    return {
        "prefill": min(KERNELS, key=lambda k: seconds[k]["prefill"]),
        "decode": min(KERNELS, key=lambda k: seconds[k]["decode_step"]),
        "seconds": seconds,
    }


def _count(files: list[Path], prompt_len: int, top_k: int, num_experts: int) -> tuple[list[list[int]], list[int]]:
    """Per layer, how many generated tokens chose each expert, counted token by token."""
    counts = [[0] * num_experts for _ in files]
    topk_flat: list[list[list[int]]] = [[] for _ in files]
    for layer, path in enumerate(files):
        logits = np.load(path)
        for token in range(prompt_len, logits.shape[0]):
            row = logits[token]
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            chosen = np.argsort(-probs, kind="stable")[:top_k]
            for expert in chosen:
                counts[layer][int(expert)] += 1
            topk_flat[layer].append(sorted(int(e) for e in chosen))
    # Back to steermoe's layout: [tokens, layers, k] with each k-group sorted.
    tokens = len(topk_flat[0]) if files else 0
    flat = [e for t in range(tokens) for layer in range(len(files)) for e in topk_flat[layer][t]]
    return counts, flat


def baseline(args: argparse.Namespace) -> None:
    loaded = load(args.model, "auto", args.device, False)
    torch.manual_seed(0)
    data: list[dict[str, Any]] = json.loads(Path(args.prompts).read_text())
    eos_cfg = loaded.model.generation_config.eos_token_id
    ends = [*(eos_cfg if isinstance(eos_cfg, list) else [eos_cfg]), loaded.tokenizer.eos_token_id]
    eos = {end for end in ends if isinstance(end, int)}
    adapter = loaded.adapter
    kernels = _fastest_kernels(loaded, data[0]["messages"], eos)
    _emit({"ready": True, "kernels": kernels})
    for line in sys.stdin:
        request = json.loads(line)
        chosen = [data[i] for i in request["indices"]]
        dump = LogitDump(loaded)
        timing = {"generate": 0.0, "write": 0.0, "count": 0.0}
        outputs: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(dir=request.get("dir")) as tmp:
            started = time.perf_counter()
            for index, sample in enumerate(chosen):
                dump.reset()
                t0 = time.perf_counter()
                new_tokens = request["max_new_tokens"]
                generated, prompt_len = _generate_one(loaded, sample["messages"], new_tokens, eos, kernels)
                t1 = time.perf_counter()
                files = []
                for layer, pieces in enumerate(dump.logits):
                    path = Path(tmp) / f"prompt{index:05d}_layer{layer:02d}.npy"
                    np.save(path, np.concatenate(pieces, axis=0))  # [prompt + generated tokens, experts]
                    files.append(path)
                t2 = time.perf_counter()
                _counts, topk = _count(files, prompt_len, adapter.top_k, adapter.num_experts)
                t3 = time.perf_counter()
                timing["generate"] += t1 - t0
                timing["write"] += t2 - t1
                timing["count"] += t3 - t2
                outputs.append({"generated_ids": generated, "topk": topk if request.get("topk") else []})
            seconds = time.perf_counter() - started
            disk = sum(f.stat().st_size for f in Path(tmp).iterdir())
        dump.close()
        _emit(
            {
                "seconds": seconds,
                "tokens": sum(len(o["generated_ids"]) for o in outputs),
                "logit_bytes": disk,
                **{f"{k}_seconds": v for k, v in timing.items()},
                "outputs": outputs,
            }
        )


# ---------------------------------------------------------------------------------------------
# pertoken


def pertoken(args: argparse.Namespace) -> None:
    """Risk difference the original way: Python loops over batches, samples, tokens and layers.
    Reads raw uint8 ids [batches, samples, tokens, layers, k] and labels (1 = unsafe) per sample."""
    b, s, t, layers, k = args.shape
    ids = np.fromfile(args.ids, dtype=np.uint8).reshape(b, s, t, layers, k)
    labels = np.fromfile(args.labels, dtype=np.uint8).reshape(b, s)
    n = min(args.batches, b)
    started = time.perf_counter()
    risk = []
    for batch in range(n):
        a = {0: [[0] * args.experts for _ in range(layers)], 1: [[0] * args.experts for _ in range(layers)]}
        tokens = {0: 0, 1: 0}
        for sample in range(s):
            label = int(labels[batch, sample])
            rows = ids[batch, sample].tolist()
            for token in rows:
                tokens[label] += 1
                for layer, chosen in enumerate(token):
                    for expert in set(chosen):
                        a[label][layer][expert] += 1
        risk.append(
            [
                [a[1][layer][e] / tokens[1] - a[0][layer][e] / tokens[0] for e in range(args.experts)]
                for layer in range(layers)
            ]
        )
    seconds = time.perf_counter() - started
    _emit({"batches": n, "seconds": seconds, "risk_diff": risk})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prompts")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--tokens", type=int, default=350)
    p.add_argument("--response-tokens", type=int, default=64)
    p.add_argument("--out", required=True)
    p = sub.add_parser("baseline")
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--device", default="auto")
    p = sub.add_parser("pertoken")
    p.add_argument("--ids", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--shape", type=int, nargs=5, required=True)
    p.add_argument("--experts", type=int, required=True)
    p.add_argument("--batches", type=int, required=True)
    args = parser.parse_args()
    commands = {"prompts": prompts, "baseline": baseline, "pertoken": pertoken}
    commands[args.command](args)


if __name__ == "__main__":
    main()
