"""Training steps with frozen weights: only the chosen experts (or, for the baselines, the whole
model or the routers) learn.

Experts live in fused tensors [num_experts, ...], so "train expert e" means "train one slice".
Each trained slice has an fp32 master copy (a small Parameter, the only thing the optimizer
sees), so optimizer state exists for trained slices alone. The fused tensor still receives a
gradient in backward; a post-accumulate hook moves the trained rows into the master copies and
drops the full gradient at once. After each step the master copies are written back into their
slices; no other element of any tensor is ever written.

With several ranks (`steermoe train --nproc N`) the model is sharded with FSDP2, one unit per
decoder layer: each rank holds a block of each fused tensor's rows, and master copies of the
trained rows in its block. Each rank takes its share of each batch's samples; the gradients FSDP2
reduce-scatters are sums, and every normaliser (target tokens, router-distribution token counts)
is the whole batch's, so each rank's rows get exactly the single-process gradient.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from .adapters import MoeAdapter, decoder, decoder_layers, lm_head
from .control import LayerControl, RouterControl, allowed_only
from .distributed import rank_and_world
from .errors import EngineError
from .generation import Messages, chat_ids, naming, sample_ids
from .models import Loaded
from .trained_rows import TrainedRows, attach, supported, trained_rows

Trainable = Literal["experts", "all", "router"]


@dataclass(frozen=True)
class RouterLoss:
    """KL divergence between the mean router distributions of a batch's safe and unsafe samples.
    forward: KL(P_safe || P_unsafe); reverse: KL(P_unsafe || P_safe); symmetric: their mean."""

    kind: Literal["none", "forward", "reverse", "symmetric"] = "none"
    weight: float = 0.0
    layers: Literal["all", "masked"] = "all"


@dataclass(frozen=True)
class TrainSetup:
    trainable: Trainable
    experts: dict[int, list[int]] = field(default_factory=dict)  # decoder layer -> experts
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss_on: Literal["assistant", "all"] = "assistant"
    router_loss: RouterLoss = RouterLoss()
    gradient_checkpointing: bool = False
    micro_batch: int | None = None  # samples per forward; None: the whole batch at once


@dataclass(frozen=True)
class Batch:
    """One training batch, tokenized once: (ids, labels with -100 where no loss is taken) per
    sample, which samples are safe, and its routing mask."""

    encoded: list[tuple[list[int], list[int]]]
    safe: list[bool]
    controls: dict[int, LayerControl]
    targets: int


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's block of a sharded tensor (the tensor itself when nothing is sharded)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


@dataclass(frozen=True)
class Chunk:
    """One micro-batch on this rank: padded ids, labels, attention, and per sample its weight in
    the safe and in the unsafe router means (both 0 for a padding chunk)."""

    input_ids: torch.Tensor
    target: torch.Tensor
    attention: torch.Tensor
    safe: torch.Tensor
    unsafe: torch.Tensor


@dataclass
class ExpertSlices:
    """The trained rows of one fused expert tensor (of this rank's block) and their fp32 master
    copy. `span` places them in the tensor's sorted list of trained rows, as checkpoints hold it."""

    fused: nn.Parameter
    rows: torch.Tensor  # long [n], indices into local(fused)
    master: nn.Parameter  # fp32 [n, ...]
    span: slice

    def take_grad(self, fused: torch.Tensor) -> None:
        grad = local(fused.grad)[self.rows].float()  # type: ignore[arg-type]
        self.master.grad = grad if self.master.grad is None else self.master.grad + grad
        fused.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        local(self.fused).index_copy_(0, self.rows, self.master.to(self.fused.dtype))


class RouterProbe:
    """Keeps each MoE layer's router probabilities (before any mask) from the latest forward."""

    def __init__(self, adapter: MoeAdapter, enabled: bool) -> None:
        self.adapter, self.enabled = adapter, enabled
        self.probs: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> RouterProbe:
        if self.enabled:
            family = self.adapter.family
            for layer in self.adapter.layers:

                def hook(m: nn.Module, _a: Any, out: tuple[torch.Tensor, ...], index: int = layer.index) -> None:
                    self.probs[index] = family.distribution(m, family.routing(m, out).logits)

                self._handles.append(layer.router.register_forward_hook(hook))
        return self

    def __exit__(self, *_exc: object) -> None:
        for handle in self._handles:
            handle.remove()


def shard(model: PreTrainedModel, device: torch.device) -> None:
    """FSDP2 over the ranks: one unit per decoder layer, the decoder (embeddings, final norm) as
    the root, and the LM head as a unit of its own, since training calls the decoder and the head
    separately. A head tied to the embeddings stays whole on every rank. Gradients are summed over
    the ranks, not averaged: each rank's loss is already normalised by the whole batch."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    head = lm_head(model)
    tied = head.weight is model.get_input_embeddings().weight
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(decoder(model), mesh=mesh, ignored_params={cast(nn.Parameter, head.weight)} if tied else None)
    if tied:
        head.weight.data = head.weight.data.to(device)
    else:
        fully_shard(head, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # gloo has no pre-scaled sum


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A sharded model's whole weights, gathered on rank 0 (empty elsewhere)."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return cast(dict[str, torch.Tensor], state)


LOGITS_PER_SLICE = 2**24  # logits the LM head makes at once in training (64 MiB in fp32)


def logits_scaling(model: nn.Module) -> float:
    """What the model's causal-LM forward divides the LM head's logits by before its loss: Granite's
    config.logits_scaling (6.0 in the released granite-3.x MoE models), 1 for every other family.
    Of the supported families' *ForCausalLM.forward (transformers 5.23) only Granite's change the
    logits after the head; none soft-caps them."""
    return float(getattr(model.config, "logits_scaling", 1.0))


def target_loss(
    head: nn.Linear, scaling: float, hidden: torch.Tensor, target: torch.Tensor, sliced: bool
) -> torch.Tensor:
    """Summed cross-entropy of the next tokens, of the head's logits divided by `scaling`. Sliced,
    the head runs on a slice of target positions at a time and again in backward (activation
    checkpointing): whole, the [targets, vocab] logits, their log-softmax and its gradient would be
    the largest tensors of the step. With FSDP2 every rank must call the head as often as the
    others: once per micro-batch."""
    rows = max(1, LOGITS_PER_SLICE // head.weight.shape[0] if sliced else target.numel())
    starts = range(0, max(1, target.numel()), rows)
    if len(starts) == 1:
        return _slice_loss(head, scaling, hidden, target)
    parts = [
        checkpoint(
            _slice_loss, head, scaling, hidden[start : start + rows], target[start : start + rows], use_reentrant=False
        )
        for start in starts
    ]
    return torch.stack(parts).sum()


def _slice_loss(head: nn.Linear, scaling: float, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = head(hidden)
    if scaling != 1.0:  # divided in the head's dtype, as the model's forward divides before its loss upcasts
        logits = logits / scaling
    return F.cross_entropy(logits.float(), target, reduction="sum")


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    eps = 1e-8
    return (p * ((p + eps).log() - (q + eps).log())).sum()


class Trainer:
    def __init__(self, loaded: Loaded, setup: TrainSetup) -> None:
        self.loaded, self.setup = loaded, setup
        model, adapter = loaded.model, loaded.adapter
        model.requires_grad_(False)
        self.rank, self.world = rank_and_world()
        if self.world > 1:
            if setup.trainable != "experts":
                raise EngineError("training on several ranks trains experts only (--trainable experts)")
            shard(model, loaded.device)
        self.slices: list[ExpertSlices] = []
        self.row_grads = False
        if setup.trainable == "experts":
            params = self._expert_masters(setup.experts)
        elif setup.trainable == "router":
            # ERNIE keeps its selection correction as a frozen parameter: not a router weight.
            params = [
                p
                for layer in adapter.layers
                for name, p in layer.router.named_parameters()
                if not name.endswith("e_score_correction_bias")
            ]
            for p in params:
                p.requires_grad_(True)
        else:
            model.requires_grad_(True)
            params = [p for p in model.parameters()]
        self.params: list[nn.Parameter] = params
        self.optimizer = torch.optim.AdamW(params, lr=0.0, weight_decay=setup.weight_decay)
        if setup.gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def _expert_masters(self, experts: dict[int, list[int]]) -> list[nn.Parameter]:
        """Expert sets arrive checked against the model (the TypeScript side knows it from `load`).

        In one process, with experts that transformers computes as grouped_mm does, the backward
        makes gradients for the master rows alone (trained_rows.py). Otherwise (FSDP2, other
        expert layouts) the fused tensors get a gradient and hand the trained rows over."""
        layers = self.loaded.adapter.layers
        self.row_grads = self.world == 1 and all(supported(layer.experts) for layer in layers)
        if self.row_grads:
            for layer in layers:
                attach(layer.experts, TrainedRows([], None, None))
        by_index = {layer.index: layer for layer in layers}
        for index, chosen in sorted(experts.items()):
            if not chosen:
                continue
            layer = by_index[index]
            masters = {}
            for name in self.loaded.adapter.expert_params:
                fused: nn.Parameter = getattr(layer.experts, name)
                # This rank's block of rows: FSDP2 shards dim 0 as torch.chunk splits it.
                per_rank = -(-fused.shape[0] // self.world)
                first = self.rank * per_rank
                trained = sorted(set(chosen))
                span = [i for i, row in enumerate(trained) if first <= row < first + per_rank]
                rows = torch.tensor([trained[i] - first for i in span], dtype=torch.long, device=self.loaded.device)
                master = nn.Parameter(local(fused).detach()[rows].float().clone())
                piece = ExpertSlices(fused, rows, master, slice(span[0], span[-1] + 1) if span else slice(0, 0))
                if not self.row_grads:
                    fused.requires_grad_(True)
                    if self.world == 1:  # with FSDP2 the gradient arrives sharded, after backward
                        fused.register_post_accumulate_grad_hook(piece.take_grad)
                masters[name] = master
                self.slices.append(piece)
            if self.row_grads:
                attach(layer.experts, TrainedRows(sorted(set(chosen)), masters["gate_up_proj"], masters["down_proj"]))
        return [piece.master for piece in self.slices]

    def _encode(self, messages: Messages) -> tuple[list[int], list[int]]:
        """Token ids and labels (-100 where no loss is taken)."""
        full = chat_ids(self.loaded, messages, add_generation_prompt=False)
        if self.setup.loss_on == "all":
            return full, list(full)
        prompt = chat_ids(self.loaded, messages[:-1], add_generation_prompt=True)
        if full[: len(prompt)] != prompt:
            raise EngineError("the chat template does not render the prompt as a prefix of the conversation")
        return full, [-100] * len(prompt) + full[len(prompt) :]

    def _router_sums(
        self, probe: RouterProbe, layers: list[int], chunk: Chunk
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the router probabilities summed over the chunk's safe and its unsafe tokens."""
        batch, width = chunk.attention.shape
        weights = chunk.attention.float()
        on_safe, on_unsafe = (weights * chunk.safe[:, None])[..., None], (weights * chunk.unsafe[:, None])[..., None]
        sums = {}
        for index in layers:
            probs = probe.probs[index].view(batch, width, -1)
            sums[index] = ((probs * on_safe).sum((0, 1)), (probs * on_unsafe).sum((0, 1)))
        return sums

    def _kl_of_means(self, means: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        kind = self.setup.router_loss.kind
        per_layer = []
        for p_safe, p_unsafe in means.values():
            forward, reverse = _kl(p_safe, p_unsafe), _kl(p_unsafe, p_safe)
            per_layer.append({"forward": forward, "reverse": reverse, "symmetric": (forward + reverse) / 2}[kind])
        return torch.stack(per_layer).mean()

    def batch(
        self,
        conversations: list[Messages],
        labels: list[str],
        allowed: dict[int, list[int]],
        ids: list[str] | None = None,
    ) -> Batch:
        encoded = []
        for sample_id, messages in zip(sample_ids(ids, conversations), conversations, strict=True):
            with naming(sample_id):
                encoded.append(self._encode(messages))
        targets = sum(sum(1 for t in lab[1:] if t != -100) for _, lab in encoded)
        if targets == 0:
            raise EngineError("this batch has no target tokens to learn from")
        n, device = self.loaded.adapter.num_experts, self.loaded.device
        controls = {index: allowed_only(experts, n, device) for index, experts in allowed.items() if experts}
        return Batch(encoded, [lab == "safe" for lab in labels], controls, targets)

    def step(self, batch: Batch, lr: float) -> dict[str, float | None]:
        """One optimizer step over one batch. Values that are not finite come back as None: the
        caller stops training on them, and on weights that one step made many times larger."""
        started = time.perf_counter()
        stats = self.accumulate(batch)
        if self.world > 1:
            for piece in self.slices:
                piece.take_grad(piece.fused)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if self.world > 1:
            squared = norm.double().square().cpu()
            dist.all_reduce(squared)
            norm = squared.sqrt().to(norm.dtype)
        torch.nn.utils.clip_grads_with_norm_(self.params, self.setup.grad_clip, norm)
        grad_norm = float(norm)
        growth = None
        # A non-finite update would ruin every weight it reaches: none is made. The norm is the
        # whole model's on every rank, so all ranks take the same branch.
        if math.isfinite(grad_norm) and math.isfinite(stats["loss"]):
            before = self._weight_norm()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            for piece in self.slices:
                piece.write_back()
            growth = self._weight_norm() / before if before > 0 else 1.0
        self.optimizer.zero_grad(set_to_none=True)
        self.loaded.model.eval()
        values = {**stats, "grad_norm": grad_norm, "weight_growth": growth}
        finite = {k: v if v is not None and math.isfinite(v) else None for k, v in values.items()}
        return {**finite, "seconds": time.perf_counter() - started}

    def _weight_norm(self) -> float:
        """The trained weights' norm, over every rank's share."""
        squared = sum(
            (p.detach().double().pow(2).sum().cpu() for p in self.params), torch.zeros((), dtype=torch.float64)
        )
        if self.world > 1:
            dist.all_reduce(squared)
        return float(squared.sqrt())

    def accumulate(self, batch: Batch) -> dict[str, float]:
        """The whole batch's gradients, computed in micro-batches that add up to exactly them.

        The token loss is normalised by the batch's target count. The router loss is the KL of the
        batch's mean safe and unsafe router distributions, which no micro-batch holds on its own:
        with several micro-batches a first pass without gradients takes the batch means and the
        KL's gradient with respect to them (g), and each micro-batch then backpropagates
        <g, its share of the means>, whose gradient is exactly its part of the batch KL's."""
        model = self.loaded.model
        model.train()
        # The MoE blocks compute as at inference, so training trains the routes generation recorded:
        # in train mode Phi-3.5-MoE's router samples its experts (Gumbel) with another multiplier,
        # and Mixtral's, Phi's and MiniMax-M2's blocks jitter their input where the config says so.
        # The decoder layers stay in train mode, which activation checkpointing needs.
        for layer in self.loaded.adapter.layers:
            layer.block.eval()
        encoded, safe, controls, targets = batch.encoded, batch.safe, batch.controls, batch.targets
        rl = self.setup.router_loss
        layers = [la.index for la in self.loaded.adapter.layers if rl.layers == "all" or la.index in controls]
        with_router_loss = rl.kind != "none" and bool(layers) and any(safe) and not all(safe)
        # Token counts behind each mean: the denominators of the batch's mean distributions.
        n_safe = sum(len(ids) for (ids, _), s in zip(encoded, safe, strict=True) if s)
        n_unsafe = sum(len(ids) for (ids, _), s in zip(encoded, safe, strict=True) if not s)
        chunks = self._chunks(batch)
        token_loss_total, router_loss = torch.zeros((), dtype=torch.float64), 0.0
        mean_grads: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with (
            RouterControl(self.loaded.adapter, controls),
            RouterProbe(self.loaded.adapter, with_router_loss) as probe,
            trained_rows(model) if self.row_grads else nullcontext(),
        ):
            if with_router_loss and (len(chunks) > 1 or self.world > 1):
                totals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
                with torch.no_grad():
                    for chunk in chunks:
                        decoder(model)(input_ids=chunk.input_ids, attention_mask=chunk.attention, use_cache=False)
                        for index, (s, u) in self._router_sums(probe, layers, chunk).items():
                            seen = totals.get(index)
                            totals[index] = (s, u) if seen is None else (seen[0] + s, seen[1] + u)
                if self.world > 1:  # the other ranks' samples
                    for s, u in totals.values():
                        dist.all_reduce(s)
                        dist.all_reduce(u)
                means = {
                    i: ((s / n_safe).requires_grad_(), (u / n_unsafe).requires_grad_()) for i, (s, u) in totals.items()
                }
                kl = self._kl_of_means(means)
                kl.backward()
                router_loss = float(kl.detach())
                mean_grads = {i: (s.grad, u.grad) for i, (s, u) in means.items()}  # type: ignore[misc]
            for chunk in chunks:
                hidden = decoder(model)(input_ids=chunk.input_ids, attention_mask=chunk.attention, use_cache=False)
                # The LM head runs on target positions only: [batch·seq, vocab] logits for every
                # prompt token would be the largest activation of the step, for nothing.
                next_tokens = chunk.target[:, 1:]
                picked = hidden.last_hidden_state[:, :-1][next_tokens != -100]
                token_loss = target_loss(
                    lm_head(model),
                    logits_scaling(model),
                    picked,
                    next_tokens[next_tokens != -100],
                    sliced=self.world == 1,
                )
                loss = token_loss / targets
                if with_router_loss:
                    sums = self._router_sums(probe, layers, chunk)
                    if mean_grads:
                        share = sum(
                            (mean_grads[i][0] * s).sum() / n_safe + (mean_grads[i][1] * u).sum() / n_unsafe
                            for i, (s, u) in sums.items()
                        )
                    else:
                        share = self._kl_of_means({i: (s / n_safe, u / n_unsafe) for i, (s, u) in sums.items()})
                        router_loss = float(share.detach())
                    loss = loss + self.setup.router_loss.weight * share
                loss.backward()
                token_loss_total += float(token_loss.detach())
        if self.world > 1:
            dist.all_reduce(token_loss_total)
        return {"loss": float(token_loss_total) / targets, "router_loss": router_loss, "tokens": float(targets)}

    def _chunks(self, batch: Batch) -> list[Chunk]:
        """This rank's samples of the batch (every world-th), in micro-batches. Every rank runs as
        many forward and backward passes as the others, since FSDP2 gathers and reduces each
        layer's weights in step: a rank with fewer samples pads with chunks that weigh nothing."""
        mine = list(range(self.rank, len(batch.encoded), self.world))
        most = -(-len(batch.encoded) // self.world)
        micro_batch = self.setup.micro_batch or most
        pad = self.loaded.tokenizer.pad_token_id
        pad = pad if isinstance(pad, int) else 0
        chunks = []
        for start in range(0, most, micro_batch):
            rows = mine[start : start + micro_batch]
            samples = [batch.encoded[i] for i in rows] or [([pad], [-100])]
            width = max(len(ids) for ids, _ in samples)
            input_ids = torch.full((len(samples), width), pad, dtype=torch.long)
            target = torch.full((len(samples), width), -100, dtype=torch.long)
            attention = torch.zeros((len(samples), width), dtype=torch.long)
            for row, (ids, lab) in enumerate(samples):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                target[row, : len(lab)] = torch.tensor(lab)
                attention[row, : len(ids)] = 1
            safe = torch.tensor([float(batch.safe[i]) for i in rows] or [0.0])
            unsafe = torch.tensor([float(not batch.safe[i]) for i in rows] or [0.0])
            chunks.append(Chunk(*(t.to(self.loaded.device) for t in (input_ids, target, attention, safe, unsafe))))
        return chunks

    # Checkpoints hold plain tensors (safetensors), never pickles. With several ranks rank 0
    # gathers every rank's rows, so a checkpoint is the same file whatever the number of ranks.
    def state(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for i, param in enumerate(self.params):
            tensors[f"param.{i}"] = param.detach()
            for key, value in self.optimizer.state.get(param, {}).items():
                tensors[f"optim.{i}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng.cpu"] = torch.get_rng_state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        if self.world == 1:
            return tensors
        parts: list[dict[str, torch.Tensor]] = [{} for _ in range(self.world)]
        dist.all_gather_object(parts, tensors)
        # Rows are split by rank in order; step counts and the random state are rank 0's.
        return {
            k: v if k == "rng.cpu" or k.endswith(".step") else torch.cat([part[k] for part in parts])
            for k, v in parts[0].items()
        }

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, param in enumerate(self.params):
            mine = self.slices[i].span if self.slices else slice(None)
            saved = tensors.get(f"param.{i}")
            if saved is None or saved[mine].shape != param.shape:
                raise EngineError("the checkpoint does not match this training setup")
            param.copy_(saved[mine])
            if f"optim.{i}.step" in tensors:  # absent when the parameter had no step yet
                self.optimizer.state[param] = {
                    "step": tensors[f"optim.{i}.step"].clone(),  # AdamW keeps its step count on the CPU
                    "exp_avg": tensors[f"optim.{i}.exp_avg"][mine].to(param.device),
                    "exp_avg_sq": tensors[f"optim.{i}.exp_avg_sq"][mine].to(param.device),
                }
        for piece in self.slices:
            piece.write_back()
        torch.set_rng_state(tensors["rng.cpu"])

    def trainable_parameters(self) -> int:
        """Elements trained, over all ranks."""
        count = torch.tensor(sum(p.numel() for p in self.params))
        if self.world > 1:
            dist.all_reduce(count)
        return int(count)

    def trained_experts(self) -> dict[int, list[int]]:
        return {layer: sorted(set(experts)) for layer, experts in self.setup.experts.items() if experts}
