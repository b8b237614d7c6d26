"""Tiny random MoE models, built locally and deterministically from a seed.

Each is a real Hugging Face model folder (config.json, model.safetensors, tokenizer files with a
chat template), read back by the same loading code as any downloaded model. The tokenizer is a
byte-level BPE trained here on a small built-in corpus (or one the caller gives), so no network
is ever needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AXK1Config,
    DeepseekV2Config,
    DeepseekV3Config,
    DeepseekV32Config,
    Dots1Config,
    Ernie4_5_MoeConfig,
    ExaoneMoeConfig,
    FlexOlmoConfig,
    Glm4MoeConfig,
    Glm4MoeLiteConfig,
    GlmMoeDsaConfig,
    GptOssConfig,
    GraniteMoeConfig,
    GraniteMoeSharedConfig,
    GraniteMoeSWAConfig,
    HunYuanMoEV1Config,
    JambaConfig,
    Llama4TextConfig,
    LlamaConfig,
    MellumConfig,
    MiniMaxM2Config,
    MixtralConfig,
    OlmoeConfig,
    PhimoeConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2MoeConfig,
    Qwen3_5MoeTextConfig,
    Qwen3MoeConfig,
    Qwen3NextConfig,
    SolarOpenConfig,
)

from .errors import EngineError
from .files import save_model

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]

# OLMoE-Instruct's turn layout; an assistant turn ends with the end-of-sequence token so that a
# model trained on rendered conversations learns to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] + eos_token + '\\n' }}"
    "{% else %}{{ message['content'] + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

BUILTIN_CORPUS = """
You are a helpful assistant. Please answer the question below in a few short sentences.
I'm sorry, but I cannot help with that request. It could cause harm to other people.
Sure, here is a summary of the main points. First, read the instructions carefully.
Second, write down each step in order. Third, check the result and explain what you found.
How do I bake bread at home? Mix flour, water, salt and yeast, knead the dough, let it rise.
What is the capital of France? The capital of France is Paris, a city on the river Seine.
Write a short poem about the sea and the wind and the light of the morning sun.
Can you explain how a computer stores numbers? It uses bits, ones and zeros, grouped in bytes.
Tell me a story about a cat who learns to play the piano in a small village by the mountains.
The weather today is sunny with a light breeze; tomorrow there may be rain in the afternoon.
Translate the following sentence into plain English and list the words that were reversed.
Got it. Here are the steps: step one, step two, step three, and then the task is complete.
Thank you for your question. Let me think about it and give you a clear and careful answer.
Numbers 0 1 2 3 4 5 6 7 8 9 and symbols . , ; : ! ? ' " ( ) [ ] { } - + = / * % & # @ $
"""


@dataclass(frozen=True)
class TinySize:
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    experts: int = 8
    top_k: int = 2
    expert_ffn: int = 32
    vocab: int = 512


def _config(arch: str, size: TinySize, vocab: int, special: dict[str, Any]) -> PretrainedConfig:
    common: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": size.hidden,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "num_key_value_heads": size.heads,
        "max_position_embeddings": 4096,
        "num_experts_per_tok": size.top_k,
        "initializer_range": 0.1,  # wide enough that routers pick distinct experts per token
        "tie_word_embeddings": False,
        **special,
    }
    head_dim = size.hidden // size.heads
    # For config classes that do not declare head_dim, though their modeling code reads it.
    undeclared_head_dim: dict[str, Any] = {"head_dim": head_dim}
    # DeepSeek-style models: the first layer dense (first_k_dense_replace), two groups of experts of
    # which a token may use one, two shared experts' worth of always-on MLP.
    deepseek: dict[str, Any] = {
        "intermediate_size": size.expert_ffn * 2,
        "moe_intermediate_size": size.expert_ffn,
        "n_routed_experts": size.experts,
        "n_shared_experts": 2,
        "first_k_dense_replace": 1,
        "n_group": 2,
        "topk_group": 1,
        "routed_scaling_factor": 2.5,
    }
    without_dense_count: dict[str, Any] = {k: v for k, v in deepseek.items() if k != "first_k_dense_replace"}
    sparse_after_first = ["dense"] + ["sparse"] * (size.layers - 1)
    mla: dict[str, Any] = {
        "kv_lora_rank": 16,
        "q_lora_rank": 32,
        "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8,
        "v_head_dim": 16,
    }
    indexer: dict[str, Any] = {
        "index_topk": 2048,
        "index_head_dim": 16,
        "index_n_heads": 2,
        "head_dim": mla["qk_rope_head_dim"],
    }
    builders: dict[str, Any] = {
        "olmoe": lambda: OlmoeConfig(
            **common, intermediate_size=size.expert_ffn, num_experts=size.experts, norm_topk_prob=False
        ),
        "flex_olmo": lambda: FlexOlmoConfig(
            **common, intermediate_size=size.expert_ffn, num_experts=size.experts, norm_topk_prob=False
        ),
        "mixtral": lambda: MixtralConfig(**common, intermediate_size=size.expert_ffn, num_local_experts=size.experts),
        # A dense layer in the middle exercises models whose MoE layers are not all layers.
        "qwen2_moe": lambda: Qwen2MoeConfig(
            **common,
            intermediate_size=size.expert_ffn * 2,
            moe_intermediate_size=size.expert_ffn,
            shared_expert_intermediate_size=size.expert_ffn * 2,
            num_experts=size.experts,
            mlp_only_layers=[1] if size.layers > 2 else [],
        ),
        "qwen3_moe": lambda: Qwen3MoeConfig(
            **common,
            **undeclared_head_dim,
            intermediate_size=size.expert_ffn * 2,
            moe_intermediate_size=size.expert_ffn,
            num_experts=size.experts,
            norm_topk_prob=True,
        ),
        # Hybrid attention: linear (gated delta-net) layers, full attention in the last one.
        "qwen3_next": lambda: Qwen3NextConfig(
            **common,
            head_dim=head_dim,
            intermediate_size=size.expert_ffn * 2,
            moe_intermediate_size=size.expert_ffn,
            shared_expert_intermediate_size=size.expert_ffn,
            num_experts=size.experts,
            norm_topk_prob=True,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            layer_types=["linear_attention"] * (size.layers - 1) + ["full_attention"],
        ),
        "qwen3_5_moe_text": lambda: Qwen3_5MoeTextConfig(
            **common,
            head_dim=head_dim,
            moe_intermediate_size=size.expert_ffn,
            shared_expert_intermediate_size=size.expert_ffn,
            num_experts=size.experts,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            layer_types=["linear_attention"] * (size.layers - 1) + ["full_attention"],
        ),
        "granitemoeshared": lambda: GraniteMoeSharedConfig(
            **common,
            intermediate_size=size.expert_ffn,
            num_local_experts=size.experts,
            shared_intermediate_size=size.expert_ffn * 2,
        ),
        "granitemoe_swa": lambda: GraniteMoeSWAConfig(
            **common,
            intermediate_size=size.expert_ffn,
            num_local_experts=size.experts,
            shared_intermediate_size=size.expert_ffn * 2,
            sliding_window=8,
        ),
        # Mamba layers with attention in the last one; every layer's MLP sparse.
        "jamba": lambda: JambaConfig(
            **common,
            intermediate_size=size.expert_ffn,
            num_experts=size.experts,
            expert_layer_period=1,
            expert_layer_offset=0,
            attn_layer_period=size.layers,
            attn_layer_offset=size.layers - 1,
            use_mamba_kernels=False,
        ),
        "gpt_oss": lambda: GptOssConfig(
            **common,
            head_dim=head_dim,
            intermediate_size=size.expert_ffn,
            num_local_experts=size.experts,
            sliding_window=8,
        ),
        "granitemoe": lambda: GraniteMoeConfig(
            **common, intermediate_size=size.expert_ffn, num_local_experts=size.experts
        ),
        "hunyuan_v1_moe": lambda: HunYuanMoEV1Config(
            **{k: v for k, v in common.items() if k != "num_experts_per_tok"},
            head_dim=head_dim,
            intermediate_size=size.expert_ffn,
            num_experts=size.experts,
            moe_topk=size.top_k,
        ),
        "ernie4_5_moe": lambda: Ernie4_5_MoeConfig(
            **common,
            intermediate_size=size.expert_ffn * 2,
            moe_intermediate_size=size.expert_ffn,
            moe_num_experts=size.experts,
            moe_num_shared_experts=1,
            moe_layer_start_index=1,
        ),
        "mellum": lambda: MellumConfig(
            **common, intermediate_size=size.expert_ffn, moe_intermediate_size=size.expert_ffn, num_experts=size.experts
        ),
        "minimax_m2": lambda: MiniMaxM2Config(
            **common, head_dim=head_dim, intermediate_size=size.expert_ffn, num_local_experts=size.experts
        ),
        "phimoe": lambda: PhimoeConfig(
            **{**common, "num_experts_per_tok": 2},  # SparseMixer is top-2 only
            intermediate_size=size.expert_ffn,
            num_local_experts=size.experts,
        ),
        "deepseek_v2": lambda: DeepseekV2Config(
            **common, **deepseek, **mla, topk_method="group_limited_greedy", **{"head_dim": mla["qk_rope_head_dim"]}
        ),
        "deepseek_v3": lambda: DeepseekV3Config(**common, **deepseek, **mla, norm_topk_prob=True),
        "glm4_moe": lambda: Glm4MoeConfig(**common, **deepseek, **undeclared_head_dim, norm_topk_prob=True),
        "dots1": lambda: Dots1Config(**common, **deepseek, **undeclared_head_dim, norm_topk_prob=True),
        "glm4_moe_lite": lambda: Glm4MoeLiteConfig(
            **common, **without_dense_count, **mla, norm_topk_prob=True, mlp_layer_types=sparse_after_first
        ),
        "solar_open": lambda: SolarOpenConfig(**common, **without_dense_count, head_dim=head_dim, norm_topk_prob=True),
        "axk1": lambda: AXK1Config(**common, **without_dense_count, **mla, mlp_layer_types=sparse_after_first),
        # DeepSeek sparse attention: index_topk above any test sequence, so that attention (and so
        # routing) is the same in cached generation and in a teacher-forced pass.
        "deepseek_v32": lambda: DeepseekV32Config(
            **common, **without_dense_count, **mla, **indexer, mlp_layer_types=sparse_after_first
        ),
        "glm_moe_dsa": lambda: GlmMoeDsaConfig(
            **common, **without_dense_count, **mla, **indexer, mlp_layer_types=sparse_after_first
        ),
        "exaone_moe": lambda: ExaoneMoeConfig(
            **common,
            intermediate_size=size.expert_ffn * 2,
            moe_intermediate_size=size.expert_ffn,
            num_experts=size.experts,
            num_shared_experts=1,
            n_group=2,
            topk_group=1,
            routed_scaling_factor=2.5,
            norm_topk_prob=True,
            first_k_dense_replace=1,
            mlp_layer_types=sparse_after_first,
        ),
        # Top-1 like the released models; MoE and dense layers interleaved like Maverick.
        "llama4_text": lambda: Llama4TextConfig(
            **{**common, "num_experts_per_tok": 1},
            head_dim=head_dim,
            intermediate_size=size.expert_ffn,
            intermediate_size_mlp=size.expert_ffn * 2,
            num_local_experts=size.experts,
            interleave_moe_layer_step=2 if size.layers > 2 else 1,
        ),
        # dense: for checking that non-MoE models are refused
        "llama": lambda: LlamaConfig(
            **{k: v for k, v in common.items() if k != "num_experts_per_tok"}, intermediate_size=64
        ),
    }
    build = builders.get(arch)
    if build is None:
        raise EngineError(f"unknown tiny architecture '{arch}'; choose one of {', '.join(builders)}")
    return build()


_DEEPSEEK_V3: dict[str, Any] = {
    **{"n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 8, "topk_group": 4},
    **{"routed_scaling_factor": 2.5, "norm_topk_prob": True},
}
_ONE_GROUP: dict[str, Any] = {"n_group": 1, "topk_group": 1, "routed_scaling_factor": 1.0, "norm_topk_prob": True}


@dataclass(frozen=True)
class Mirror:
    """A released checkpoint whose routing a tiny model of its type can keep: the routing fields of
    its config.json, verbatim (experts, top-k, groups, normalisation, scaling, shared experts,
    scoring, jitter, logit scaling). Widths and depth stay tiny; so does the pattern of dense and
    sparse layers, scaled down to the tiny model's few layers."""

    checkpoint: str
    routing: dict[str, Any]


# One released checkpoint per model type, the one users most likely run (or the only one). None
# for Granite-MoE-Shared and Granite-MoE-SWA: no released config of theirs could be checked.
RELEASED: dict[str, Mirror] = {
    "olmoe": Mirror(
        "allenai/OLMoE-1B-7B-0125-Instruct", {"num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": False}
    ),
    "flex_olmo": Mirror(
        "allenai/FlexOlmo-7x7B-1T", {"num_experts": 7, "num_experts_per_tok": 5, "norm_topk_prob": False}
    ),
    "mixtral": Mirror(
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        {"num_local_experts": 8, "num_experts_per_tok": 2, "router_jitter_noise": 0.0},
    ),
    "qwen2_moe": Mirror(
        "Qwen/Qwen1.5-MoE-A2.7B-Chat", {"num_experts": 60, "num_experts_per_tok": 4, "norm_topk_prob": False}
    ),
    "qwen3_moe": Mirror("Qwen/Qwen3-30B-A3B", {"num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": True}),
    "qwen3_next": Mirror(
        "Qwen/Qwen3-Next-80B-A3B-Instruct", {"num_experts": 512, "num_experts_per_tok": 10, "norm_topk_prob": True}
    ),
    "qwen3_5_moe_text": Mirror("Qwen/Qwen3.5-35B-A3B", {"num_experts": 256, "num_experts_per_tok": 8}),
    "gpt_oss": Mirror("openai/gpt-oss-20b", {"num_local_experts": 32, "num_experts_per_tok": 4}),
    "granitemoe": Mirror(
        "ibm-granite/granite-3.1-3b-a800m-instruct",
        {"num_local_experts": 40, "num_experts_per_tok": 8, "logits_scaling": 6.0},
    ),
    "jamba": Mirror("ai21labs/AI21-Jamba-Mini-1.5", {"num_experts": 16, "num_experts_per_tok": 2}),
    # Hunyuan-A13B and K-EXAONE: their technical reports' routing (no config.json was at hand).
    "hunyuan_v1_moe": Mirror("tencent/Hunyuan-A13B-Instruct", {"num_experts": 64, "moe_topk": 8}),
    "phimoe": Mirror(
        "microsoft/Phi-3.5-MoE-instruct",
        {"num_local_experts": 16, "num_experts_per_tok": 2, "router_jitter_noise": 0.01, "input_jitter_noise": 0.01},
    ),
    "ernie4_5_moe": Mirror(
        "baidu/ERNIE-4.5-21B-A3B-PT", {"moe_num_experts": 64, "moe_k": 6, "moe_num_shared_experts": 2}
    ),
    "deepseek_v2": Mirror(
        "deepseek-ai/DeepSeek-V2-Lite-Chat",
        {
            **{"n_routed_experts": 64, "num_experts_per_tok": 6, "n_shared_experts": 2, "n_group": 1, "topk_group": 1},
            **{"topk_method": "greedy", "routed_scaling_factor": 1.0, "norm_topk_prob": False},
        },
    ),
    "deepseek_v3": Mirror("deepseek-ai/DeepSeek-V3", _DEEPSEEK_V3),
    "glm4_moe": Mirror(
        "zai-org/GLM-4.5-Air",
        {**_ONE_GROUP, "n_routed_experts": 128, "num_experts_per_tok": 8, "n_shared_experts": 1},
    ),
    "dots1": Mirror(
        "rednote-hilab/dots.llm1.inst",
        {
            **_ONE_GROUP,
            "n_routed_experts": 128,
            "num_experts_per_tok": 6,
            "n_shared_experts": 2,
            "routed_scaling_factor": 2.5,
        },
    ),
    "glm4_moe_lite": Mirror(
        "zai-org/GLM-4.7-Flash",
        {**_ONE_GROUP, "n_routed_experts": 64, "num_experts_per_tok": 4, "n_shared_experts": 1},
    ),
    "solar_open": Mirror(
        "upstage/Solar-Open-100B",
        {**_ONE_GROUP, "n_routed_experts": 128, "num_experts_per_tok": 8, "n_shared_experts": 1},
    ),
    "exaone_moe": Mirror(
        "LGAI-EXAONE/K-EXAONE-236B-A23B",
        {
            **_ONE_GROUP,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "num_shared_experts": 1,
            "routed_scaling_factor": 2.5,
        },
    ),
    "axk1": Mirror("skt/A.X-K1", {**_DEEPSEEK_V3, "n_routed_experts": 192}),
    "deepseek_v32": Mirror("deepseek-ai/DeepSeek-V3.2-Exp", _DEEPSEEK_V3),
    "glm_moe_dsa": Mirror(
        "zai-org/GLM-5",
        {
            **_ONE_GROUP,
            "n_routed_experts": 256,
            "num_experts_per_tok": 8,
            "n_shared_experts": 1,
            "routed_scaling_factor": 2.5,
        },
    ),
    "mellum": Mirror(
        "JetBrains/Mellum2-12B-A2.5B-Base", {"num_local_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": True}
    ),
    "minimax_m2": Mirror("MiniMaxAI/MiniMax-M2", {"num_local_experts": 256, "num_experts_per_tok": 8}),
    # Maverick rather than Scout: MoE and dense layers interleaved, as the tiny layout has them.
    "llama4_text": Mirror(
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct", {"num_local_experts": 128, "num_experts_per_tok": 1}
    ),
}


def _tokenizer(corpus: Sequence[str], vocab: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )


def tiny_config(
    arch: str, size: TinySize, corpus: list[str] | None = None, released: bool = False
) -> tuple[PretrainedConfig, PreTrainedTokenizerFast]:
    """The config and tokenizer of a tiny `arch` model (build_tiny's), for a model made in memory."""
    tokenizer = _tokenizer(corpus or BUILTIN_CORPUS.strip().splitlines(), size.vocab)
    vocab = max(size.vocab, len(tokenizer))
    special = {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.eos_token_id,
    }
    config = _config(arch, size, vocab, special)
    if released:
        if arch not in RELEASED:
            raise EngineError(f"no released {arch} config is known to mirror; build it without --released")
        # As from_pretrained reads a config.json: the released routing fields over the tiny ones
        # (under the names the config class stores, where it renamed a config.json field).
        names = type(config).attribute_map
        routing = {names.get(k, k): v for k, v in RELEASED[arch].routing.items()}
        config = type(config).from_dict({**config.to_dict(), **routing})
    return config, tokenizer


def build_tiny(
    arch: str,
    out: str,
    seed: int,
    size: TinySize | None = None,
    corpus: list[str] | None = None,
    released: bool = False,
) -> dict[str, Any]:
    """Write a tiny random model of `arch` into `out`; same arguments, same bytes. `released`: the
    routing of the checkpoint RELEASED names for `arch` instead of the tiny default (top-2 of 8)."""
    config, tokenizer = tiny_config(arch, size or TinySize(), corpus, released)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, buffer in [*model.named_buffers(), *model.named_parameters()]:
            # Zero in a fresh model: random here, so that a correction that acts on the choice
            # only (DeepSeek-V3, GLM-4-MoE) is exercised by every test of the tiny model.
            if name.endswith("e_score_correction_bias"):  # a buffer, or ERNIE's frozen parameter
                buffer.copy_(torch.rand(buffer.shape) * 0.2)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = Path(out)
    if path.exists():
        raise EngineError(f"{out} already exists; choose a new folder for the tiny model")
    save_model(model, tokenizer, out)
    files = sorted(p for p in path.iterdir() if p.is_file())
    return {
        "path": str(path),
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        "parameters": sum(p.numel() for p in model.parameters()),
        "mirrors": RELEASED[arch].checkpoint if released else None,
    }
