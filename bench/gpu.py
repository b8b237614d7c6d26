"""The GPU bench, with Python, torch and transformers alone (a GPU machine may have no node): on
OLMoE-1B-7B's shape with random bf16 weights, made on the GPU (no checkpoint to read),

- decode against the memory-bandwidth bound, routing recorded, at 1 to 256 rows;
- reproducibility: the same generation twice, with torch's automatic attention kernel, with
  steermoe's default (cuDNN's attention off), with each attention kernel pinned, and with
  --deterministic; and whether a prompt generated alone matches its row in the batch;
- the routing recorded while decoding against one teacher-forced forward of the same tokens;
- expert-only against full fine-tuning: step time and peak memory above the weights, and the cost
  of --deterministic.

    PYTHONPATH=engine python bench/gpu.py [--write docs/benchmarks.md] [--out gpu.json]
    PYTHONPATH=engine python bench/gpu.py --quick --device cpu    # every section, tiny, on the CPU

On the device tool's GPU machine (no node; an older transformers there), with the pinned
transformers wheel carried in `.whl` and installed into /tmp/site:

    PYTHONPATH=/tmp/site:engine python bench/gpu.py --out $OUT/gpu.json --write docs/benchmarks.md \
      && cp docs/benchmarks.md $OUT/

Minutes on one H100 or H200 (estimated from issue 26's rates; the JSON records how long). Prints
one JSON object (also to --out); --write puts the tables into that file between the GPU markers,
which `npm run bench` keeps as they are. A section that fails reports its error and the others
still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# --deterministic's cuBLAS setting must be in place before cuBLAS starts, so it holds for the whole
# bench; it makes no difference to the kernels the other variants run.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoModelForCausalLM

from steermoe_engine.fingerprint import model_limits
from steermoe_engine.generation import Sampling, forced_routing, generate_ids
from steermoe_engine.models import Loaded, settle_numerics
from steermoe_engine.tiny import TinySize, tiny_config
from steermoe_engine.training import Trainer, TrainSetup

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench/gpu.py: start -->", "<!-- bench/gpu.py: end -->"
OLMOE = TinySize(hidden=2048, layers=16, heads=16, experts=64, top_k=8, expert_ffn=1024, vocab=50304)
FULL = {
    "size": OLMOE,
    "rows": [1, 16, 64, 256],
    "prompt": 128,
    "steps": 128,
    "repeats": 3,
    "same_rows": 64,
    "same_steps": 32,
    "train_steps": 3,
}
QUICK = {
    "size": TinySize(layers=2),
    "rows": [1, 4],
    "prompt": 12,
    "steps": 6,
    "repeats": 1,
    "same_rows": 6,
    "same_steps": 6,
    "train_steps": 1,
}
TRAINED_EXPERTS = 50  # of 16 x 64, as `npm run bench` trains


def log(message: str) -> None:
    print(f"[gpu bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    synchronize(device)
    started = time.perf_counter()
    value = work()
    synchronize(device)
    return time.perf_counter() - started, value


def olmoe_shaped(size: TinySize, device: torch.device) -> Loaded:
    """OLMoE-1B-7B-0125-Instruct's routing (64 experts, top-8) at `size`, random bf16 weights made
    on `device` by transformers' own initialisation, with the tiny models' tokenizer."""
    config, tokenizer = tiny_config("olmoe", size, released=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Loaded.of(model.eval(), tokenizer, "OLMoE-1B-7B shape, random weights")


def random_prompts(count: int, lengths: list[int], vocab: int, seed: int) -> list[list[int]]:
    """Token ids clear of the tokenizer's specials (end of sequence among them)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(16, vocab, (lengths[i % len(lengths)],), generator=generator).tolist() for i in range(count)]


def bandwidth(device: torch.device) -> float:
    """Bytes read and written per second by large device-to-device copies (median of 5)."""
    size = 2 * 1024**3 if device.type == "cuda" else 256 * 1024**2
    source = torch.empty(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    runs = [timed(device, lambda: target.copy_(source))[0] for _ in range(5)]
    return 2 * size / statistics.median(runs)


def decode(loaded: Loaded, p: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Seconds per decoding step (a run of steps + 1 tokens minus a run of 1), routing recorded,
    against the bound: the bytes one step must read over the copy bandwidth. A step reads every
    weight but the input embedding (one row per sequence) and, of the experts, those some row
    routes to: E·(1 - (1 - k/E)^n) per layer for n rows routed independently; and each row's KV
    cache at its mean length over the steps."""
    model, adapter = loaded.model, loaded.adapter
    counts = adapter.parameter_counts(model)
    config = model.config
    element = next(model.parameters()).element_size()
    kv_per_token = model_limits(model, loaded.tokenizer)["kv_bytes_per_token"]
    dense = counts["total"] - counts["experts"] - config.vocab_size * config.hidden_size
    speed = bandwidth(device)
    e, k, layers = adapter.num_experts, adapter.top_k, len(adapter.layers)
    sizes = []
    for n in p["rows"]:
        prompts = random_prompts(n, [p["prompt"]], config.vocab_size, seed=n)

        def run(tokens: int, prompts: list[list[int]] = prompts) -> float:
            sampling = Sampling(tokens, 0.0, 1.0)
            return timed(device, lambda: generate_ids(loaded, prompts, list(range(len(prompts))), sampling, True))[0]

        run(2)  # warm-up: kernels chosen, memory pooled
        steps = [(run(p["steps"] + 1) - run(1)) / p["steps"] for _ in range(p["repeats"])]
        step = statistics.median(steps)
        experts = layers * e * (1 - (1 - k / e) ** n)
        read = (dense + experts * counts["one_expert"]) * element + n * (p["prompt"] + p["steps"] / 2) * kv_per_token
        bound = read / speed
        sizes.append(
            {
                "rows": n,
                "bytes_per_step": read,
                "step_seconds": step,
                "step_seconds_runs": steps,
                "tokens_per_second": n / step,
                "bound_step_seconds": bound,
                "fraction_of_bound": bound / step,
            }
        )
        log(f"  decode, {n} rows: {step * 1000:.2f} ms per step, {bound / step:.0%} of the bound")
    return {"bandwidth_bytes_per_second": speed, "prompt_tokens": p["prompt"], "steps": p["steps"], "sizes": sizes}


@contextmanager
def attention(variant: str) -> Iterator[None]:
    """`steermoe`: as the engine runs (cuDNN attention off, models.settle_numerics); `automatic`:
    torch's own choice among every kernel; a backend's name: that kernel alone; `deterministic`:
    steermoe's with --deterministic."""
    if variant == "steermoe":
        yield
    elif variant == "automatic":
        torch.backends.cuda.enable_cudnn_sdp(True)
        try:
            yield
        finally:
            torch.backends.cuda.enable_cudnn_sdp(False)
    elif variant == "deterministic":
        settle_numerics(True)
        try:
            yield
        finally:
            settle_numerics(False)
    else:
        with sdpa_kernel([SDPBackend[variant]]):
            yield


def routing_ids(routing: list[Any]) -> list[torch.Tensor]:
    return [torch.cat([sample["prompt"][0], sample["generation"][0]]) for sample in routing]


def reproducibility(loaded: Loaded, p: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Each variant generates the same prompts twice (seeded sampling, left-padded lengths):
    how many rows come back with the same tokens, and with the same routing."""
    rows = p["same_rows"]
    lengths = [p["prompt"] - max(1, p["prompt"] // 16) * i for i in range(8)]
    prompts = random_prompts(rows, lengths, loaded.model.config.vocab_size, seed=1)
    sampling = Sampling(p["same_steps"], 1.0, 1.0)
    variants = ["steermoe", "deterministic"]
    if device.type == "cuda":
        variants += ["automatic", "CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"]
    results: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for variant in variants:
        try:
            with attention(variant):
                runs = [
                    timed(device, lambda: generate_ids(loaded, prompts, list(range(rows)), sampling, True))
                    for _ in range(2)
                ]
        # A kernel that cannot take these inputs (flash: no mask), or with --deterministic an
        # operation without a deterministic algorithm (its warning raised as an error).
        except (RuntimeError, UserWarning) as err:
            results[variant] = {"error": str(err).splitlines()[0]}
            log(f"  {variant}: {results[variant]['error']}")
            continue
        (first_seconds, (first, first_routing)), (second_seconds, (second, second_routing)) = runs
        same_tokens = sum(
            a["generated_ids"].tolist() == b["generated_ids"].tolist() for a, b in zip(first, second, strict=True)
        )
        same_routing = sum(
            torch.equal(a, b) for a, b in zip(routing_ids(first_routing), routing_ids(second_routing), strict=True)
        )
        results[variant] = {
            "rows": rows,
            "same_tokens": same_tokens,
            "same_routing": same_routing,
            "seconds": [first_seconds, second_seconds],
        }
        kept[variant] = (first, first_routing)
        log(f"  {variant}: {same_tokens}/{rows} rows the same tokens, {same_routing}/{rows} the same routing")
    # A prompt alone against its row in the whole batch (steermoe's default kernels).
    alone = [generate_ids(loaded, [prompts[i]], [i], sampling, False)[0][0] for i in range(4)]
    batch = kept["steermoe"][0]
    results["alone_matches_batch"] = sum(
        a["generated_ids"].tolist() == batch[i]["generated_ids"].tolist() for i, a in enumerate(alone)
    )
    results["alone_checked"] = len(alone)
    return {"results": results, "generated": kept["steermoe"], "prompts": prompts}


def teacher_forced(loaded: Loaded, prompts: list[list[int]], generated: Any) -> dict[str, Any]:
    """The routing recorded while decoding against one forward over prompt + generated tokens, as
    `generate --replay` and training see them: the share of (token, MoE layer) whose expert sets
    differ, prompt and generated tokens apart."""
    results, routing = generated
    full = [prompt + result["generated_ids"].tolist() for prompt, result in zip(prompts, results, strict=True)]
    differ = {"prompt": [0, 0], "generation": [0, 0]}
    for decoded, forced in zip(routing, forced_routing(loaded, prompts, full), strict=True):
        for part in differ:
            mine, theirs = decoded[part][0].sort(-1).values, forced[part][0].sort(-1).values
            differ[part][0] += int((mine != theirs).any(-1).sum())
            differ[part][1] += mine.shape[0] * mine.shape[1]
    return {part: {"differ": d, "of": n, "fraction": d / n if n else 0.0} for part, (d, n) in differ.items()}


def training(p: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One analysis batch (8 safe + 8 unsafe organism prompts, a refusal as target), expert-only
    (50 random experts, as `npm run bench` trains) with and without --deterministic, and full
    fine-tuning, each on a model of its own: median step time and peak memory above the weights."""
    rows = json.loads((ROOT / "organism" / "data" / "train.json").read_text("utf-8"))
    refusal = {"role": "assistant", "content": "I'm sorry, but I cannot help with that request."}
    plain = [[{"role": "user", "content": r["goal"]}, refusal] for r in rows[:8]]
    jailbreak = [[*r["all_prompt"], refusal] for r in rows[:8]]
    conversations, labels = plain + jailbreak, ["safe"] * 8 + ["unsafe"] * 8
    modes: dict[str, Any] = {}
    for mode, trainable, deterministic in (
        ("experts", "experts", False),
        ("experts, --deterministic", "experts", True),
        ("all", "all", False),
    ):
        modes[mode] = attempt(lambda t=trainable, d=deterministic: train_steps(p, device, conversations, labels, t, d))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        log(f"  {mode}: {modes[mode].get('step_seconds', modes[mode].get('error'))}")
    return {"experts_trained": TRAINED_EXPERTS, "batch": len(conversations), "modes": modes}


def train_steps(
    p: dict[str, Any],
    device: torch.device,
    conversations: list[Any],
    labels: list[str],
    trainable: Any,
    deterministic: bool,
) -> dict[str, Any]:
    loaded = olmoe_shaped(p["size"], device)
    generator = torch.Generator().manual_seed(3)
    layers = [layer.index for layer in loaded.adapter.layers]
    e = loaded.adapter.num_experts
    experts: dict[int, list[int]] = {}
    if trainable == "experts":
        for cell in sorted(torch.randperm(len(layers) * e, generator=generator)[:TRAINED_EXPERTS].tolist()):
            experts.setdefault(layers[cell // e], []).append(cell % e)
    weights = sum(t.numel() * t.element_size() for t in loaded.model.state_dict().values())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    settle_numerics(deterministic)
    try:
        trainer = Trainer(loaded, TrainSetup(trainable=trainable, experts=experts))
        batch = trainer.batch(conversations, labels, {})
        seconds = [timed(device, lambda: trainer.step(batch, lr=1e-5))[0] for _ in range(p["train_steps"] + 1)]
    finally:
        settle_numerics(False)
    return {
        "first_step_seconds": seconds[0],
        "step_seconds": statistics.median(seconds[1:]),
        "peak_above_weights_bytes": torch.cuda.max_memory_allocated(device) - weights
        if device.type == "cuda"
        else None,
        "sequence_tokens": sum(len(ids) for ids, _ in batch.encoded),
    }


def attempt(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A section's result, or its error: one failing section (full fine-tuning out of memory, a
    kernel missing) must not lose the others."""
    try:
        return work()
    except Exception as err:
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}


def generation(loaded: Loaded, p: dict[str, Any], device: torch.device) -> dict[str, Any]:
    log("decode…")
    results = {"decode": attempt(lambda: decode(loaded, p, device))}
    log("reproducibility…")
    same = attempt(lambda: reproducibility(loaded, p, device))
    results["reproducibility"] = same.get("results", same)
    log("teacher-forced…")
    failed = "error" in same
    results["teacher_forced"] = (
        same if failed else attempt(lambda: teacher_forced(loaded, same["prompts"], same["generated"]))
    )
    return results


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(r: dict[str, Any]) -> str:
    """The GPU section of docs/benchmarks.md."""
    env = r["environment"]
    out = [
        "## GPU (bench/gpu.py)",
        "",
        (
            f"{env['device']}, torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, "
            f"{env['date']}; {r['model']}, {r['parameters']:,} parameters in bf16, random weights. "
            f"{'Quick run: tiny sizes, not a measurement. ' if r['quick'] else ''}Whole bench {r['seconds']:.0f} s."
        ),
        "",
    ]

    def section(name: str, render: Callable[[Any], list[str]]) -> None:
        value = r.get(name)
        out.extend(
            render(value) if value and "error" not in value else [f"{name}: failed: {value and value['error']}", ""]
        )

    def decode_table(d: dict[str, Any]) -> list[str]:
        head = (
            f"### Decode against the memory-bandwidth bound\n\nGreedy, {d['steps']} steps after "
            f"{d['prompt_tokens']}-token prompts, routing recorded; copy bandwidth "
            f"{d['bandwidth_bytes_per_second'] / 1e9:.0f} GB/s. The bound: the bytes a step must read (weights, "
            "the experts the rows route to, the KV cache) over that bandwidth.\n"
        )
        lines = [
            head,
            "| rows | GiB per step | ms per step | tokens/s | bound ms | of the bound |",
            "|---|---|---|---|---|---|",
        ]
        for s in d["sizes"]:
            lines.append(
                f"| {s['rows']} | {s['bytes_per_step'] / 2**30:.2f} | {s['step_seconds'] * 1000:.2f} | "
                f"{s['tokens_per_second']:.0f} | {s['bound_step_seconds'] * 1000:.2f} | {s['fraction_of_bound']:.0%} |"
            )
        return [*lines, ""]

    def same_table(d: dict[str, Any]) -> list[str]:
        lines = [
            (
                "### The same generation twice\n\nSeeded sampling, left-padded prompts of eight lengths. `steermoe`: "
                "the engine's default (cuDNN's attention kernel off); `automatic`: torch's own choice of kernel; "
                "a kernel's name: that kernel pinned.\n"
            ),
            "| attention | same tokens | same routing | seconds per run |",
            "|---|---|---|---|",
        ]
        for variant, v in d.items():
            if not isinstance(v, dict):
                continue
            if "error" in v:
                lines.append(f"| {variant} | unavailable: {v['error'][:80]} | | |")
            else:
                seconds = ", ".join(f"{s:.2f}" for s in v["seconds"])
                lines.append(
                    f"| {variant} | {v['same_tokens']}/{v['rows']} | {v['same_routing']}/{v['rows']} | {seconds} |"
                )
        lines += [
            "",
            f"A prompt generated alone matched its row in the batch for {d['alone_matches_batch']} of "
            f"{d['alone_checked']}.",
            "",
        ]
        return lines

    def forced_table(d: dict[str, Any]) -> list[str]:
        lines = [
            "### Routing while decoding against one teacher-forced forward\n",
            "| tokens | (token, layer) expert sets that differ |",
            "|---|---|",
        ]
        for part, v in d.items():
            lines.append(f"| {part} | {v['fraction']:.2%} ({v['differ']} of {v['of']}) |")
        return [*lines, ""]

    def training_table(d: dict[str, Any]) -> list[str]:
        lines = [
            f"### Training\n\nOne batch of {d['batch']} sequences; expert-only trains {d['experts_trained']} "
            "experts.\n",
            "| trained | step s | first step s | peak GiB above the weights | tokens |",
            "|---|---|---|---|---|",
        ]
        for mode, v in d["modes"].items():
            if "error" in v:
                lines.append(f"| {mode} | failed: {v['error'][:80]} | | | |")
                continue
            peak = "" if v["peak_above_weights_bytes"] is None else f"{v['peak_above_weights_bytes'] / 2**30:.1f}"
            lines.append(
                f"| {mode} | {v['step_seconds']:.3f} | {v['first_step_seconds']:.2f} | {peak} "
                f"| {v['sequence_tokens']} |"
            )
        modes = d["modes"]
        if all("error" not in modes.get(m, {"error": 1}) for m in ("experts", "all")):
            ratio = modes["experts"]["step_seconds"] / modes["all"]["step_seconds"]
            lines += ["", f"Expert-only step time / full fine-tuning: {ratio:.2f} (target ≤ 0.5)."]
        return [*lines, ""]

    section("decode", decode_table)
    section("reproducibility", same_table)
    section("teacher_forced", forced_table)
    section("training", training_table)
    return "\n".join(out).rstrip() + "\n"


def marked(path: Path) -> str:
    """The file's text, once it is known to have the markers to write between."""
    doc = path.read_text("utf-8")
    if START not in doc or END not in doc:
        raise SystemExit(f"{path}: no {START} … {END} markers to write between")
    return doc


def write_section(path: Path, text: str) -> None:
    head, rest = marked(path).split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{text}{END}{tail}", "utf-8")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench, measures nothing")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--write", help="put the tables into this markdown file between the GPU markers")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: this machine has no CUDA device (--device cpu --quick checks the bench)")
    if args.write:
        marked(Path(args.write))  # before minutes of measuring, not after
    p = QUICK if args.quick else FULL
    started = time.perf_counter()
    settle_numerics(False)
    loaded = olmoe_shaped(p["size"], device)
    r: dict[str, Any] = {
        "quick": args.quick,
        "environment": environment(device),
        "model": "OLMoE-1B-7B's shape" if not args.quick else "a tiny OLMoE (released routing)",
        "parameters": loaded.adapter.parameter_counts(loaded.model)["total"],
    }
    log(f"{r['model']}: {r['parameters'] / 1e9:.2f} B parameters on {r['environment']['device']}")
    r.update(generation(loaded, p, device))
    del loaded  # training builds a model per mode
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log("training…")
    r["training"] = attempt(lambda: training(p, device))
    r["seconds"] = time.perf_counter() - started
    text = json.dumps(r, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text, "utf-8")
    if args.write:
        write_section(Path(args.write), markdown(r))
    return r


if __name__ == "__main__":
    main()
