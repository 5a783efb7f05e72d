"""SmolLM2-135M-Instruct from `make real-models`, and the tiny random model with SmolLM2's real tokenizer."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd_ray.lab import real_models
from tests.conftest import ROOT

REAL = ROOT / "models" / real_models.NAME


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return real_models.tiny_random_model(out_dir=tmp_path_factory.mktemp("tiny") / "smollm2_tiny", seed=0)


def test_tiny_random_model_loads_with_the_full_vocabulary(tiny):
    model = AutoModelForCausalLM.from_pretrained(tiny)
    tok = AutoTokenizer.from_pretrained(tiny)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tok) == 49152
    assert model.config.tie_word_embeddings and model.config.head_dim == 32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.eos_token == tok.pad_token == "<|im_end|>" and model.config.eos_token_id == tok.eos_token_id == 2
    text = tok.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\nHi there<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(ids).logits.shape == (1, ids.shape[1], 49152)


@pytest.fixture(scope="module")
def real(smollm2):
    return AutoModelForCausalLM.from_pretrained(smollm2).eval(), AutoTokenizer.from_pretrained(smollm2)


def test_real_smollm2_has_its_shape_and_knows_paris(real):
    model, tok = real
    real_models.check_shape(model)  # LlamaForCausalLM, 30 layers, hidden 576, 9/3 heads, vocab 49152, tied
    assert model.config.head_dim == 64 and model.dtype == torch.float32
    assert tok.eos_token_id == tok.pad_token_id == model.generation_config.eos_token_id == 2
    answer = real_models.chat_answer(model, tok, "What is the capital of France?", max_new_tokens=12)
    assert "Paris" in answer, answer  # a random-init model would not say it


def test_committed_tokenizer_matches_the_built_one(real):
    for name in real_models.TOKENIZER_FILES:
        built, committed = REAL / name, real_models.ASSETS / name
        assert built.is_file() == committed.is_file(), name
        if built.is_file():
            assert built.read_bytes() == committed.read_bytes(), f"{name}: rerun with --export-tokenizer"
