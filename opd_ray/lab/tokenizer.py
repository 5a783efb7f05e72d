"""A character-level tokenizer for the lab task, built with the `tokenizers` library.

The vocabulary is 18 ids: 3 special tokens and the 15 characters the task uses. That is small, so the lab
measures overlap metrics and the top-k objective at k=4 (configs/lab_cpu.yaml) instead of the paper's k=16
of ~150k tokens; with k=16 the top-k would be nearly the whole distribution. Digits stay single tokens on
purpose: a tiny model learns carry-based addition on digits, not on multi-digit BPE pieces.
"""
from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"]
CHARACTERS = list("0123456789+=;#:")


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    bos_id = vocab["<bos>"]
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos_id)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<pad>"
    )
    tok.padding_side = "left"  # generation pads prompts on the left
    return tok
