"""Rollout throughput, HF backend vs vLLM backend, side by side in one process and one run.

    make bench            (in .venv-vllm)   -> bench/results/rollout_throughput.json

Two models: the lab student (0.64M parameters, 18-token vocabulary) and a random-init Llama of ~81M
parameters (hidden 768, 8 layers, 32k vocabulary). Each backend samples `batch` prompts × `new_tokens`
tokens (EOS ignored, so both generate the same number of tokens); tokens/s is the median of `repeats` runs
after one warm-up.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from evidence import write_new  # noqa: E402  (bench/evidence.py)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def random_llama(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from opd_ray.lab.tokenizer import build_tokenizer

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                         num_attention_heads=12, num_key_value_heads=12, head_dim=64, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(out)
    build_tokenizer().save_pretrained(out)  # ids < 18 only; prompts below are raw ids
    return out


def time_hf(path: Path, prompts, new_tokens: int, repeats: int) -> list[float]:
    from opd_ray.models.loading import load_model
    from opd_ray.models.sampling import sample

    model = load_model(str(path))
    eos = -1  # never matches: every row generates `new_tokens` tokens, like vLLM's ignore_eos
    run = lambda: sample(model, prompts, max_new_tokens=new_tokens, eos_id=eos, pad_id=0,  # noqa: E731
                         seeds=list(range(len(prompts))), top_k=4)
    return rates_of(run, len(prompts) * new_tokens, repeats)


def rates_of(run, tokens: int, repeats: int) -> list[float]:
    """Tokens/s of `repeats` timed calls of `run`, after one warm-up call."""
    run()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        rates.append(tokens / (time.perf_counter() - t0))
    return rates


def time_vllm(path: Path, prompts, new_tokens: int, repeats: int) -> list[float]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=str(path), dtype="float32", max_model_len=128, enforce_eager=True, seed=0,
              logprobs_mode="processed_logprobs", max_num_seqs=256)
    reqs = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    params = [SamplingParams(temperature=1.0, max_tokens=new_tokens, ignore_eos=True, logprobs=4, seed=i)
              for i in range(len(prompts))]
    return rates_of(lambda: llm.generate(reqs, params, use_tqdm=False), len(prompts) * new_tokens, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/rollout_throughput.json")
    args = parser.parse_args()
    import random

    import torch
    rng = random.Random(0)
    prompts = [[1] + [rng.randint(3, 17) for _ in range(12)] for _ in range(args.batch)]
    lab = Path(__file__).resolve().parent.parent / "opd_ray" / "lab" / "artifacts" / "student"
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "torch_threads": torch.get_num_threads()},
               "batch": args.batch, "new_tokens": args.new_tokens, "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"lab_student_0.64M": lab, "random_llama_81M": random_llama(Path(tmp) / "llama81m")}
        for name, path in models.items():
            from opd_ray.models.loading import load_model

            n_params = sum(p.numel() for p in load_model(str(path)).parameters())
            hf, vl = time_hf(path, prompts, args.new_tokens, args.repeats), time_vllm(path, prompts, args.new_tokens,
                                                                                      args.repeats)
            row = {"parameters": n_params, "hf_tokens_per_s": hf, "vllm_tokens_per_s": vl,
                   "hf_median": statistics.median(hf), "vllm_median": statistics.median(vl)}
            row["vllm_over_hf"] = row["vllm_median"] / row["hf_median"]
            results["models"][name] = row
            print(f"{name}: {n_params / 1e6:.1f}M params  HF {row['hf_median']:.0f} tok/s  "
                  f"vLLM {row['vllm_median']:.0f} tok/s  (x{row['vllm_over_hf']:.2f})", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_new(Path(args.out), results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
