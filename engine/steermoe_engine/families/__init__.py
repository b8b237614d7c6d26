"""The routing families, and which model types belong to each (transformers 5.23 sources)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Bias, Family, Routing
from .gpt_oss import GptOss
from .llama4 import Llama4
from .sigmoid_grouped import SigmoidGrouped
from .sigmoid_topk import SigmoidTopK
from .softmax_corrected import SoftmaxCorrected
from .softmax_grouped import SoftmaxGrouped
from .softmax_topk import SoftmaxTopK
from .sparsemixer import SparseMixer


@dataclass(frozen=True)
class Architecture:
    name: str
    family: Family


_softmax, _sigmoid_grouped = SoftmaxTopK(), SigmoidGrouped()
_granite = GptOss(expert_params=("gate_up_proj", "down_proj"), block_attrs=("block_sparse_moe",))

ARCHITECTURES = {
    "olmoe": Architecture("OLMoE", _softmax),
    "flex_olmo": Architecture("FlexOlmo", _softmax),
    "mixtral": Architecture("Mixtral", SoftmaxTopK(always_normalize=True)),
    "qwen2_moe": Architecture("Qwen2-MoE", _softmax),
    "qwen3_moe": Architecture("Qwen3-MoE", _softmax),
    "qwen3_next": Architecture("Qwen3-Next", _softmax),
    "qwen3_5_moe_text": Architecture("Qwen3.5-MoE (text)", SoftmaxTopK(always_normalize=True)),
    "jamba": Architecture("Jamba", SoftmaxTopK(block_attrs=("feed_forward",), router_attr="router")),
    "mellum": Architecture("Mellum", _softmax),
    "hunyuan_v1_moe": Architecture("Hunyuan-MoE-V1", SoftmaxTopK(always_normalize=True)),
    "granitemoe": Architecture("Granite-MoE", _granite),
    "granitemoeshared": Architecture("Granite-MoE-Shared", _granite),
    "granitemoe_swa": Architecture("Granite-MoE-SWA", _granite),
    "gpt_oss": Architecture("GPT-OSS", GptOss()),
    "phimoe": Architecture("Phi-3.5-MoE", SparseMixer()),
    "ernie4_5_moe": Architecture("ERNIE-4.5-MoE", SoftmaxCorrected()),
    "deepseek_v2": Architecture("DeepSeek-V2", SoftmaxGrouped()),
    "deepseek_v3": Architecture("DeepSeek-V3", _sigmoid_grouped),
    "glm4_moe": Architecture("GLM-4-MoE", _sigmoid_grouped),
    "dots1": Architecture("dots.llm1", _sigmoid_grouped),
    "glm4_moe_lite": Architecture("GLM-4-MoE-Lite", _sigmoid_grouped),
    "solar_open": Architecture("Solar Open", _sigmoid_grouped),
    "exaone_moe": Architecture("EXAONE-MoE", _sigmoid_grouped),
    "axk1": Architecture("A.X K1", _sigmoid_grouped),
    "deepseek_v32": Architecture("DeepSeek-V3.2", _sigmoid_grouped),
    "glm_moe_dsa": Architecture("GLM-MoE-DSA", _sigmoid_grouped),
    "minimax_m2": Architecture("MiniMax-M2", SigmoidTopK()),
    "llama4_text": Architecture("Llama 4 (text)", Llama4()),
}

__all__ = ["ARCHITECTURES", "Architecture", "Bias", "Family", "Routing"]
