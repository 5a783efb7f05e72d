"""Loading students and teachers through the same `from_pretrained` path a real checkpoint uses."""
from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def load_model(path: str, trust_remote_code: bool = False):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    model.eval()
    return model


def load_tokenizer(path: str, trust_remote_code: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    return tokenizer


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    """A CPU copy of the weights, as plain arrays (cheap to put in Ray's object store)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
