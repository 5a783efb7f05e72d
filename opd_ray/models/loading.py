"""Loading students and teachers through the same `from_pretrained` path a real checkpoint uses."""
from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd_ray.models.folders import end_ids


def torch_dtype(name: str) -> torch.dtype:
    """`model.dtype`: the dtype models compute in. auto is bfloat16 on a GPU and float32 on a CPU.

    On a CPU bfloat16 pays only where its matmuls are native (`native_cpu_bf16`), and even there it changes the
    numbers a run gives, so it is asked for, not picked: on an AVX2 CPU, where torch emulates it, a bfloat16 linear
    layer ran 8x slower than float32 and a learner pass 30x (bench/results/matmul_rates.json, docs/speed.md).
    `native` (`native_dtype`) picks bfloat16 exactly where it pays; `load_config` resolves it before anything loads.
    """
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def native_cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 matmul instructions (AVX-512 BF16 or AMX) that oneDNN uses."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def native_dtype() -> str:
    """`model.dtype: native` on this node: bfloat16 on a GPU or a CPU with bfloat16 matmul instructions, else float32."""
    return "bfloat16" if torch.cuda.is_available() or native_cpu_bf16() else "float32"


def autocast(dtype: torch.dtype, device: torch.device):
    """The learner's mixed precision: matmuls in `dtype` (bfloat16) while the parameters, their gradients and the
    optimizer state stay float32 (the master weights). A no-op context for float32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


def load_model(path: str, trust_remote_code: bool = False, dtype: str = "float32", attn_implementation: str = ""):
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                                                 **extra)
    model.eval()
    return model.to(inference_device())


def inference_device() -> torch.device:
    """Where a rollout engine or teacher computes: the actor's GPU when Ray gave it one (CUDA_VISIBLE_DEVICES names
    it as device 0), else the CPU. The learner's module is placed by DeepSpeed."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def model_options(cfg) -> dict:
    """The `load_model` keyword arguments the config asks for (model.*)."""
    m = cfg.model
    return {"trust_remote_code": m.trust_remote_code, "dtype": m.dtype, "attn_implementation": m.attn_implementation}


# The longest prompt + response for which models on a CPU compute attention in plain matmuls ("eager") unless
# model.attn_implementation names one. torch's CPU flash-attention kernel (what "sdpa" picks) is slow at short
# lengths: on SmolLM2-135M in bfloat16, 16 rows, eager alone took the learner's step from 6.2-6.8 to 5.5-5.9 s (the
# kernel's backward) and the rollout's attention from 0.77 to under 0.2 s (its one-token decode steps; profiled in
# one process, docs/speed.md). Eager keeps
# the B x heads x L x L scores for the learner's backward; with B x L <= learner.micro_batch_tokens that is at most
# micro_batch_tokens x heads x L per layer, no more than the MLP's activations while L <= 256.
EAGER_ATTENTION_MAX_TOKENS = 256


def longest_sequence_tokens(cfg) -> int:
    """The longest prompt + response a model of the run is given: prompts longer than data.max_prompt_tokens are
    dropped, and responses (sampled, or the teacher's for the cold start) stop at max_new_tokens."""
    return cfg.data.max_prompt_tokens + max(cfg.rollout.max_new_tokens, cfg.cold_start.max_new_tokens)


def default_attention(longest_tokens: int, on_gpu: bool) -> str:
    """`model.attn_implementation` when the config leaves it empty: eager for a CPU run whose sequences are all
    at most EAGER_ATTENTION_MAX_TOKENS long, else "" (the model's own default, sdpa for transformers' models)."""
    return "eager" if not on_gpu and longest_tokens <= EAGER_ATTENTION_MAX_TOKENS else ""


def load_tokenizer(path: str, trust_remote_code: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    return tokenizer


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a response: the tokenizer's EOS and each one in the generation config (Qwen lists two)."""
    return end_ids(tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    """A CPU copy of the weights, as plain arrays (cheap to put in Ray's object store). bfloat16 travels as
    float32 (numpy has no bfloat16); `load_state_dict` casts it back."""
    out = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        out[name] = (value.float() if value.dtype == torch.bfloat16 else value).numpy().copy()
    return out
