"""Loading students and teachers through the same `from_pretrained` path a real checkpoint uses."""
from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd_ray.models.folders import end_ids


def torch_dtype(name: str) -> torch.dtype:
    """`model.dtype`: auto is float32 on CPU (bfloat16 matmuls are slow there) and bfloat16 on a GPU."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_model(path: str, trust_remote_code: bool = False, dtype: str = "float32", attn_implementation: str = ""):
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                                                 **extra)
    model.eval()
    return model


def model_options(cfg) -> dict:
    """The `load_model` keyword arguments the config asks for (model.*)."""
    m = cfg.model
    return {"trust_remote_code": m.trust_remote_code, "dtype": m.dtype, "attn_implementation": m.attn_implementation}


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
